"""Leftovers of issues 13-15: saved data paths that work from any folder, labels of a CSV given
to the latent tools, plugin settings that do not leak out of a CLI command, ``--overwrite`` of
every run artifact, no empty folder after a failed start, ``FolderLockedError`` in the error
hierarchy, atomic writes everywhere, and integer arrays taken alike by ``fit`` and ``encode``."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

import torchmim as tm
from torchmim import errors, locking
from torchmim import io as tio
from torchmim.cli import main
from torchmim.config import apply_overrides
from torchmim.runs import RUN_FOLDERS, RunConfig, run

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["-s", "train.epochs=1", "-s", "train.batch_size=32", "-s", "model.hidden=4",
        "-s", "model.z_dim=2", "-s", "eval.nll_samples=3", "--no-progress"]
TOY = ["data.n_train=64", "data.n_val=32", "data.n_test=32", "eval.nll_samples=3",
       "eval.max_points=32", "model.hidden=4", "train.epochs=1", "train.progress=false"]


def _csv(path, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 2)) + 3.0 * y[:, None]
    frame = pd.DataFrame(x, columns=["a", "b"])
    frame["kind"] = np.array(["p", "q", "r"])[y]
    frame.to_csv(path, index=False)
    return x, frame["kind"].to_numpy()


def _fsynced(monkeypatch) -> list[str]:
    """The names of the files torchmim.io fsyncs from now on."""
    names: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        names.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(tio.os, "fsync", record)
    return names


# ---------------------------------------------------------------------------- 1. data paths
def test_a_relative_data_path_is_saved_absolute_so_evaluate_works_from_another_folder(
        tmp_path, monkeypatch):
    # breaks if config.yaml keeps `data.path=blobs.csv` relative: `evaluate` from another folder
    # would then look for ./blobs.csv there and fail with "data file not found"
    train_dir, other = tmp_path / "train_here", tmp_path / "elsewhere"
    train_dir.mkdir()
    other.mkdir()
    _csv(train_dir / "blobs.csv")
    monkeypatch.chdir(train_dir)
    res = CliRunner().invoke(main, ["train", "-s", "data.name=file", "-s", "data.path=blobs.csv",
                                    "-s", "data.label_column=kind", "--out", "run", *TINY])
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((train_dir / "run" / "config.yaml").read_text())
    assert saved["data"]["path"] == str(train_dir / "blobs.csv")
    metrics = json.loads((train_dir / "run" / "metrics.json").read_text())

    monkeypatch.chdir(other)  # no blobs.csv here
    res = CliRunner().invoke(main, ["evaluate", str(train_dir / "run"), "--out", "m.json"])
    assert res.exit_code == 0, res.output
    again = json.loads((other / "m.json").read_text())
    assert again["nll"] == metrics["nll"] and again["knn_acc"] == metrics["knn_acc"]


# ---------------------------------------------------------------------------- 2. latent labels
def test_latent_neighbors_reads_the_labels_of_a_csv(tmp_path):
    # breaks if `--data file.csv` ignores the run's label column: then no labels come out, or
    # the label column is read as a feature (a width mismatch with the model)
    x, kind = _csv(tmp_path / "blobs.csv")
    cfg = RunConfig.from_dict(apply_overrides(
        {"data": {"name": "file", "path": str(tmp_path / "blobs.csv"), "label_column": "kind"}},
        [a for a in TINY if "=" in a]))
    run(cfg, tmp_path / "run", progress=False)
    other = tmp_path / "points.csv"  # other points, same columns, labels in another order
    frame = pd.DataFrame(x[::-1], columns=["a", "b"])
    frame["kind"] = kind[::-1]
    frame.to_csv(other, index=False)
    out = tmp_path / "nb.npz"
    res = CliRunner().invoke(main, ["latent", "neighbors", str(tmp_path / "run"), "--data",
                                    str(other), "--index", "0,5", "-k", "3", "--out", str(out)])
    assert res.exit_code == 0, res.output
    got = np.load(out)
    labels = kind[::-1]
    assert list(got["query_labels"]) == [labels[0], labels[5]]
    assert (got["labels"] == labels[got["indices"]]).all()
    # a file without that column still gives the points, without labels
    frame.drop(columns="kind").to_csv(other, index=False)
    res = CliRunner().invoke(main, ["latent", "neighbors", str(tmp_path / "run"), "--data",
                                    str(other), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "labels" not in np.load(out).files


# ---------------------------------------------------------------------------- 3. plugins
def test_the_cli_leaves_the_plugin_environment_and_sys_path_as_it_found_them(tmp_path,
                                                                             monkeypatch):
    # breaks if TORCHMIM_PLUGINS / TORCHMIM_IMPORT (or the current folder on sys.path) stay set
    # after a command: they leaked into every later in-process command and test
    from torchmim import registry

    monkeypatch.delenv(registry.PLUGINS_ENV, raising=False)
    monkeypatch.setenv(registry.IMPORT_ENV, "already")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "leak_probe_mod.py").write_text(
        "import os\nSEEN = (os.environ.get('TORCHMIM_PLUGINS'), "
        "os.environ.get('TORCHMIM_IMPORT'))\n")
    monkeypatch.delitem(sys.modules, "leak_probe_mod", raising=False)
    path_before = list(sys.path)
    res = CliRunner().invoke(main, ["--import", "leak_probe_mod", "config"])
    assert res.exit_code == 0, res.output
    # while the command ran, both were set (so a sweep's workers would inherit them) ...
    assert sys.modules["leak_probe_mod"].SEEN == ("1", "already,leak_probe_mod")
    # ... and afterwards all is as before
    assert registry.PLUGINS_ENV not in os.environ
    assert os.environ[registry.IMPORT_ENV] == "already"
    assert sys.path == path_before
    sys.modules.pop("leak_probe_mod", None)


# ---------------------------------------------------------------------------- 4, 5. run folders
def test_overwrite_deletes_every_run_artifact_and_nothing_else(tmp_path):
    # breaks if --overwrite keeps tensorboard/ (old event files mix into the new run's curves)
    # or the latent/export outputs of the old model, or deletes a file that is not the library's
    out = tmp_path / "run"
    cfg = RunConfig.from_dict(apply_overrides({}, TOY))
    run(cfg, out)
    for name in RUN_FOLDERS:
        (out / name / "sub").mkdir(parents=True)
        (out / name / "sub" / "old.bin").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    run(cfg, out, overwrite=True)
    assert not any((out / name).exists() for name in RUN_FOLDERS)
    assert (out / "notes.txt").read_text() == "mine" and (out / "mine").is_dir()
    assert (out / "model.pt").is_file() and (out / "metrics.json").is_file()

    # a folder holding only a TensorBoard log is a used folder: refused without --overwrite
    used = tmp_path / "used"
    (used / "tensorboard").mkdir(parents=True)
    with pytest.raises(tm.ConfigError, match="already holds a run .*tensorboard"):
        run(cfg, used)


def test_a_run_failing_at_data_loading_leaves_no_new_folder(tmp_path):
    # breaks if a run that fails before writing anything leaves its (new) folder behind with a
    # lone .lock, or removes a folder that existed before
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).normal(size=(40, 2)))
    cfg = RunConfig.from_dict(apply_overrides({"data": {"name": "file", "path": str(data)}},
                                              TOY[3:]))
    data.unlink()  # the data vanish between config and run
    with pytest.raises(tm.DataError, match="data file not found"):
        run(cfg, tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()

    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(tm.DataError):
        run(cfg, kept)
    assert kept.is_dir()
    # and the lock still works for the next writer
    with locking.FolderLock(tmp_path / "new"):
        assert (tmp_path / "new" / locking.LOCK_NAME).is_file()
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------- 6. the error
def test_folder_locked_error_is_a_torchmim_error_exported_everywhere():
    # breaks if `except TorchMIMError` (the CLI's one-line handler) misses a locked folder, or
    # the names are different classes
    assert tm.FolderLockedError is errors.FolderLockedError is locking.FolderLockedError
    assert issubclass(tm.FolderLockedError, tm.TorchMIMError)
    assert issubclass(tm.FolderLockedError, RuntimeError)
    assert "FolderLockedError" in tm.__all__ and "FolderLockedError" in errors.__all__


# ---------------------------------------------------------------------------- 7. atomic writes
def test_sweep_tables_are_written_with_fsync_and_a_unique_temporary_name(tmp_path, monkeypatch):
    # breaks if tables.atomic_write_text goes back to a fixed `.<name>.tmp` (two writers, or a
    # stale folder of that name, collide) or skips the fsync (a crash can leave a 0-byte table)
    from torchmim.experiments.tables import read_csv, write_csv

    synced = _fsynced(monkeypatch)
    (tmp_path / ".results.csv.tmp").mkdir()  # in the way of a fixed temporary name
    write_csv(tmp_path / "results.csv", [{"a": 1, "b": 2.5}])
    assert read_csv(tmp_path / "results.csv") == [{"a": 1, "b": 2.5}]
    assert any(n.startswith(".results.csv.") and n.endswith(".tmp") for n in synced)


def test_atomic_write_bytes_and_the_ray_driver_use_it(tmp_path, monkeypatch):
    # breaks if atomic_write_bytes writes other bytes, leaves a temporary file, or the Ray driver
    # writes the returned cell files without it (no fsync)
    from torchmim.experiments.ray_executor import _unpack

    synced = _fsynced(monkeypatch)
    tio.atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01xyz")
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01xyz"
    assert os.listdir(tmp_path / "a") == ["b.bin"]
    results = _unpack(str(tmp_path), {"files": {"c1": {"metrics.json": b"{}\n",
                                                       "init/model.pt": b"weights"}},
                                      "results": ["r"]})
    assert results == ["r"]
    assert (tmp_path / "cells" / "c1" / "init" / "model.pt").read_bytes() == b"weights"
    assert sum(n.startswith(".metrics.json.") for n in synced) == 1


def test_evaluate_out_is_written_atomically(tmp_path, monkeypatch):
    # breaks if `evaluate --out` writes in place (a crash leaves half a JSON file)
    run(RunConfig.from_dict(apply_overrides({}, TOY)), tmp_path / "run")
    synced = _fsynced(monkeypatch)
    res = CliRunner().invoke(main, ["evaluate", str(tmp_path / "run"), "--out",
                                    str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    assert "nll" in json.loads((tmp_path / "m.json").read_text())
    assert any(n.startswith(".m.json.") for n in synced)


# ---------------------------------------------------------------------------- 8. integer arrays
def test_integer_arrays_are_floats_in_fit_and_encode_alike():
    # breaks if fit takes uint8/bool arrays while encode refuses them (or casts them otherwise):
    # a model must encode exactly the arrays it was trained on
    rng = np.random.default_rng(0)
    x8 = (rng.random((64, 2)) < 0.3).astype(np.uint8)  # binary data as uint8
    model = tm.MLPModelConfig(hidden=4, likelihood="bernoulli").build()
    tm.Trainer(model, tm.MIM(), tm.TrainerConfig(epochs=1, batch_size=32,
                                                 progress=False)).fit(x8, x8[:16])
    ref = model.encode(x8.astype(np.float32))
    assert torch.equal(model.encode(x8), ref)
    assert torch.equal(model.encode(x8.astype(bool)), ref)
    assert torch.equal(model.encode(torch.from_numpy(x8.astype(np.int64))), ref)
    tm.Trainer(model, tm.MIM(), tm.TrainerConfig(epochs=1, batch_size=32,
                                                 progress=False)).fit(x8.astype(bool))
    with pytest.raises(tm.DataError, match="floating-point"):  # not numbers: refused
        model.encode(torch.zeros(2, 2, dtype=torch.complex64))
