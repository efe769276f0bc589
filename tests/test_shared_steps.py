"""Steps that used to be written out more than once, now in one place each:

* a run folder or a model file → the model file: :func:`torchmim.trained.model_file`, used by
  ``load_trained`` (serve, export), ``torchmim evaluate`` and ``torchmim latent``;
* torchmim 0.1's IS-NLL, the baseline of bench/image.py and the reference of
  tests/test_fast_paths.py: :func:`torchmim._reference.nll_0_1`;
* a run's seeded data and initial model, and its evaluation and saving at the end:
  ``torchmim.runs._prepare_run`` / ``_finish_run``, used by ``run`` and ``run_group``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import torchmim as tm
import torchmim._reference
import torchmim.io
from torchmim.cli import main
from torchmim.errors import CheckpointError, ConfigError
from torchmim.trained import load_trained, model_file
from torchmim.training import run_group

from .helpers import load_file

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------- run folder → model file
@pytest.fixture
def places(tmp_path):
    """A run folder (model.pt and checkpoint.pt), an interrupted one (checkpoint.pt only), an
    empty folder, a model file and a path that does not exist."""
    for folder, names in (("run", ("model.pt", "checkpoint.pt")), ("ckpt", ("checkpoint.pt",)),
                          ("empty", ())):
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).write_bytes(b"weights")
    (tmp_path / "m.pt").write_bytes(b"weights")
    return {k: tmp_path / k for k in ("run", "ckpt", "empty", "m.pt", "missing")}


@pytest.fixture
def loads(monkeypatch):
    """``torchmim.io.load_model`` replaced by one that says which file it was given (as a
    CheckpointError, which every caller passes on as its one-line error)."""
    def fake(path, **kwargs):
        raise CheckpointError(f"LOAD {path}")

    monkeypatch.setattr(torchmim.io, "load_model", fake)


def _outcome(call):
    try:
        call()
    except CheckpointError as e:
        return str(e)
    raise AssertionError("no error")  # the fake load_model always raises


def _cli(args) -> str:
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    lines = res.output.strip().splitlines()
    return lines[-1].removeprefix("error: ")


def test_every_command_resolves_a_run_folder_or_model_file_the_same_way(places, loads):
    # catches: a command resolving RUN by its own rule again (e.g. `latent` taking an interrupted
    # run's checkpoint.pt, which lacks the data transform, or `evaluate` missing the message of
    # an empty folder), or the library's and the commands' "not found" messages drifting apart
    callers = {  # the caller → (outcome, whether it may fall back to checkpoint.pt)
        "load_trained": (lambda p: _outcome(lambda: load_trained(p)), True),
        "evaluate": (lambda p: _cli(["evaluate", p]), False),
        "latent": (lambda p: _cli(["latent", "encode", p]), False),
    }
    want = {
        "run": {c: f"LOAD {places['run'] / 'model.pt'}" for c in callers},
        "ckpt": {"load_trained": f"LOAD {places['ckpt'] / 'checkpoint.pt'}",
                 "evaluate": f"model file not found: {places['ckpt'] / 'model.pt'}",
                 "latent": f"model file not found: {places['ckpt'] / 'model.pt'}"},
        "empty": {"load_trained": f"{places['empty']} is a folder without model.pt or "
                                  "checkpoint.pt; give a run folder of `torchmim train` or a "
                                  "model file",
                  "evaluate": f"model file not found: {places['empty'] / 'model.pt'}",
                  "latent": f"model file not found: {places['empty'] / 'model.pt'}"},
        "m.pt": {c: f"LOAD {places['m.pt']}" for c in callers},
        "missing": {"load_trained": f"model file not found: {places['missing']}",
                    "evaluate": f"model file not found: {places['missing']}"},
    }
    for place, path in places.items():
        for caller, (outcome, fallback) in callers.items():
            if caller not in want[place]:
                continue
            got = outcome(path)
            assert got == want[place][caller], (place, caller)
            # ... and it is exactly what model_file says with the caller's fallback setting
            try:
                said = f"LOAD {model_file(path, checkpoint_fallback=fallback)}"
            except CheckpointError as e:
                said = str(e)
            assert got == said, (place, caller)
    # `latent` lets click refuse a path that does not exist (a usage error, before any loading)
    res = CliRunner().invoke(main, ["latent", "encode", str(places["missing"])])
    assert res.exit_code == 2 and "does not exist" in res.output


# ------------------------------------------------------------------------ 0.1's IS-NLL, once
def test_the_benchmark_times_the_same_frozen_nll_the_test_checks():
    # catches: bench/image.py growing its own copy of 0.1's algorithm again (two baselines that
    # can drift apart: the benchmark would time something the test no longer checks)
    bench = load_file("bench/image.py")
    assert bench.nll_0_1 is torchmim._reference.nll_0_1
    fast_paths_test = (ROOT / "tests" / "test_fast_paths.py").read_text()
    assert "from torchmim._reference import nll_0_1" in fast_paths_test
    assert "def _nll_0_1" not in fast_paths_test and "def nll_0_1" not in fast_paths_test


# ------------------------------------------------------------- run and run_group: one set-up
def _config(data: dict, seed: int, **model) -> tm.RunConfig:
    return tm.RunConfig.from_dict({
        "data": data, "seed": seed, "model": {"name": "mlp", "hidden": 8, "z_dim": 2, **model},
        "train": {"epochs": 2, "batch_size": 32, "progress": False},
        "eval": {"nll_samples": 5, "max_points": 60}})


def test_run_and_run_group_refuse_a_wrong_input_size_with_the_same_line(tmp_path):
    # catches: run_group checking the model against the data with its own code again (it used to
    # say "but the data has shape ...; set model.x_dim to match", without the data set's name)
    config = _config({"name": "gmm2d", "n_train": 60, "n_val": 30, "n_test": 30}, 0, x_dim=3)
    with pytest.raises(ConfigError) as alone:
        tm.run(config)
    with pytest.raises(ConfigError) as grouped:
        run_group([config])
    assert str(grouped.value) == str(alone.value)
    assert "expects observations of shape (3,) but data 'gmm2d' has shape (2,)" in str(alone.value)


def test_a_group_member_ends_as_its_run_does(tmp_path):
    # catches: run_group evaluating or saving a member differently from run (another seed for the
    # evaluation, other or reordered metrics, model.pt without the member's own standardisation)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(150, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0],
                         columns=["a", "b", "c"])
    frame.to_csv(tmp_path / "rows.csv", index=False)
    data = {"name": "file", "path": str(tmp_path / "rows.csv")}
    configs = [_config(data, seed) for seed in (0, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        grouped = run_group(configs, [tmp_path / "g0", tmp_path / "g1"])
        alone = tm.run(configs[1], tmp_path / "alone")
    member = grouped[1]
    assert list(member.metrics) == list(alone.metrics)
    saved = json.loads((tmp_path / "g1" / "metrics.json").read_text())
    assert list(saved) == list(json.loads((tmp_path / "alone" / "metrics.json").read_text()))
    assert saved["epochs"] == alone.metrics["epochs"] == 2
    transform = tm.load_model(tmp_path / "g1" / "model.pt").data_transform
    assert transform is not None
    assert transform == tm.load_model(tmp_path / "alone" / "model.pt").data_transform
    assert transform == member.model.data_transform == alone.data.transform


# ----------------------------------------------- a run's data and evaluation, for every caller
@pytest.fixture
def unseeded_data():
    """A data set, registered for this test only, whose loader draws its split from torch's
    global generator (as a user's loader calling ``torch.randperm`` without a generator does)."""
    from dataclasses import dataclass

    from torch.utils.data import TensorDataset

    from torchmim.data import DATASETS, DataConfig, DataSplits

    name = "test-unseeded-split"

    @dataclass
    class Unseeded(DataConfig):
        def load(self, seed=0):
            g = torch.Generator().manual_seed(0)  # the same 150 points every time ...
            x = torch.randn(150, 2, generator=g)
            y = (x[:, 0] > 0).long()
            order = torch.randperm(150)  # ... split by the global generator
            x, y = x[order], y[order]
            return DataSplits(train=TensorDataset(x[:90], y[:90]), val=(x[90:120], y[90:120]),
                              test=(x[120:], y[120:]), train_eval=(x[:90], y[:90]),
                              x_shape=(2,), num_classes=2)

    DATASETS.register(name, Unseeded)
    yield name
    del DATASETS._entries[name]


def test_evaluate_sees_the_test_split_the_run_saw(unseeded_data, tmp_path):
    # catches: `torchmim evaluate` (or the image backfill, which calls the same load_run_data)
    # loading the data without the run's "data" seeding: the global generator is then wherever
    # the process left it, the split is another one and the metrics differ
    config = _config({"name": unseeded_data}, 3)
    tm.run(config, tmp_path / "run")
    torch.manual_seed(12345)  # the CLI's process state is not the run's
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "run"),
                                    "--out", str(tmp_path / "again.json")])
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    again = json.loads((tmp_path / "again.json").read_text())
    for key in ("nll", "knn_acc", "recon_rmse", "mi"):
        assert again[key] == saved[key], key
