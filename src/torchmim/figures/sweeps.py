"""Sweep figures in the paper's style: a metric against the swept parameter, one line per objective
(MIM blue, VAE red), mean over seeds with a shaded ±1 standard deviation (Fig. 3, 4, 5, 12)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..metric_names import metric_label
from .style import objective_color, objective_label

__all__ = ["plot_metric_curves", "series"]


def series(summary: Sequence[dict[str, Any]], group: str, x: str, metric: str
           ) -> dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per group value: (x values sorted, means, standard deviations) of ``metric``, from the rows
    of a summary table (``<metric>_mean``, ``<metric>_std``)."""
    out: dict[Any, list[tuple[float, float, float]]] = {}
    for e in summary:
        out.setdefault(e.get(group, "all"), []).append((e[x], e[f"{metric}_mean"], e[f"{metric}_std"]))
    result = {}
    for g, pts in out.items():
        pts.sort(key=lambda p: p[0])
        arr = np.array(pts, dtype=float)
        result[g] = (arr[:, 0], arr[:, 1], arr[:, 2])
    return result


def plot_metric_curves(
    summary: Sequence[dict[str, Any]],
    *,
    x: str,
    group: str,
    metrics: Sequence[str],
    x_label: str = "",
    title: str = "",
    caption: str = "",
    log_x: bool = False,
) -> Figure:
    """One panel per metric: mean ± 1 std over seeds against ``x``, one line per ``group`` value."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        curves = series(summary, group, x, metric)
        means = np.concatenate([m for _, m, _ in curves.values()]) if curves else np.array([])
        means = means[np.isfinite(means)]
        # values over many decades (a diverging run next to converged ones, Fig. 12's MIM − H) are
        # flat lines on a linear axis: a log axis when all means are positive, span > 3 decades and
        # reach 1e3 (so MI near zero, a collapse, stays on a linear axis)
        log_y = (means.size > 0 and means.min() > 0 and means.max() > 1e3
                 and means.max() / means.min() > 1e3)
        for g, (xs, mean, std) in curves.items():
            color = objective_color(str(g))
            ax.plot(xs, mean, "-o", color=color, ms=3, lw=1.4, label=objective_label(str(g)))
            low = np.where(mean - std > 0, mean - std, mean / 10) if log_y else mean - std
            ax.fill_between(xs, low, mean + std, color=color, alpha=0.2, lw=0)
        if log_y:
            ax.set_yscale("log")
        ax.set_title(metric_label(metric, "figure") + (" (log)" if log_y else ""),
                     fontsize=9.5)
        ax.set_xlabel(x_label or x)
        if log_x:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10.5)
    if caption:
        fig.text(0.5, 0.005, caption, ha="center", va="bottom", fontsize=7.5, color="0.3")
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 0.95 if title else 1))
    return fig
