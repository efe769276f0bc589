"""The command line: train, evaluate, config, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import types

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


# ------------------------------------------------------------------ start-up time: no torch for --help
def _torch_imports(*args: str) -> list[str]:
    """The torch modules that ``python -X importtime -m torchmim ARGS`` imports (from its stderr)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "torchmim", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:")]
    assert "torchmim.cli" in names  # the importtime output was read
    return [n for n in names if n == "torch" or n.startswith("torch.")]


def test_help_and_version_do_not_import_torch():
    # torch takes seconds to import; an eager import anywhere on the CLI's start-up path (cli.py,
    # errors.py, the package __init__) makes `torchmim --help` slow and fails this test
    for args in (["--help"], ["--version"], ["train", "--help"], ["sweep", "--help"]):
        assert _torch_imports(*args) == [], args


def test_lazy_package_exposes_the_public_api():
    code = ("import sys, torchmim as tm\n"
            "assert 'torch' not in sys.modules\n"  # import torchmim alone is instant
            "from torchmim import metrics\n"
            "assert metrics.ksg_mutual_information and tm.MIM().name == 'mim'\n"
            "assert all(hasattr(tm, n) for n in tm.__all__) and set(tm.__all__) <= set(dir(tm))\n"
            "assert tm.models.build_model is tm.build_model and tm.training.Trainer is tm.Trainer\n"
            "try:\n    tm.no_such_name\nexcept AttributeError:\n    pass\n"
            "else:\n    raise SystemExit('no AttributeError')\n"
            "from torchmim import *\n"
            "assert RunConfig is tm.RunConfig\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ------------------------------------------------------------------ sweep --list
def test_sweep_list_wraps_descriptions_and_lists_aliases():
    res = CliRunner().invoke(main, ["sweep", "--list"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    heads = [ln for ln in lines if not ln.startswith(" ")]
    # table1 and table2 are other names of image-tables, not three sweeps of the same runs
    assert [h.split()[0] for h in heads if "table" in h.split()[0]] == ["image-tables"]
    assert "(aliases: table1, table2)" in next(h for h in heads if h.startswith("image-tables"))
    # descriptions in full, wrapped at word boundaries: no "…", every word of the spec is there
    from torchmim.experiments import get_sweep

    assert "…" not in res.output and all(len(ln) <= 100 for ln in lines)
    start = lines.index(next(h for h in heads if h.startswith("fig3")))
    body = []
    for ln in lines[start + 1:]:
        if not ln.startswith(" "):
            break
        body.append(ln.strip())
    assert " ".join(body) == get_sweep("fig3").description
    assert get_sweep("table2").name == "image-tables"  # the aliases still run the sweep


# ------------------------------------------------------------------ TensorBoard and MLflow
class _FakeWriter:
    instances: list[_FakeWriter] = []

    def __init__(self, log_dir: str) -> None:
        self.log_dir, self.scalars, self.closed = log_dir, [], False
        _FakeWriter.instances.append(self)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def flush(self) -> None: ...

    def close(self) -> None:
        self.closed = True


def _fake_mlflow() -> types.ModuleType:
    mod = types.ModuleType("mlflow")
    mod.calls = []
    for name in ("set_experiment", "start_run", "log_params", "log_metrics", "end_run"):
        setattr(mod, name, lambda *a, _n=name, **k: mod.calls.append((_n, a, k)))
    return mod


def test_train_logs_to_tensorboard_and_mlflow(tmp_path, monkeypatch):
    # fakes stand in for the optional packages: without the wiring from the CLI options through
    # RunConfig.log to run()'s callbacks, nothing reaches them and this fails
    board = types.ModuleType("torch.utils.tensorboard")
    board.SummaryWriter = _FakeWriter
    _FakeWriter.instances = []
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", board)
    mlflow = _fake_mlflow()
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    out, tb = tmp_path / "run", tmp_path / "tb"
    res = CliRunner().invoke(main, ["train", "--out", str(out), "--no-progress", "--tensorboard",
                                    str(tb), "--mlflow", "-s", "log.mlflow_experiment=toy", *SMALL])
    assert res.exit_code == 0, res.output
    [writer] = _FakeWriter.instances
    assert writer.log_dir == str(tb) and writer.closed
    assert sorted({s for t, _, s in writer.scalars if t == "val_loss"}) == [1, 2, 3]
    names = [c[0] for c in mlflow.calls]
    assert names[:3] == ["set_experiment", "start_run", "log_params"] and names[-1] == "end_run"
    assert mlflow.calls[0][1] == ("toy",)
    params = mlflow.calls[2][1][0]
    assert params["model.hidden"] == 8 and params["objective.name"] == "mim"
    steps = [c[2]["step"] for c in mlflow.calls if c[0] == "log_metrics"]
    assert steps == [1, 2, 3]
    saved = yaml.safe_load((out / "config.yaml").read_text())["log"]
    assert saved["tensorboard"] == str(tb) and saved["mlflow"] is True

    # log.tensorboard=true: into the run folder
    _FakeWriter.instances = []
    res = CliRunner().invoke(main, ["train", "--out", str(out / "b"), "--no-progress",
                                    "-s", "log.tensorboard=true", *SMALL])
    assert res.exit_code == 0, res.output
    assert _FakeWriter.instances[0].log_dir == str(out / "b" / "tensorboard")


def test_missing_logger_package_is_one_line_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    monkeypatch.setitem(sys.modules, "mlflow", None)
    for args, package in ((["--tensorboard", str(tmp_path / "tb")], "tensorboard"),
                          (["--mlflow"], "mlflow"), (["-s", "log.tensorboard=true"], "tensorboard")):
        out = tmp_path / package
        res = CliRunner().invoke(main, ["train", "--out", str(out), "--no-progress", *args, *SMALL])
        assert res.exit_code == 2, res.output
        assert res.output.count("\n") == 1 and "Traceback" not in res.output
        assert res.output.startswith("error: ") and f"pip install 'torchmim[{package}]'" in res.output
        assert not out.exists()  # stopped before the run started
    # a sweep checks once, before any cell runs (else every cell would fail with this message)
    res = CliRunner().invoke(main, ["sweep", "fig3", "--quick", "--out", str(tmp_path / "sweep"),
                                    "--no-progress", "-s", "log.mlflow=true"])
    assert res.exit_code == 2 and "pip install 'torchmim[mlflow]'" in res.output, res.output
    assert not (tmp_path / "sweep").exists()
