"""How many CPU threads torch uses while training or evaluating (``train.threads``, ``eval.threads``).

torch starts with one intra-op thread per core. For the small models of the paper's toy experiments
that is slower, not faster: a step of the 2D MLP is a few small matrix products, and the threads spend
more time synchronising than computing — and on a machine whose cores are shared (other users, the
workers of a sweep) a waiting thread stalls the whole step. Measured on a shared 2-core machine
(``/tmp`` script in the issue-10 report; a MIM step, batch 128):

==================================  ==========  ===========  ============
model                               1 thread    2 threads    load average
==================================  ==========  ===========  ============
MLP, width 50 (708 parameters)      1.9 ms      23 ms        1.7
MLP, width 500 (7k parameters)      3.4 ms      14 ms        1.7
tiny ConvHVAE, 28×28 (35k)          381 ms      495 ms       1.7
image-mlp default, 28×28 (1.1M)     32-57 ms    500-555 ms   4.9
==================================  ==========  ===========  ============

More threads pay only with cores to spare and work to split. Hence the default
(``threads=None``): one thread for models under :data:`SMALL_MODEL_PARAMETERS` parameters, and
one thread when the machine has fewer than two idle cores (cores minus the one-minute load
average); otherwise as many as there are idle cores, up to four. Never more than the threads torch
already has, so that a limit set from outside (``torch.set_num_threads``, ``OMP_NUM_THREADS``, a
sweep worker's share of the cores) is respected. Set ``train.threads`` / ``eval.threads`` to fix it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
from torch import nn

from .errors import ConfigError

__all__ = ["SMALL_MODEL_PARAMETERS", "available_cores", "default_threads", "idle_cores",
           "resolve_threads", "torch_threads"]

#: Models with fewer parameters train with one thread by default (see the module docstring).
SMALL_MODEL_PARAMETERS = 100_000
#: The most threads the default gives a larger model (more rarely helps a single small-batch run).
MAX_DEFAULT_THREADS = 4


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def idle_cores() -> int:
    """Cores not busy with other work: the available cores minus the one-minute load average
    (all of them where the OS has no load average)."""
    cores = available_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - Windows
        return cores
    return max(0, int(cores - load + 0.5))


def default_threads(model: nn.Module | None) -> int:
    """The ``threads=None`` default for ``model`` (see the module docstring)."""
    if model is not None and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS:
        return 1
    return max(1, min(MAX_DEFAULT_THREADS, torch.get_num_threads(), idle_cores()))


def resolve_threads(threads: int | None, model: nn.Module | None, *, where: str) -> int:
    """``threads`` checked (``where`` names the setting in errors), or the default for ``model``."""
    if threads is None:
        return default_threads(model)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"{where} must be a positive integer or null, got {threads!r}")
    return threads


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``; the previous setting is restored."""
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
