"""The results page (``torchmim report``): sweeps and demos found, links that resolve, tables that read.

The result folders are written by hand here (what ``torchmim sweep`` and ``torchmim demo`` write),
so that the tests check the page, not training.
"""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from click.testing import CliRunner

from torchmim.cli import main
from torchmim.errors import ConfigError
from torchmim.report import build_report, column_label

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


class _Page(HTMLParser):
    """The parts of a page the tests look at: image sources, header and cell texts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.headers: list[str] = []
        self.cells: list[str] = []
        self._open: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        elif tag in ("th", "td"):
            self._open = self.headers if tag == "th" else self.cells
            self._open.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td"):
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open[-1] += data


def _write_sweep(folder: Path, seeds: int = 2) -> None:
    folder.mkdir(parents=True)
    spec = {"name": "fig3", "description": "2D mixture.", "paper": "MIM has higher MI.",
            "grid": {"model.hidden": [5, 20], "objective.name": ["vae", "mim"],
                     "seed": list(range(seeds))},
            "x": "model.hidden", "x_label": "hidden units", "group": "objective.name",
            "metrics": ["mi", "nll"],
            "figures": [{"kind": "curves", "file": "fig3.png", "options": {}},
                        {"kind": "toy_panels", "file": "fig 2 panels.png", "options": {}}]}
    state = {"name": "fig3", "mode": "quick", "spec": spec, "cells": 4 * seeds,
             "finished": 4 * seeds, "failed": 0, "wall_seconds": 60.0}
    (folder / "sweep.json").write_text(json.dumps(state))
    with (folder / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, ["model.hidden", "objective.name", "n", "mi_mean", "mi_std",
                               "nll_mean", "nll_std"])
        w.writeheader()
        for h in (5, 20):
            for obj, mi in (("vae", 1.2), ("mim", 3.4)):
                w.writerow({"model.hidden": h, "objective.name": obj, "n": seeds, "mi_mean": mi,
                            "mi_std": 0.1 if seeds > 1 else 0.0, "nll_mean": 2.0 + (obj == "mim"),
                            "nll_std": 0.05 if seeds > 1 else 0.0})
    for name in ("fig3.png", "fig 2 panels.png"):  # a space: the link must be URL-quoted
        (folder / name).write_bytes(PNG)


def _write_demo(folder: Path) -> None:
    """What ``torchmim demo --out folder`` writes (metrics.json, report.md, figures, runs/)."""
    def m(mi: float, rec: float) -> dict[str, float]:
        return {"mi": mi, "nll": 2.0, "recon_rmse": rec, "knn_acc": 0.9, "posterior_var": 0.01,
                "active_units": 2, "epochs": 30, "best_epoch": 27}

    by_width = {"5": {"vae": m(1.1, 0.5), "mim": m(3.1, 0.1)},
                "500": {"vae": m(1.4, 0.5), "mim": m(5.6, 0.01)}}
    metrics = {**by_width["500"], "by_width": by_width,
               "settings": {"widths": [5, 500], "headline_width": 500, "epochs": 30, "seed": 0,
                            "n_test": 2000, "n_train": 10000, "ksg_k": 5, "knn_k": 5,
                            "nll_samples": 100, "data": "2D mixture", "seconds": 90.0}}
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "report.md").write_text("# torchmim demo\n")
    for name in ("fig2.png", "training_curves.png"):
        (folder / name).write_bytes(PNG)
    run = folder / "runs" / "mim-h5"  # a run's own metrics.json is not a demo
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(m(3.1, 0.1)))


def _check_images(page: Path, expected: int) -> _Page:
    parsed = _Page(page.read_text())
    assert len(parsed.images) == expected, parsed.images
    for src in parsed.images:
        url = urlparse(src)
        assert not url.scheme and not src.startswith("/"), src  # relative, so the tree can move
        target = (page.parent / unquote(url.path)).resolve()
        assert target.is_file(), f"{page}: <img src={src!r}> does not resolve"
    return parsed


def test_image_links_resolve_relative_to_the_page_wherever_it_is_written(tmp_path):
    # The old page linked images relative to the results folder: with --out elsewhere/ every image
    # was broken, which the "elsewhere" checks below would catch.
    root = tmp_path / "results"
    _write_sweep(root / "fig3")
    _write_demo(root / "demo")
    default = build_report(root)
    assert default == root / "index.html"
    _check_images(default, expected=4)
    elsewhere = build_report(root, tmp_path / "site" / "deep" / "index.html")  # folder created
    _check_images(elsewhere, expected=4)
    res = CliRunner().invoke(main, ["report", str(root / "fig3"), "--out",
                                    str(tmp_path / "other" / "fig3.html")])
    assert res.exit_code == 0, res.output
    _check_images(tmp_path / "other" / "fig3.html", expected=2)


def test_report_of_a_demo_folder(tmp_path):
    # `torchmim demo --out D && torchmim report D` used to fail with "no sweep results"
    demo = tmp_path / "demo"
    _write_demo(demo)
    res = CliRunner().invoke(main, ["report", str(demo)])
    assert res.exit_code == 0, res.output
    page = _check_images(demo / "index.html", expected=2)
    assert page.headers[:2] == ["hidden units", "objective"]
    assert ["5", "VAE"] == page.cells[:2] and "500" in page.cells and "MIM" in page.cells
    assert "5.600" in page.cells  # MIM's MI at width 500
    assert not any("±" in c for c in page.cells)  # one seed: no spread to show
    text = (demo / "index.html").read_text()
    assert "MIM has higher MI" in text and "±" not in text.split("<ul>", 2)[-1]
    # the run folders below it hold a metrics.json too, but only the demo is a section
    assert text.count("<h2") == 1


def test_one_seed_shows_no_plus_minus_and_headers_are_readable(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _write_sweep(one, seeds=1)
    _write_sweep(two, seeds=2)
    p1 = _Page(build_report(one).read_text())
    p2 = _Page(build_report(two).read_text())
    # with one seed the old page printed "3.400 ± 0.00"; with two the spread must stay
    assert "3.400" in p1.cells and not any("±" in c for c in p1.cells)
    assert "3.400 ± 0.10" in p2.cells
    # readable headers: the spec's x_label and a label for objective.name, not the raw keys
    assert p1.headers[:3] == ["hidden units", "objective", "seeds"]
    assert not any("." in h for h in p1.headers[:2])
    assert "MIM" in p1.cells and "mim" not in p1.cells


def test_column_labels():
    assert column_label("model.hidden", {"x": "model.hidden", "x_label": "width"}) == "width"
    assert column_label("model.hidden") == "hidden units"
    assert column_label("objective.name") == "objective"
    assert column_label("model.prior.name") == "prior"
    assert column_label("train.warmup_epochs") == "warmup epochs"
    assert column_label("priors") == "priors"


def test_no_results_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="torchmim demo"):
        build_report(tmp_path)
    res = CliRunner().invoke(main, ["report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and res.output.startswith("error: results folder not found")


def test_training_curves_one_panel_per_objective_and_a_robust_y_range():
    # the old figure drew MIM and VAE losses on one axis, and one spike set its y-range
    import matplotlib.pyplot as plt

    from torchmim.figures.toy import plot_training_curves

    def hist(values, best):
        return [{"epoch": i + 1, "beta": min(1.0, (i + 1) / 3), "val_loss": v,
                 "best": i + 1 == best} for i, v in enumerate(values)]

    mim = [5.0, 25.0] + [4.0 - 0.3 * i for i in range(30)]  # a spike at epoch 2
    runs = [{"history": hist(mim, 20), "objective": "mim", "width": 5, "label": "5 hidden"},
            {"history": hist([2.5] + [2.0] * 20, 5), "objective": "vae", "width": 5,
             "label": "5 hidden"},
            {"history": hist([2.4] + [1.8] * 20, 8), "objective": "vae", "width": 500,
             "label": "500 hidden"}]
    fig = plot_training_curves(runs)
    try:
        ax_mim, ax_vae = fig.axes
        assert "MIM" in ax_mim.get_title() and "VAE" in ax_vae.get_title()
        lo, hi = ax_mim.get_ylim()
        assert hi < 10 and lo < min(mim)  # the spike is not in range, the best value is
        assert ax_vae.get_ylim()[1] < 3  # VAE's scale is its own, not MIM's
        vae_lines = [ln for ln in ax_vae.get_lines() if ln.get_label().endswith(")")]
        assert len({ln.get_color() for ln in vae_lines}) == 2  # one colour per width
        assert [ln.get_label() for ln in vae_lines] == ["5 hidden (best: epoch 5)",
                                                         "500 hidden (best: epoch 8)"]
    finally:
        plt.close(fig)
