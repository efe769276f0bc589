"""Shared fixtures: float64 where the point is the math, seeded RNGs, tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
# one thread per pytest-xdist worker; both cores for a plain run
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))


@pytest.fixture
def float64():
    """Run a test in float64 (restores the default dtype afterwards)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny models: intra-op threads only add overhead (much of it when the cores
    are shared), so the module runs single-threaded and the setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


#: The full Fashion-MNIST of Debian's package dataset-fashion-mnist (../shared/data has MNIST and
#: Omniglot only). `make test` installs it when it can (scripts/ensure_test_data.sh).
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
FASHION_HOW = ("install it with `apt-get update && apt-get install -y dataset-fashion-mnist` "
               "(as root; `make test` does this when it can)")


@pytest.fixture
def fashion_dir() -> Path:
    """The real Fashion-MNIST files; a missing package skips the test with the command that
    installs it, or fails it where the data is required (CI sets TORCHMIM_REQUIRE_TEST_DATA=1)."""
    missing = [f for f in FASHION_FILES if not (FASHION_DIR / f).is_file()]
    if missing:
        msg = f"Fashion-MNIST is missing from {FASHION_DIR} ({', '.join(missing)}): {FASHION_HOW}"
        if os.environ.get("TORCHMIM_REQUIRE_TEST_DATA") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return FASHION_DIR
