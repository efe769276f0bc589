"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type, ``DD`` the number of
dimensions), then ``DD`` big-endian unsigned 32-bit sizes, then the elements in C order, big-endian.
The distributed files are usually gzipped; :func:`read_idx` recognises gzip by its magic bytes
(``1f 8b``), whatever the file's suffix.
"""

from __future__ import annotations

import gzip
import math
import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

__all__ = ["IDX_DTYPES", "parse_idx", "read_idx", "write_idx"]

#: IDX element-type codes and the (big-endian) NumPy dtypes they stand for.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_NDIM = 32


def _describe_codes() -> str:
    return ", ".join(f"0x{c:02X} ({d.name})" for c, d in IDX_DTYPES.items())


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic; DataError on any failure."""
    if not path.exists():
        raise DataError(f"IDX file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not an IDX file")
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head != _GZIP_MAGIC:
                return f.read()
            with gzip.GzipFile(fileobj=f, mode="rb") as gz:
                return gz.read()
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read the file ({e.strerror or e})") from None


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Decode the (uncompressed) bytes of an IDX file; ``source`` names it in error messages.

    Returns a new, writable array in native byte order with the dtype and shape of the header.
    """
    if len(data) < 4:
        raise DataError(
            f"{source}: too short to be an IDX file ({len(data)} bytes; the header "
            "alone takes at least 4)"
        )
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{source}: not an IDX file (magic number {data[:4].hex(' ')}; an IDX file "
            "starts with 00 00, then the type code and the number of dimensions)"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise DataError(
            f"{source}: unsupported IDX element type 0x{code:02X}; known types are "
            f"{_describe_codes()}"
        )
    if ndim > _MAX_NDIM:
        raise DataError(f"{source}: implausible IDX header: {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{source}: truncated IDX header: {ndim} dimensions need {header} bytes, "
            f"the file has {len(data)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "size mismatch (trailing data)"
        raise DataError(
            f"{source}: {what}: the header declares shape {shape} of {dtype.name}, "
            f"{expected} bytes of data, but {found} bytes follow the header"
        )
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return arr.reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or not, detected by magic bytes) into a NumPy array.

    Returns the array with the IDX element type (``uint8`` for the MNIST files) in native byte order
    and the header's shape, e.g. ``(60000, 28, 28)`` for training images and ``(60000,)`` for
    labels.

    Raises:
        DataError: the file is missing or unreadable, the gzip stream is corrupt or truncated,
            the magic number or the element type is wrong, or the data does not match the header's
            size. The message names the file.
    """
    path = Path(path)
    return parse_idx(_read_bytes(path), source=str(path))


def _idx_code(dtype: np.dtype) -> int:
    for code, d in IDX_DTYPES.items():
        if d.kind == dtype.kind and d.itemsize == dtype.itemsize:
            return code
    raise DataError(
        f"dtype {dtype} cannot be stored in an IDX file; supported: "
        f"{', '.join(d.newbyteorder('=').name for d in IDX_DTYPES.values())}"
    )


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file, gzipped if ``compress`` (default: if the name ends in .gz).

    The file is written to a temporary name and renamed into place, so a reader never sees half a
    file. Gzip output carries no timestamp, so equal arrays give byte-identical files.

    Raises:
        DataError: the dtype has no IDX code (e.g. int64, bool) or a dimension exceeds 2**32 - 1.
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _idx_code(arr.dtype)
    if arr.ndim > _MAX_NDIM or any(s >= 2**32 for s in arr.shape):
        raise DataError(f"array of shape {arr.shape} cannot be stored in an IDX file")
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
