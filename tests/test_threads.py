"""CPU threads: the default rule, and each sweep worker's share of the cores."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchmim import threads
from torchmim.experiments.executors import LocalProcessExecutor, make_executor
from torchmim.threads import available_cores


def _worker_threads(_payload):
    import os

    return torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")


def test_workers_get_the_cores_divided_among_them():
    """threads = cores // workers (at least 1), applied in every worker before its cells. Fails if
    the workers keep torch's default of one thread per core (N workers × all cores threads)."""
    executor = LocalProcessExecutor(2)
    assert executor.threads == max(1, available_cores() // 2)
    results = [r for _, r in executor.map(_worker_threads, [0, 1])]
    assert results == [(executor.threads, str(executor.threads))] * 2
    assert LocalProcessExecutor(3, threads=5).threads == 5
    assert type(make_executor(1)).__name__ == "SerialExecutor"


def _worker_switches(_: int) -> dict:
    import dataclasses

    from torchmim.fast_paths import FAST_PATHS

    return dataclasses.asdict(FAST_PATHS)


def test_workers_inherit_the_fast_path_switches():
    """A sweep's spawned workers take the parent's FAST_PATHS at pool start, so a
    fast_paths(...) block around run_sweep reaches the cells (spawned, they would start with the
    defaults)."""
    from torchmim.fast_paths import fast_paths

    with fast_paths(folded_tanh=False, inplace_log_prob=False):
        got = [r for _, r in LocalProcessExecutor(2).map(_worker_switches, [0, 1])]
    assert all(r["folded_tanh"] is False and r["inplace_log_prob"] is False
               and r["affine_backward"] is True for r in got)
    got = [r for _, r in LocalProcessExecutor(1).map(_worker_switches, [0])]
    assert got[0]["folded_tanh"] is True


def test_default_threads_one_for_small_models_or_a_busy_machine(monkeypatch):
    """Small model → 1 whatever the machine; a large one → the idle cores, capped at 4 and at the
    current torch setting; a busy machine → 1. Fails if the rule ignores size, load or the cap."""
    small, large = nn.Linear(10, 10), nn.Linear(1000, 200)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(8)
        for idle, expected in ((16, 4), (3, 3), (1, 1), (0, 1)):
            monkeypatch.setattr(threads, "idle_cores", lambda idle=idle: idle)
            assert threads.default_threads(large) == expected
            assert threads.default_threads(small) == 1
        monkeypatch.setattr(threads, "idle_cores", lambda: 16)
        torch.set_num_threads(2)  # a sweep worker's share: never exceeded
        assert threads.default_threads(large) == 2
    finally:
        torch.set_num_threads(before)
    assert threads.resolve_threads(3, large, where="train.threads") == 3
    with pytest.raises(threads.ConfigError, match="eval.threads must be a positive integer"):
        threads.resolve_threads(0, None, where="eval.threads")
