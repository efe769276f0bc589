"""End to end: the paper's headline result on the 2D toy problem, the demo, the README."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import torchmim as tm

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy_runs():
    """MIM and VAE, same architecture and seed, on the 2D mixture (smaller than the paper's)."""
    out = {}
    for name in ("mim", "vae"):
        cfg = tm.RunConfig.from_dict({
            "model": {"hidden": 50}, "objective": {"name": name},
            "data": {"n_train": 3000, "n_val": 1000, "n_test": 2000},
            "train": {"epochs": 25, "progress": False}, "eval": {"nll_samples": 200}, "seed": 1})
        out[name] = tm.run(cfg).metrics
    return out


def test_mim_beats_vae_on_mi_reconstruction_and_knn(toy_runs):
    mim, vae = toy_runs["mim"], toy_runs["vae"]
    assert mim["mi"] > vae["mi"] + 1.0
    assert mim["recon_rmse"] < 0.5 * vae["recon_rmse"]
    assert mim["knn_acc"] > vae["knn_acc"]
    assert mim["posterior_var"] < 0.1 * vae["posterior_var"]  # tight posteriors vs collapse


def test_demo_writes_metrics_report_and_figures(tmp_path):
    from torchmim.demo import run_demo

    metrics = run_demo(tmp_path, widths=(5, 50), epochs=4, nll_samples=20, max_points=500,
                       progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["mim"].keys() >= {"mi", "nll", "recon_rmse", "knn_acc"}
    assert saved["vae"].keys() >= {"mi", "nll", "recon_rmse", "knn_acc"}
    assert saved["mim"] == metrics["mim"] == saved["by_width"]["50"]["mim"]
    report = (tmp_path / "report.md").read_text()
    assert "| 50 | MIM |" in report and "fig2.png" in report
    for png in ("fig2.png", "training_curves.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "runs" / "mim-h50" / "model.pt").is_file()


def test_readme_starts_with_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = re.match(r"\s*```(?:bash|sh)?\n(.*?)```", text, re.DOTALL)
    assert first_block, "README.md must start with a code block"
    commands = [ln for ln in first_block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]
    assert [c.split("#")[0].strip() for c in commands] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
