"""The command line: train, evaluate, config, and one-line errors."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

from torchmim.cli import main

SMALL = ["-s", "data.n_train=400", "-s", "data.n_val=200", "-s", "data.n_test=200",
         "-s", "train.epochs=3", "-s", "eval.nll_samples=10", "-s", "model.hidden=8"]


def test_train_then_evaluate_then_resume(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    res = runner.invoke(main, ["train", "--out", str(out), "--no-progress", *SMALL])
    assert res.exit_code == 0, res.output
    for name in ("config.yaml", "model.pt", "checkpoint.pt", "history.csv", "metrics.json",
                 "environment.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"mi", "nll", "recon_rmse", "knn_acc"} <= set(metrics)

    res = runner.invoke(main, ["evaluate", str(out / "model.pt"), "--out", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["mi"] == metrics["mi"] and again["nll"] == metrics["nll"]

    # resuming a finished run trains nothing more and reproduces the metrics
    res = runner.invoke(main, ["train", "--out", str(out), "--no-progress", "--resume", *SMALL])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "metrics.json").read_text())["mi"] == metrics["mi"]


def test_train_from_a_config_file_with_overrides(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["config", "-s", "objective.name=vae", *SMALL])
    assert res.exit_code == 0
    cfg = tmp_path / "vae.yaml"
    cfg.write_text(res.output)
    assert yaml.safe_load(res.output)["objective"]["name"] == "vae"
    res = runner.invoke(main, ["train", str(cfg), "--out", str(tmp_path / "v"), "--no-progress",
                               "-s", "model.hidden=6"])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load((tmp_path / "v" / "config.yaml").read_text())["model"]["hidden"] == 6


def test_errors_are_one_line_without_traceback(tmp_path):
    runner = CliRunner()
    cases = [
        (["train", "-s", "model.hiden=3"], "error: config.model.hiden: unknown key"),
        (["train", "-s", "objective.name=vea"], "Did you mean 'vae'?"),
        (["train", str(tmp_path / "none.yaml")], "error: config file not found"),
        (["evaluate", str(tmp_path / "none.pt")], "error: model file not found"),
        (["train", "-s", "model.x_dim=3", *SMALL], "expects observations of shape (3,)"),
    ]
    for args, message in cases:
        res = runner.invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    res = runner.invoke(main, ["evaluate", str(bad)])
    assert res.exit_code == 2 and "corrupt" in res.output
