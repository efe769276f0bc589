"""Finding data files on disk and downloading the known ones, resumably and verified.

Where data sets are looked for (see :func:`search_dirs`):

1. ``root`` when the config gives one (and nothing else), else
2. ``$TORCHMIM_DATA/<data set>`` when the environment variable is set,
3. ``~/.cache/torchmim/<data set>``,
4. system folders a data set names (Fashion-MNIST: ``/usr/share/datasets/fashion-mnist``, where the
   Debian/Ubuntu package ``dataset-fashion-mnist`` installs the official files),

each also with torchvision's layout (``MNIST/raw``, ``FashionMNIST/raw``, ``omniglot-py``).
Downloads go to ``root`` or to :func:`cache_dir` ``/ <data set>``.

A download (:func:`download_url`) writes to ``<file>.part``, resumes an interrupted ``.part`` with
an HTTP ``Range`` request, retries transient failures (with a timeout on every attempt), verifies
the md5 checksum where one is known (a mismatch deletes the ``.part``) and renames the finished file
into place atomically, so a file under its final name is always complete. Only the standard
library's ``urllib`` is used; the usual proxy variables (``https_proxy`` ...) are honoured.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

__all__ = [
    "ENV_VAR",
    "REMOTE_FILES",
    "RemoteFile",
    "cache_dir",
    "download_url",
    "fetch",
    "find_file",
    "locate_files",
    "md5sum",
    "search_dirs",
]

#: Environment variable naming the data cache (default ``~/.cache/torchmim``).
ENV_VAR = "TORCHMIM_DATA"


@dataclass(frozen=True)
class RemoteFile:
    """A file that can be downloaded: its name, its URLs (tried in order) and its md5 checksum.

    ``md5=None`` means no checksum is known; such a file is downloaded without verification.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    note: str = ""


def _mirrored(
    bases: Sequence[str], files: Mapping[str, str | None], note: str = ""
) -> dict[str, RemoteFile]:
    return {
        name: RemoteFile(name, tuple(base + name for base in bases), md5, note)
        for name, md5 in files.items()
    }


#: Known files by data set and file name. The MNIST and Fashion-MNIST checksums are those of the
#: official gzipped files (as published by the authors and used by torchvision); the MNIST test-set
#: ones were checked against the official files. The Omniglot PNG archives are those of the Omniglot
#: repository, with torchvision's checksums.
REMOTE_FILES: dict[str, dict[str, RemoteFile]] = {
    "mnist": _mirrored(
        ["https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"],
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": _mirrored(
        [
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ],
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "omniglot": {
        # The 28x28 Omniglot of the VAE literature (IWAE, Burda et al. 2016), which the VampPrior
        # repository's datasets/OMNIGLOT/README points to. No published checksum could be
        # established for it, so it is downloaded unverified (md5=None) rather than against an
        # invented one.
        "chardata.mat": RemoteFile(
            "chardata.mat",
            (
                "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/chardata.mat",
            ),
            None,
            "the 28x28 binarisable Omniglot of the IWAE repository (no published checksum)",
        ),
        **_mirrored(
            ["https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"],
            {
                "images_background.zip": "68d2efa1b9178cc56df9314c21c6e718",
                "images_evaluation.zip": "6b91aef0f799c5bb55b94e3f2daec811",
            },
            "the original 105x105 PNGs of the Omniglot repository",
        ),
    },
}

_TORCHVISION_LAYOUT = {
    "mnist": "MNIST/raw",
    "fashion-mnist": "FashionMNIST/raw",
    "omniglot": "omniglot-py",
}


def cache_dir() -> Path:
    """The data cache: ``$TORCHMIM_DATA`` if set, else ``~/.cache/torchmim``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "torchmim"


def search_dirs(
    dataset: str,
    root: str | os.PathLike | None = None,
    system_dirs: Iterable[str | os.PathLike] = (),
) -> list[Path]:
    """The folders searched for ``dataset``'s files, in order (see the module docstring)."""
    if root is not None:
        bases = [Path(root).expanduser()]
    else:
        bases = []
        env = os.environ.get(ENV_VAR)
        if env:
            bases.append(Path(env).expanduser() / dataset)
        bases.append(Path.home() / ".cache" / "torchmim" / dataset)
        bases.extend(Path(d) for d in system_dirs)
    out: list[Path] = []
    for base in bases:
        for d in (
            (base, base / _TORCHVISION_LAYOUT[dataset])
            if dataset in _TORCHVISION_LAYOUT
            else (base,)
        ):
            if d not in out:
                out.append(d)
    return out


def _name_variants(filename: str) -> list[str]:
    """``x.gz`` also matches an unpacked ``x`` and vice versa; ``x.zip`` matches a folder ``x``."""
    if filename.endswith(".gz"):
        return [filename, filename[:-3]]
    if filename.endswith(".zip"):
        return [filename, filename[:-4]]
    if filename.endswith(".mat"):
        return [filename]
    return [filename, filename + ".gz"]


def find_file(directory: str | os.PathLike, filename: str) -> Path | None:
    """``directory/filename`` (or its gzipped/unpacked variant) if it exists, else None.

    An absolute ``filename`` is returned as is when it exists.
    """
    if Path(filename).is_absolute():
        return Path(filename) if Path(filename).exists() else None
    for name in _name_variants(filename):
        p = Path(directory) / name
        if p.exists():
            return p
    return None


def _missing_report(dirs: Sequence[Path], filenames: Sequence[str]) -> str:
    lines = []
    for d in dirs:
        if not d.is_dir():
            lines.append(f"{d} (no such folder)")
        else:
            missing = [f for f in filenames if find_file(d, f) is None]
            lines.append(f"{d} (missing: {', '.join(missing)})")
    return "; ".join(lines)


def locate_files(
    dataset: str,
    filenames: Sequence[str],
    *,
    root: str | os.PathLike | None = None,
    system_dirs: Iterable[str | os.PathLike] = (),
    download: bool = False,
    hint: str = "",
    timeout: float = 30.0,
    retries: int = 3,
) -> dict[str, Path]:
    """Paths of ``filenames``, all from the first searched folder that holds every one of them.

    With ``download=True`` and no complete folder, the missing files are fetched into ``root`` (or
    ``cache_dir()/dataset``); only files listed in :data:`REMOTE_FILES` can be fetched.

    Raises:
        DataError: the files are not found (the message lists where it looked, what was missing and
            ``hint``), or a download failed.
    """
    dirs = search_dirs(dataset, root, system_dirs)
    for d in dirs:
        found = {f: find_file(d, f) for f in filenames}
        if all(p is not None for p in found.values()):
            return found  # type: ignore[return-value]
    if download:
        target = Path(root).expanduser() if root is not None else cache_dir() / dataset
        out = {}
        for f in filenames:
            existing = find_file(target, f)
            out[f] = (
                existing
                if existing is not None
                else fetch(dataset, f, target, timeout=timeout, retries=retries)
            )
        return out
    raise DataError(
        f"{dataset}: data files not found ({', '.join(filenames)}). Looked in: "
        f"{_missing_report(dirs, filenames)}. {' '.join(hint.split())}".rstrip()
    )


def md5sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The hex md5 digest of a file."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Transient(Exception):
    """A failure worth retrying (network error, timeout, 5xx, a connection closed early)."""


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of ``Content-Range: bytes a-b/total`` (or ``bytes */total``)."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _attempt(url: str, part: Path, timeout: float, chunk_size: int) -> None:
    """One attempt to complete ``part`` from ``url``, resuming from its current size."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "torchmim", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    opener = urllib.request.build_opener()  # reads the proxy variables now, not at import
    try:
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            if _content_range(e.headers.get("Content-Range"))[1] == offset:
                return  # the .part already holds the whole file
            part.unlink(missing_ok=True)
            raise _Transient(
                "the server refused to resume the partial download; starting over"
            ) from None
        if e.code in (408, 425, 429) or e.code >= 500:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise DataError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    with resp:
        if offset and resp.status == 206:
            start, _ = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Transient(f"the server resumed at byte {start}, not {offset}; starting over")
            mode = "ab"
        else:  # a full response: the server ignored the Range header, or nothing to resume
            offset, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        received = 0
        with open(part, mode) as f:
            while chunk := resp.read(chunk_size):
                f.write(chunk)
                received += len(chunk)
    if expected is not None and received < expected:
        raise _Transient(
            f"the connection closed after {offset + received} of {offset + expected} bytes"
        )


def download_url(
    url: str,
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming, retrying and verifying.

    Args:
        url: http(s) URL.
        dest: final path; its folder is created.
        md5: expected hex md5 of the whole file, or None to skip verification.
        timeout: seconds for connecting and for each read.
        retries: extra attempts after a transient failure (each resumes the ``.part``); waits
            ``backoff * 2**k`` seconds before retry ``k``.
        chunk_size: bytes per read.

    Raises:
        DataError: the server answered with a client error (e.g. 404), every attempt failed
            (e.g. the machine is offline; the message says where to put the file by hand), or the
            checksum did not match (the partial file is deleted; the message gives expected and
            actual md5).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the download folder {dest.parent}: {e.strerror or e}"
        ) from None
    part = dest.with_name(dest.name + ".part")
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            _attempt(url, part, timeout, chunk_size)
            break
        except _Transient as e:
            reason = str(e)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = str(getattr(e, "reason", None) or e) or type(e).__name__
    else:
        raise DataError(
            f"could not download {url} after {retries + 1} attempt(s): {reason}. If this "
            f"machine is offline, download the file elsewhere and put it at {dest}"
            + (
                f" (a partial download is kept in {part} and will be resumed)"
                if part.exists()
                else ""
            )
        )
    if md5 is not None:
        actual = md5sum(part)
        if actual.lower() != md5.lower():
            part.unlink(missing_ok=True)
            raise DataError(
                f"checksum mismatch for {url}: expected md5 {md5}, got {actual}; the "
                f"download was deleted"
            )
    os.replace(part, dest)
    return dest


def fetch(
    dataset: str,
    filename: str,
    directory: str | os.PathLike | None = None,
    *,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """The path of a known file of ``dataset`` in ``directory``, downloading it if absent.

    ``directory`` defaults to ``cache_dir()/dataset``. The URLs of the file are tried in order; an
    existing file is not re-verified (system packages may ship re-compressed copies).

    Raises:
        DataError: the file is not in :data:`REMOTE_FILES`, or no URL gave a verified download.
    """
    known = REMOTE_FILES.get(dataset, {})
    if filename not in known:
        raise DataError(
            f"no download source is known for {dataset} file {filename!r}; known files: "
            f"{', '.join(known) or 'none'}. Put the file in place by hand"
        )
    remote = known[filename]
    dest = Path(directory).expanduser() if directory is not None else cache_dir() / dataset
    dest = dest / filename
    if dest.exists():
        return dest
    errors = []
    for url in remote.urls:
        try:
            return download_url(
                url, dest, md5=remote.md5, timeout=timeout, retries=retries, backoff=backoff
            )
        except DataError as e:
            errors.append(str(e))
    if len(errors) == 1:
        raise DataError(errors[0])
    raise DataError(
        f"could not download {filename} for {dataset} from any of its "
        f"{len(errors)} URLs: " + "; ".join(errors)
    )
