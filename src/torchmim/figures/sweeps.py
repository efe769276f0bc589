"""Sweep figures in the paper's style: a metric against the swept parameter, one line per objective
(MIM blue, VAE red), mean over seeds with a shaded ±1 standard deviation (Fig. 3, 4, 5, 12)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from .style import objective_color, objective_label

__all__ = ["METRIC_TITLES", "plot_metric_curves"]

METRIC_TITLES = {
    "mi": "mutual information (KSG, nats) ↑",
    "nll": "test NLL (nats) ↓",
    "recon_rmse": "reconstruction error ↓",
    "knn_acc": "5-NN accuracy ↑",
    "posterior_var": "mean posterior variance",
    "active_units": "active units",
}


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
    from ..experiments.aggregate import series

    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for g, (xs, mean, std) in series(summary, group, x, metric).items():
            color = objective_color(str(g))
            ax.plot(xs, mean, "-o", color=color, ms=3, lw=1.4, label=objective_label(str(g)))
            ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        ax.set_title(METRIC_TITLES.get(metric, metric), fontsize=9.5)
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
