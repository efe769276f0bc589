"""Your own data: the `file` data set (NumPy, CSV, Parquet), in-memory arrays, standardisation
saved with the model, and one-line errors — through the CLI and the Python API."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from torchmim.cli import main
from torchmim.data import ArrayDataConfig, DataTransform, FileDataConfig, from_arrays
from torchmim.errors import ConfigError, DataError
from torchmim.evaluation import EvalConfig
from torchmim.io import load_model
from torchmim.models import MLPModelConfig
from torchmim.runs import RunConfig, run
from torchmim.training import TrainerConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["-s", "train.epochs=2", "-s", "train.batch_size=32", "-s", "model.hidden=8",
        "-s", "model.z_dim=2", "-s", "eval.nll_samples=5", "--no-progress"]
TINY_DICT = {"train": {"epochs": 2, "batch_size": 32}, "model": {"hidden": 8, "z_dim": 2},
             "eval": {"nll_samples": 5}}


def blobs(n: int = 150, d: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three labelled clusters in d dimensions, on very different scales per feature."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, d)) + 3.0 * y[:, None]
    return x * np.logspace(0, 3, d) + 50.0, y


@pytest.fixture
def csv_file(tmp_path):
    x, y = blobs()
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    frame["kind"] = np.array(["a", "b", "c"])[y]  # string labels
    path = tmp_path / "blobs.csv"
    frame.to_csv(path, index=False)
    return path


def invoke(*args: str):
    res = CliRunner().invoke(main, list(args))
    return res


def test_cli_train_on_csv_then_evaluate_the_folder(csv_file, tmp_path):
    # breaks if the model's input size is not taken from the file, the string labels are not
    # numbered, or `evaluate` cannot find the data again from the saved config
    out = tmp_path / "run"
    res = invoke("train", "-s", "data.name=file", "-s", f"data.path={csv_file}",
                 "-s", "data.label_column=kind", "--out", str(out), *TINY)
    assert res.exit_code == 0, res.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["x_dim"] == 5 and saved["data"]["name"] == "file"
    assert saved["data"]["likelihood"] == "gaussian"
    metrics = json.loads((out / "metrics.json").read_text())
    assert "knn_acc" in metrics and metrics["n_test"] == 15  # 10% of 150 rows

    res = invoke("evaluate", str(out), "--out", str(tmp_path / "again.json"))
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["nll"] == metrics["nll"] and again["knn_acc"] == metrics["knn_acc"]


def test_cli_train_on_npy_features_only(tmp_path):
    # a .npy holds features only: no labels, so no k-NN accuracy, and evaluate works on it too
    x, _ = blobs(n=100, d=3)
    path = tmp_path / "x.npy"
    np.save(path, x.astype(np.float32))
    out = tmp_path / "run"
    res = invoke("train", "-s", "data.name=file", "-s", f"data.path={path}", "--out", str(out),
                 *TINY)
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert "knn_acc" not in metrics and np.isfinite(metrics["nll"])
    res = invoke("evaluate", str(out))
    assert res.exit_code == 0, res.output


def test_python_api_file_and_arrays(csv_file, tmp_path):
    # the same data through the Python API: a file config, in-memory arrays and a DataFrame
    cfg = RunConfig.from_dict({"data": {"name": "file", "path": str(csv_file),
                                        "label_column": "kind"}, **TINY_DICT})
    assert cfg.model.x_dim == 5
    result = run(cfg, progress=False)
    assert result.data.num_classes == 3 and "knn_acc" in result.metrics

    x, y = blobs()
    mem = from_arrays(x, y, val_fraction=0.2)
    assert isinstance(mem, ArrayDataConfig)
    cfg2 = RunConfig(data=mem, model=MLPModelConfig(hidden=8, z_dim=2),
                     train=TrainerConfig(epochs=2, batch_size=32), eval=EvalConfig(nll_samples=5))
    assert cfg2.model.x_dim == 5
    res2 = run(cfg2, tmp_path / "mem", progress=False)
    assert res2.data.val[0].shape == (30, 5)
    saved = yaml.safe_load((tmp_path / "mem" / "config.yaml").read_text())
    assert saved["data"]["name"] == "arrays" and saved["data"]["digest"] == mem.digest
    # while the arrays are alive, the saved config finds them in this process ...
    assert RunConfig.from_file(tmp_path / "mem" / "config.yaml").data.table() is mem.table()
    # ... elsewhere (a digest not in memory) it says how to make the data loadable
    with pytest.raises(DataError, match="not in this process.*path="):
        ArrayDataConfig(digest="0123456789abcdef", shape=[3, 2]).load()

    frame = pd.read_csv(csv_file)
    on_disk = from_arrays(frame, label_column="kind", path=tmp_path / "saved.npz")
    assert isinstance(on_disk, FileDataConfig) and on_disk.path.endswith("saved.npz")
    a, b = on_disk.load().train_eval, from_arrays(frame, label_column="kind").load().train_eval
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # same rows, same label numbers


def test_standardization_is_saved_with_the_model_and_undone(csv_file, tmp_path):
    # breaks if the training split is not standardised, the statistics are not those of the
    # training split, the transform is not saved in model.pt, or encode/decode skip it
    cfg = RunConfig.from_dict({"data": {"name": "file", "path": str(csv_file),
                                        "label_column": "kind"}, **TINY_DICT})
    result = run(cfg, tmp_path / "run", progress=False)
    xtr = result.data.train_eval[0].double()
    torch.testing.assert_close(xtr.mean(0), torch.zeros(5, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(xtr.std(0, unbiased=False), torch.ones(5, dtype=torch.float64),
                               atol=1e-5, rtol=0)

    model = load_model(tmp_path / "run" / "model.pt")
    tr = model.data_transform
    assert isinstance(tr, DataTransform) and tr == result.model.data_transform
    assert load_model(tmp_path / "run" / "checkpoint.pt").data_transform == tr  # also there
    assert tr.feature_names == tuple(f"f{i}" for i in range(5))
    raw = torch.tensor(pd.read_csv(csv_file).drop(columns="kind").to_numpy())
    torch.testing.assert_close(tr.inverse(tr.forward(raw)), raw)

    from torchmim import latent

    z_raw = latent.encode(model, raw[:10])
    z_model = model.encode(tr.forward(raw[:10]))
    assert torch.equal(z_raw, z_model)
    dec = latent.decode(model, z_raw)
    torch.testing.assert_close(dec.double(), tr.inverse(model.decode(z_raw).double()),
                               rtol=1e-6, atol=1e-4)
    assert dec[:, -1].mean() > 100  # back in the file's units (the last feature is ~1000x)

    # a round trip of the transform through the model file's plain-data form
    assert DataTransform.from_dict(tr.to_dict()) == tr


def test_parquet_split_column_feature_columns_and_bernoulli_images(tmp_path):
    # given splits (a split column), a subset of columns, and binary images with an image model
    x, y = blobs(n=90, d=4)
    frame = pd.DataFrame(x, columns=list("abcd"))
    frame["label"] = y
    frame["part"] = np.array(["train"] * 60 + ["val"] * 15 + ["test"] * 15)
    frame["note"] = "text"  # a non-numeric column left out by feature_columns
    path = tmp_path / "d.parquet"
    frame.to_parquet(path)
    cfg = FileDataConfig(path=str(path), feature_columns=["a", "b", "d"], label_column="label",
                         split_column="part")
    splits = cfg.load()
    assert len(splits.train) == 60 and splits.val[0].shape == (15, 3)
    assert splits.test[0].shape == (15, 3) and splits.num_classes == 3
    ref = torch.tensor(frame[["a", "b", "d"]].to_numpy()[75:], dtype=torch.float32)
    torch.testing.assert_close(splits.transform.inverse(splits.test[0].double()).float(), ref)

    imgs = (np.random.default_rng(0).random((80, 6, 6)) > 0.5).astype(np.float32)
    np.savez(tmp_path / "img.npz", x=imgs, y=np.arange(80) % 2)
    run_cfg = RunConfig.from_dict({
        "model": {"name": "image-mlp", "z_dim": 2, "hidden": 8},
        "data": {"name": "file", "path": str(tmp_path / "img.npz")},
        "train": {"epochs": 1}, "eval": {"nll_samples": 5, "mi": False}})
    assert run_cfg.model.x_shape == (1, 6, 6) and run_cfg.data.likelihood == "bernoulli"
    splits = run_cfg.data.load()
    assert splits.x_shape == (1, 6, 6) and splits.transform.is_identity  # no standardising
    assert set(splits.val[0].unique().tolist()) <= {0.0, 1.0}

    # data.likelihood=bernoulli switches an mlp's decoder
    cfg = RunConfig.from_dict({"data": {"name": "file", "path": str(tmp_path / "img.npz"),
                                        "likelihood": "bernoulli"}})
    assert cfg.model.likelihood == "bernoulli" and cfg.model.x_dim == 36


def test_sweep_over_a_file_data_set(csv_file, tmp_path):
    # a user sweep YAML whose base names the file: every cell finds the data (and MIM/VAE of the
    # same config may train as one vectorised group, which must save the transform too)
    spec = {"name": "mine", "base": {"data": {"name": "file", "path": str(csv_file),
                                              "label_column": "kind"}, **TINY_DICT},
            "grid": {"objective.name": ["mim", "vae"]}, "metrics": ["nll", "knn_acc"]}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(spec))
    res = invoke("sweep", str(path), "--out", str(tmp_path / "sw"), "--workers", "1",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    assert "2 of 2 cells finished" in res.output
    models = sorted((tmp_path / "sw").rglob("model.pt"))
    assert len(models) == 2
    assert all(load_model(m).data_transform is not None for m in models)


@pytest.mark.parametrize("case, error, pattern", [
    ("missing", DataError, "data file not found"),
    ("extension", ConfigError, "unknown extension"),
    ("column", ConfigError, "no column 'knd'. Did you mean 'kind'"),
    ("text", DataError, "column 'f1' is not numeric"),
    ("nan", DataError, "column 'f2' has 1 missing"),
    ("npz_key", DataError, "holds the array 'x' and optionally 'y'"),
    ("npy_label", ConfigError, "label_column names columns of a CSV"),
    ("bernoulli", DataError, "Bernoulli likelihood needs values in"),
    ("fraction", ConfigError, "val_fraction must be in"),
])
def test_one_line_errors(tmp_path, csv_file, case, error, pattern):
    # each bad input is a one-line library error naming the problem, before any training
    frame = pd.read_csv(csv_file)
    opts: dict = {"path": str(csv_file), "label_column": "kind"}
    if case == "missing":
        opts["path"] = str(tmp_path / "nope.csv")
    elif case == "extension":
        opts["path"] = str(tmp_path / "data.txt")
    elif case == "column":
        opts["label_column"] = "knd"
    elif case in ("text", "nan"):
        if case == "text":
            frame["f1"] = frame["f1"].astype(object)
            frame.loc[4, "f1"] = "oops"
        else:
            frame.loc[7, "f2"] = np.nan
        frame.to_csv(tmp_path / "bad.csv", index=False)
        opts["path"] = str(tmp_path / "bad.csv")
    elif case == "npz_key":
        np.savez(tmp_path / "bad.npz", features=np.zeros((5, 2)))
        opts = {"path": str(tmp_path / "bad.npz")}
    elif case == "npy_label":
        np.save(tmp_path / "x.npy", np.zeros((5, 2)))
        opts["path"] = str(tmp_path / "x.npy")
    elif case == "bernoulli":
        opts["likelihood"] = "bernoulli"
    elif case == "fraction":
        opts["val_fraction"] = 1.5
    with pytest.raises(error, match=pattern) as info:
        FileDataConfig(**opts).load()
    assert "\n" not in str(info.value)

    args = ["train", "--out", str(tmp_path / "run"), "-s", "data.name=file",
            *[a for k, v in opts.items() for a in ("-s", f"data.{k}={v}")]]
    res = invoke(*args)
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "error:" in res.output
    assert not (tmp_path / "run" / "model.pt").exists()
