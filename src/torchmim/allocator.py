"""Keep glibc's malloc from handing large tensor buffers back to the OS after every step (issue 11).

A training step of the conv image models allocates and frees activation buffers of tens of MB. With
glibc's defaults such blocks are served by ``mmap`` and returned with ``munmap`` (or the heap top is
trimmed) as soon as they are freed, so every step page-faults its activations in again. Raising
``M_MMAP_THRESHOLD`` (to glibc's maximum, 32 MiB on 64-bit) and ``M_TRIM_THRESHOLD`` keeps freed
buffers in the heap for the next step. The cost is resident memory: the process keeps its peak heap
instead of shrinking between steps.

:func:`keep_freed_memory` applies it once per process (``Trainer.fit``, ``VectorizedTrainer.fit``
and the importance-sampled NLL call it); it does nothing off
glibc (macOS, Windows, musl) or where ``TORCHMIM_DEFAULT_MALLOC=1`` is set. The equivalent without
code, for any process, is the environment variable read by glibc at start-up::

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

#: glibc's largest accepted mmap threshold on 64-bit (HEAP_MAX_SIZE / 2 = 32 MiB).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the heap top kept before trimming (256 MiB: a step's activations of the image models).
TRIM_THRESHOLD = 256 * 1024 * 1024

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3

_applied: bool | None = None  # None: not tried yet; then whether the setting is in force


def keep_freed_memory() -> bool:
    """Set ``M_MMAP_THRESHOLD`` / ``M_TRIM_THRESHOLD`` via ``mallopt`` once per process (module
    docs). Returns whether the setting is in force (False off glibc or when opted out)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or os.environ.get("TORCHMIM_DEFAULT_MALLOC") == "1":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first (setting it fixes the trim threshold's
    # dynamic adjustment too, so both are set explicitly)
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
