"""Figures drawn from a sweep's results, by kind (the ``figures`` of a :class:`SweepSpec`).

* ``curves``: metric against the swept parameter per objective (Fig. 3, 4, 5, 12);
* ``toy_panels``: Fig. 2-style observation/latent panels of selected cells (Fig. 2, 11);
* ``consistency_1d``: the 1D histograms of Appendix D (Fig. 13, 14, 15).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ..errors import ConfigError
from ..figures.one_d import plot_consistency_1d
from ..figures.style import objective_label
from ..figures.sweeps import plot_metric_curves
from ..figures.toy import plot_toy_comparison
from ..io import load_model
from ..registry import Registry
from .aggregate import aggregate
from .spec import Cell, SweepSpec

__all__ = ["SWEEP_FIGURES", "FigureSkipped", "draw_sweep_figures", "select_cells"]


class FigureSkipped(ConfigError):
    """A figure has no finished cell to draw from (e.g. the grid was restricted with --grid)."""

#: Figure kinds by name: ``fn(spec, out_dir, rows, cells, **options) -> Figure``.
SWEEP_FIGURES: Registry[Callable[..., Figure]] = Registry("sweep figure")


def select_cells(cells: Sequence[Cell], select: dict[str, Any]) -> list[Cell]:
    """Cells whose grid values match ``select`` (a value or a list of accepted values per key)."""
    def ok(cell: Cell) -> bool:
        for key, want in select.items():
            accepted = want if isinstance(want, list) else [want]
            if cell.params.get(key) not in accepted:
                return False
        return True

    return [c for c in cells if ok(c)]


def _load(out: Path, cell: Cell, stage: str = "final"):
    folder = out / "cells" / cell.id
    return load_model(folder / ("init/model.pt" if stage == "init" else "model.pt"))


def _caption(rows: Sequence[dict[str, Any]]) -> str:
    r = rows[0]
    seeds = len({row["seed"] for row in rows})
    parts = [f"mean ± 1 std over {seeds} seed{'s' if seeds > 1 else ''}"]
    if "n_test" in r:
        parts.append(f"N = {int(r['n_test'])} test points")
    if "ksg_k" in r:
        parts.append(f"KSG k = {int(r['ksg_k'])}")
    if "knn_k" in r and r.get("knn_k") is not None:
        parts.append(f"k-NN k = {int(r['knn_k'])} fit on {int(r.get('n_train', 0))} training points")
    if "nll_samples" in r:
        parts.append(f"NLL with S = {int(r['nll_samples'])}")
    return "; ".join(parts)


@SWEEP_FIGURES.register("curves")
def _curves(spec: SweepSpec, out: Path, rows: Sequence[dict[str, Any]], cells: Sequence[Cell],
            metrics: list[str] | None = None, log_x: bool = False, title: str | None = None) -> Figure:
    if spec.x is None:
        raise ConfigError(f"sweep {spec.name}: a 'curves' figure needs the spec's x")
    by = [k for k in spec.grid if k != "seed"]
    summary = aggregate(rows, by, list(dict.fromkeys([*spec.metrics, *(metrics or [])])))
    return plot_metric_curves(summary, x=spec.x, group=spec.group, metrics=metrics or spec.metrics,
                              x_label=spec.x_label, title=title or spec.name,
                              caption=_caption(rows), log_x=log_x)


@SWEEP_FIGURES.register("toy_panels")
def _toy_panels(spec: SweepSpec, out: Path, rows: Sequence[dict[str, Any]], cells: Sequence[Cell],
                select: dict[str, Any] | None = None, title_keys: list[str] | None = None) -> Figure:
    chosen = select_cells(cells, select or {})
    done = {r["cell"]: r for r in rows}
    chosen = [c for c in chosen if c.id in done]
    if not chosen:
        raise FigureSkipped(f"sweep {spec.name}: no finished cell matches {select}")
    data = chosen[0].config.data
    splits = data.load(seed=chosen[0].config.seed)
    panels = []
    for cell in chosen:
        words = [objective_label(str(cell.params.get(spec.group, "")))]
        words += [f"{k.split('.')[-1]} {cell.params[k]}" for k in (title_keys or []) if k in cell.params]
        panels.append({"model": _load(out, cell), "objective": str(cell.params.get(spec.group, "")),
                       "title": ", ".join(words), "metrics": done[cell.id]})
    return plot_toy_comparison(panels, data.data_mixture(), splits.test[0])


@SWEEP_FIGURES.register("consistency_1d")
def _consistency(spec: SweepSpec, out: Path, rows: Sequence[dict[str, Any]], cells: Sequence[Cell],
                 columns: list[dict[str, Any]] | None = None, x_range: list[float] | None = None,
                 z_range: list[float] | None = None) -> Figure:
    done = {r["cell"] for r in rows}
    cols = []
    for col in columns or []:
        matches = [c for c in select_cells(cells, col.get("select", {})) if c.id in done]
        if not matches:
            continue
        cell = matches[0]
        cols.append({"model": _load(out, cell, col.get("stage", "final")), "mode": col["mode"],
                     "title": col.get("title", cell.id)})
    if not cols:
        raise FigureSkipped(f"sweep {spec.name}: no finished cell for the consistency figure")
    data = cells[0].config.data
    return plot_consistency_1d(cols, data.data_mixture(), x_range=tuple(x_range or (-4, 4)),
                               z_range=tuple(z_range or (-4, 4)))


def draw_sweep_figures(spec: SweepSpec, out: Path, rows: Sequence[dict[str, Any]],
                       cells: Sequence[Cell]) -> tuple[list[Path], dict[str, str]]:
    """Draw every figure of the spec into ``out``; returns the files written and, per figure that
    had no finished cell to draw from, why it was skipped.

    A figure function returns a matplotlib ``Figure`` (saved as PNG) or text (a Markdown table).
    """
    written: list[Path] = []
    skipped: dict[str, str] = {}
    for fig_spec in spec.figures:
        fn = SWEEP_FIGURES.get(fig_spec.kind)
        try:
            result = fn(spec, out, rows, cells, **fig_spec.options)
        except FigureSkipped as e:
            skipped[fig_spec.file] = str(e)
            continue
        path = out / fig_spec.file
        if isinstance(result, str):
            path.write_text(result)
        else:
            result.savefig(path, dpi=120)
            plt.close(result)
        written.append(path)
    return written, skipped
