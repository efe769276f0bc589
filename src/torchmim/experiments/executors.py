"""Where cells run, kept apart from what a cell is: serially, or in local worker processes.

An executor takes a function and a list of plain-data payloads and yields ``(payload, result)``
pairs as they finish. What a payload holds is the runner's business: a unit of work, one cell or a
vectorised group of same-shape cells (``runner.run_unit``), so an executor schedules groups as it
schedules cells. Another executor (a Ray cluster) only has to implement :meth:`Executor.map`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

import torch

from ..threads import available_cores

__all__ = ["Executor", "LocalProcessExecutor", "SerialExecutor", "make_executor"]


class Executor:
    """Runs ``fn(payload)`` for every payload; yields ``(payload, result)`` in completion order."""

    def map(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError  # pragma: no cover


class SerialExecutor(Executor):
    """In this process, one cell after the other."""

    def map(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        for p in payloads:
            yield p, fn(p)


def _init_worker(threads: int) -> None:
    """Give a worker process its share of the cores. Runs once per worker before any cell; the
    environment variables reach libraries that read them later (BLAS, OpenMP-using children)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)


class LocalProcessExecutor(Executor):
    """``workers`` processes on this machine (spawned, so each has a clean torch runtime), each with
    ``threads`` torch threads (default: the cores this process may use divided among the workers,
    at least one), so that the workers together do not oversubscribe the cores. A cell's trainer
    and evaluation use at most that many (``train.threads`` / ``eval.threads`` = ``None`` never
    exceed the current setting; an explicit value in the cell's config wins)."""

    def __init__(self, workers: int, threads: int | None = None) -> None:
        self.workers = max(1, int(workers))
        self.threads = threads or max(1, available_cores() // self.workers)

    def map(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        ctx = mp.get_context("spawn")
        pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(self.threads,))
        pending: dict[Future, Any] = {}
        todo = list(payloads)
        try:
            while todo or pending:
                while todo and len(pending) < 2 * self.workers:  # bounded queue
                    p = todo.pop(0)
                    pending[pool.submit(fn, p)] = p
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def make_executor(workers: int | None) -> Executor:
    """Serial for one worker, local processes otherwise (default: one per available core)."""
    workers = available_cores() if workers is None else workers
    return SerialExecutor() if workers <= 1 else LocalProcessExecutor(workers)
