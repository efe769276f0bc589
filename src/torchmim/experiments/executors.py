"""Where cells run, kept apart from what a cell is: serially, or in local worker processes.

An executor takes a function and a list of plain-data payloads and yields ``(payload, result)``
pairs as they finish. What a payload holds is the runner's business: a unit of work, one cell or a
vectorised group of same-shape cells (``runner.run_unit``), so an executor schedules groups as it
schedules cells. Another executor (a Ray cluster) only has to implement :meth:`Executor.map`.

Local worker processes die with the sweep: each asks the kernel (Linux ``prctl(PR_SET_PDEATHSIG)``)
for SIGKILL when its parent dies, and a watchdog thread exits a worker whose parent is gone (other
POSIX systems, and the moment between the start and the ``prctl``), so a ``kill -9`` of the sweep
leaves no worker training on, and a rerun never trains a cell twice at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch

from ..fast_paths import FAST_PATHS
from ..threads import available_cores

__all__ = ["Executor", "LocalProcessExecutor", "SerialExecutor", "make_executor"]


class Executor:
    """Runs ``fn(payload)`` for every payload; yields ``(payload, result)`` in completion order,
    where ``result`` is the exception when ``fn`` raised or its worker process died."""

    def map(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError  # pragma: no cover


class SerialExecutor(Executor):
    """In this process, one cell after the other."""

    def map(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        for p in payloads:
            try:
                result = fn(p)
            except Exception as e:  # noqa: BLE001 - handed to the caller as that payload's result
                result = e
            yield p, result


#: Linux's ``PR_SET_PDEATHSIG`` (``<sys/prctl.h>``).
PR_SET_PDEATHSIG = 1
#: How often a worker's watchdog checks that its parent lives (seconds).
WATCHDOG_SECONDS = 1.0


def die_with_parent(parent: int) -> None:
    """Make this process end when process ``parent`` (its parent) dies: SIGKILL from the kernel on
    Linux, and everywhere a daemon thread that polls ``os.getppid()`` (a re-parented process has
    another parent) and ends the process. Ends it at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no libc: the watchdog remains
            pass
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="torchmim-parent-watchdog", daemon=True).start()


def _init_worker(threads: int, parent: int | None = None,
                 switches: dict[str, bool] | None = None) -> None:
    """Give a worker process its share of the cores, and make it die with the sweep (``parent``:
    the sweep's PID). Runs once per worker before any cell; the environment variables reach
    libraries that read them later (BLAS, OpenMP-using children). ``switches``: the parent's
    :data:`~torchmim.fast_paths.FAST_PATHS` when the pool started (a spawned worker would
    otherwise start with the defaults, ignoring a ``fast_paths(...)`` block around the sweep)."""
    if parent is not None:
        die_with_parent(parent)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    if switches:
        for name, value in switches.items():
            setattr(FAST_PATHS, name, bool(value))


class LocalProcessExecutor(Executor):
    """``workers`` processes on this machine (spawned, so each has a clean torch runtime), each with
    ``threads`` torch threads (default: the cores this process may use divided among the workers,
    at least one), so that the workers together do not oversubscribe the cores. A cell's trainer
    and evaluation use at most that many (``train.threads`` / ``eval.threads`` = ``None`` never
    exceed the current setting; an explicit value in the cell's config wins).

    The workers die with this process (:func:`die_with_parent`). A worker that dies (killed, out of
    memory) breaks the pool: the payloads it ran and the ones still waiting are yielded with the
    error as their result, so the caller records them as failed and a rerun retries them."""

    def __init__(self, workers: int, threads: int | None = None) -> None:
        self.workers = max(1, int(workers))
        self.threads = threads or max(1, available_cores() // self.workers)

    def map(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        ctx = mp.get_context("spawn")
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(self.threads, os.getpid(),
                                             dataclasses.asdict(FAST_PATHS)))
        pending: dict[Future, Any] = {}
        todo = list(payloads)
        try:
            while todo or pending:
                while todo and len(pending) < 2 * self.workers:  # bounded queue
                    p = todo.pop(0)
                    try:
                        pending[pool.submit(fn, p)] = p
                    except Exception as e:  # noqa: BLE001 - a broken pool: p fails
                        yield p, e
                if not pending:
                    continue
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    p = pending.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as e:  # noqa: BLE001 - its worker died or fn raised
                        result = e
                    yield p, result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def make_executor(workers: int | None) -> Executor:
    """Serial for one worker, local processes otherwise (default: one per available core)."""
    workers = available_cores() if workers is None else workers
    return SerialExecutor() if workers <= 1 else LocalProcessExecutor(workers)
