#!/usr/bin/env bash
# Set-up step of `make test`: the one data set the tests read that ../shared/data does not hold is the
# full Fashion-MNIST, which Debian ships as the package dataset-fashion-mnist
# (/usr/share/datasets/fashion-mnist). Install it when it is missing and this user can (root, or sudo
# without a password); otherwise say so once: the tests that need it are then skipped with the same
# message, unless TORCHMIM_REQUIRE_TEST_DATA=1 (CI), where they fail instead.
# Opt out of the install with TORCHMIM_NO_APT=1.
set -u
DIR=/usr/share/datasets/fashion-mnist
[ -f "$DIR/train-images-idx3-ubyte.gz" ] && exit 0
HOW="apt-get update && apt-get install -y dataset-fashion-mnist (as root)"
if [ "${TORCHMIM_NO_APT:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
    fi
    if [ "$SUDO" != none ]; then
        echo "make test: installing the Fashion-MNIST test data ($HOW)"
        if $SUDO apt-get update -qq >/dev/null 2>&1 &&
           $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; then
            exit 0
        fi
        echo "make test: could not install dataset-fashion-mnist (no package mirror?)"
    fi
fi
echo "make test: Fashion-MNIST ($DIR) is missing; its tests will be skipped. Install it with: $HOW"
if [ "${TORCHMIM_REQUIRE_TEST_DATA:-0}" = 1 ]; then exit 1; fi
exit 0
