"""Sweeps on Ray (torchmim.experiments.ray_executor) against a real local Ray instance (CPU only,
127.0.0.1): the same results table as the local backend, a worker killed mid-cell, bounded
retries, results returned to the driver without a shared folder, and the backend registry."""

from __future__ import annotations

import importlib
import json
import os
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from torchmim import registry
from torchmim.cli import main
from torchmim.errors import ConfigError
from torchmim.experiments import SweepSpec, run_sweep
from torchmim.experiments.backends import BACKENDS, make_backend
from torchmim.experiments.executors import LocalProcessExecutor, SerialExecutor
from torchmim.objectives.base import OBJECTIVES

ray = pytest.importorskip("ray", reason="the ray backend's tests need Ray: pip install "
                          "'torchmim[ray]'")

from torchmim.experiments.ray_executor import RayExecutor, unit_resources  # noqa: E402

# A plugin objective (imported by the Ray workers through TORCHMIM_IMPORT) whose worker process
# dies at its `after`-th call once (a marker file remembers it), or (always) at the first call
# of every attempt.
# ``ae`` is deterministic, so a resumed cell must equal one that never died.
PLUGIN = '''
import os
from dataclasses import dataclass
from torchmim.objectives.base import OBJECTIVES
from torchmim.objectives.baselines import AE

_calls = {}

@OBJECTIVES.register("ae-dies")
@dataclass(frozen=True)
class AEDies(AE):
    after: int = 9
    always: bool = False

    def __call__(self, model, x, beta=1.0):
        _calls[id(model)] = n = _calls.get(id(model), 0) + 1
        marker = os.environ["TORCHMIM_TEST_DIE_MARKER"]
        if (self.always and n == 1) or (n == self.after and not os.path.exists(marker)):
            if not self.always:
                open(marker, "w").close()
            os._exit(1)
        return super().__call__(model, x, beta)
'''
TINY = ["train.epochs=2", "data.n_train=300", "data.n_val=200", "data.n_test=300",
        "eval.max_points=300", "eval.nll_samples=10"]
TIMES = ("train_seconds", "eval_seconds")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray instance for the module, started as ``--backend ray`` starts one, with the
    plugin importable in its workers; the executors below find it connected (and leave it)."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "ray_test_plugin.py").write_text(PLUGIN)
    saved, loaded = dict(os.environ), registry._plugin_state["loaded"]
    os.environ.update({"PYTHONPATH": os.pathsep.join([str(folder), *sys.path]),
                       "TORCHMIM_PLUGINS": "1", "TORCHMIM_IMPORT": "ray_test_plugin",
                       "TORCHMIM_TEST_DIE_MARKER": str(folder / "died")})
    sys.path.insert(0, str(folder))
    importlib.import_module("ray_test_plugin")  # the driver parses the cells' configs
    assert RayExecutor(local_cpus=2)._connect(ray)
    yield folder
    ray.shutdown()
    sys.path.remove(str(folder))
    os.environ.clear()
    os.environ.update(saved)
    # leave the session's registries and plugin state as they were
    OBJECTIVES._entries.pop("ae-dies", None)
    sys.modules.pop("ray_test_plugin", None)
    registry._plugin_state["loaded"] = loaded


def _table(folder):
    return pd.read_csv(folder / "results.csv").drop(columns=list(TIMES)).sort_values("cell")


def test_a_sweep_on_ray_writes_the_local_backends_table(cluster, tmp_path):
    # catches: results lost or mixed between cells on the way back from the tasks, cells run with
    # other configs/seeds than locally, a CLI that ignores --backend
    args = ["sweep", "fig3", "--quick", "--grid", "model.hidden=4", "--grid", "seed=0,1",
            "--no-vectorize", "--no-progress", *(a for o in TINY for a in ("-s", o))]
    ray_run = CliRunner().invoke(main, [*args, "--backend", "ray", "--out", str(tmp_path / "r")])
    assert ray_run.exit_code == 0, ray_run.output
    local = CliRunner().invoke(main, [*args, "--workers", "1", "--out", str(tmp_path / "l")])
    assert local.exit_code == 0, local.output
    a, b = _table(tmp_path / "r"), _table(tmp_path / "l")
    assert len(a) == 4
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert ray.is_initialized()  # the sweep joined the running instance and left it running


def test_a_worker_killed_mid_cell_is_retried_and_resumes_and_a_lost_unit_is_reported(
        cluster, tmp_path):
    # catches: a dead worker's cell dropped or restarted from scratch (no resume_log entry from
    # epoch 2, other numbers than an undisturbed run), unbounded retries, and a unit that fails
    # on every attempt missing from failures.json
    spec = SweepSpec(name="t", base={"objective": {"name": "ae-dies"}, "model": {"hidden": 8},
                                     "train": {"epochs": 4, "batch_size": 128}},
                     grid={"objective.always": [False, True]},
                     overrides=[o for o in TINY if "epochs" not in o])
    result = run_sweep(spec, tmp_path / "ray", executor=RayExecutor(max_retries=1),
                       progress=False, figures=False, vectorize=False)
    once, always = (c.id for c in result.cells)
    assert [r["cell"] for r in result.rows] == [once]
    assert "RayTaskLostError: ray task failed after 2 attempt(s)" in result.failures[always]
    assert always in json.loads((tmp_path / "ray" / "failures.json").read_text())
    log = json.loads((tmp_path / "ray" / "cells" / once / "resume_log.json").read_text())
    assert [entry["from_epoch"] for entry in log] == [2]  # 3 batches + 1 validation per epoch

    # the same cell undisturbed (the marker exists now), here in this process
    alone = SweepSpec(name="t", base=spec.base, grid={"objective.always": [False]},
                      overrides=spec.overrides)
    plain = run_sweep(alone, tmp_path / "plain", executor=SerialExecutor(), progress=False,
                      figures=False, vectorize=False)
    got = {k: v for k, v in result.rows[0].items() if k not in TIMES}
    want = {k: v for k, v in plain.rows[0].items() if k not in TIMES}
    assert got == want


def test_without_a_shared_folder_the_cells_files_come_back(cluster, tmp_path):
    # catches: results or the files a figure reads (model.pt, history.csv) left on the worker
    spec = SweepSpec(name="t", base={"objective": {"name": "ae"}, "model": {"hidden": 4}},
                     grid={"seed": [0]}, overrides=TINY)
    result = run_sweep(spec, tmp_path / "out", executor=RayExecutor(shared_results=False,
                                                                local_dir=str(tmp_path / "node")),
                       progress=False, figures=False)
    assert result.complete
    folder = tmp_path / "out" / "cells" / result.cells[0].id
    for name in ("model.pt", "history.csv", "metrics.json", "config.yaml"):
        assert (folder / name).is_file(), name
    assert not (folder / "checkpoint.pt").exists()  # not shipped back
    assert not list((tmp_path / "node").rglob("*.pt"))  # the node-local copy is gone


def test_backends_are_chosen_by_name():
    # catches: a backend missing from the registry, --address accepted where it means nothing
    assert {"local", "serial", "ray"} <= set(BACKENDS.names())
    assert isinstance(make_backend("local", workers=2), LocalProcessExecutor)
    assert isinstance(make_backend("ray", address="auto"), RayExecutor)
    with pytest.raises(ConfigError, match="Did you mean 'ray'"):
        make_backend("rayy")
    with pytest.raises(ConfigError, match="--address is for the ray backend"):
        make_backend("local", address="auto")
    # a unit asks for its cells' threads and a GPU when one trains on cuda
    payload = {"cells": [{"config": {"train": {"threads": 3, "device": "cuda"}}},
                         {"config": {"train": {"threads": None, "device": "cpu"}}}]}
    assert unit_resources(payload) == (3.0, 1.0)
    assert unit_resources(payload, 1, 0.125) == (3.0, 0.125)
