"""The 2D figures of Section 6.2: observation space with reconstructions, latent space with q(z|x).

Fig. 2 of the paper, per model: top, level sets of P(x) (black) and reconstructed test points (red,
x̃ ∼ p(x|z), z ∼ q(z|x)); bottom, one-standard-deviation ellipses of q(z|x) for test points (green)
and the one-standard-deviation circle of P(z) (dashed black).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import EllipseCollection
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from ..data.toy import GaussianMixtureData
from ..models.latent_variable_model import LatentVariableModel
from .style import objective_color

__all__ = [
    "plot_latent_ellipses",
    "plot_observation_space",
    "plot_toy_comparison",
    "plot_training_curves",
]


def _corner_text(ax: Axes, top: str | None, bottom: str | None) -> None:
    kw = dict(transform=ax.transAxes, fontsize=9, fontweight="bold", ha="left",
              bbox=dict(facecolor="white", alpha=0.7, edgecolor="none", pad=1.5))
    if top:
        ax.text(0.03, 0.97, top, va="top", **kw)
    if bottom:
        ax.text(0.03, 0.03, bottom, va="bottom", **kw)


@torch.no_grad()
def plot_observation_space(
    ax: Axes,
    model: LatentVariableModel,
    mixture: GaussianMixtureData,
    x: torch.Tensor,
    *,
    lim: float = 2.0,
    seed: int = 0,
    text: tuple[str | None, str | None] = (None, None),
) -> None:
    """Level sets of P(x) and reconstructions x̃ ∼ p(x|z), z ∼ q(z|x) of the test points ``x``."""
    grid = np.linspace(-lim, lim, 200)
    gx, gy = np.meshgrid(grid, grid)
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    if mixture.dim > 2:  # show the first two coordinates of a higher-dimensional mixture
        pts = np.hstack([pts, np.zeros((len(pts), mixture.dim - 2))])
    density = mixture.log_prob(pts).exp().numpy().reshape(gx.shape)
    ax.contour(gx, gy, density, levels=6, colors="black", linewidths=0.7)
    model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        x_rec = model.reconstruct(x.to(next(model.parameters()).device), sample=True).cpu().numpy()
    ax.scatter(x_rec[:, 0], x_rec[:, 1], s=1.5, c="red", alpha=0.35, linewidths=0, rasterized=True)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([-1, 0, 1])
    ax.set_yticks([-1, 0, 1])
    _corner_text(ax, *text)


@torch.no_grad()
def plot_latent_ellipses(
    ax: Axes,
    model: LatentVariableModel,
    x: torch.Tensor,
    *,
    num_ellipses: int = 200,
    lim: float = 3.0,
    dims: tuple[int, int] = (0, 1),
) -> None:
    """One-standard-deviation ellipses of q(z|x) for ``num_ellipses`` test points and the P(z) circle."""
    model.eval()
    q = model.posterior(x[:num_ellipses].to(next(model.parameters()).device))
    mean = q.mean.reshape(q.mean.shape[0], -1).cpu().numpy()
    std = q.stddev.reshape(q.mean.shape[0], -1).cpu().numpy()
    i, j = dims if mean.shape[1] > 1 else (0, 0)
    widths = np.maximum(2 * std[:, i], 0.01)  # keep near-deterministic posteriors visible
    heights = np.maximum(2 * std[:, j], 0.01)
    ellipses = EllipseCollection(widths, heights, np.zeros_like(widths), units="xy",
                                 offsets=np.stack([mean[:, i], mean[:, j]], 1),
                                 offset_transform=ax.transData, facecolors="none",
                                 edgecolors="green", linewidths=0.6)
    ax.add_collection(ellipses)
    ax.add_patch(Circle((0, 0), 1.0, fill=False, ls="--", lw=1.5, color="black"))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([-2, 0, 2])
    ax.set_yticks([-2, 0, 2])


def plot_toy_comparison(
    panels: Sequence[dict[str, Any]],
    mixture: GaussianMixtureData,
    x_test: torch.Tensor,
    *,
    num_points: int = 2000,
    num_ellipses: int = 200,
) -> Figure:
    """Fig. 2: one column per model (``panels``: dicts with ``model``, ``title``, ``metrics``).

    Each column shows the observation space (top) and the latent space (bottom); the MI and
    reconstruction error of the model's metrics are printed in the top panel.
    """
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(2.3 * n, 4.9), squeeze=False)
    for col, panel in enumerate(panels):
        m = panel.get("metrics", {})
        top = f"MI = {m['mi']:.2f}" if "mi" in m else None
        bottom = f"RMSE = {m['recon_rmse']:.2g}" if "recon_rmse" in m else None
        plot_observation_space(axes[0, col], panel["model"], mixture, x_test[:num_points],
                               text=(top, bottom))
        plot_latent_ellipses(axes[1, col], panel["model"], x_test, num_ellipses=num_ellipses)
        axes[0, col].set_title(panel["title"], fontsize=10,
                               color=objective_color(panel.get("objective", "")))
    axes[0, 0].set_ylabel("observation space x")
    axes[1, 0].set_ylabel("latent space z")
    fig.tight_layout(pad=0.4)
    return fig


def _robust_ylim(values: np.ndarray) -> tuple[float, float]:
    """A y-range that shows every curve's shape: from the lowest value to a little above the 95th
    percentile, so that one spike (an early epoch, a bad step) does not squash the rest."""
    lo, top = float(values.min()), float(values.max())
    q95 = float(np.percentile(values, 95))
    hi = min(top, q95 + 0.25 * (q95 - lo))
    pad = 0.06 * max(hi - lo, 1e-6)
    return lo - pad, hi + pad


def plot_training_curves(runs: Sequence[dict[str, Any]]) -> Figure:
    """Validation loss (at β = 1) per epoch: one panel per objective (MIM's and VAE's losses are
    different quantities on different scales), one colour per model (``width``, else ``label``).

    ``runs``: dicts with ``history`` (the trainer's per-epoch dicts), ``objective``, ``label`` and
    optionally ``width``. The best validation epoch is marked with a dot; epochs of the β warm-up are
    shaded; the y-range is robust (values above it are drawn as triangles on the top edge).
    """
    from .style import objective_label

    panels: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        panels.setdefault(str(r.get("objective", "")), []).append(r)
    keys = list(dict.fromkeys(r.get("width", r["label"]) for r in runs))
    palette = plt.get_cmap("Dark2").colors  # no red or blue: those mean VAE and MIM elsewhere
    colors = {k: palette[i % len(palette)] for i, k in enumerate(keys)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 0.6, 3.7), squeeze=False)
    for ax, (obj, members) in zip(axes[0], panels.items()):
        finite = [h["val_loss"] for r in members for h in r["history"]
                  if isinstance(h.get("val_loss"), (int, float)) and np.isfinite(h["val_loss"])]
        if not finite:
            ax.set_title(objective_label(obj) or "?", color=objective_color(obj))
            continue
        lo, hi = _robust_ylim(np.asarray(finite, dtype=float))
        warm = [h["epoch"] for h in members[0]["history"] if float(h.get("beta", 1.0)) < 1.0]
        if warm:
            ax.axvspan(0.5, max(warm) + 0.5, color="0.85", alpha=0.6, lw=0, label="β warm-up")
        clipped = False
        for r in members:
            hist = [h for h in r["history"] if np.isfinite(h.get("val_loss", np.nan))]
            epochs = np.array([h["epoch"] for h in hist])
            val = np.array([h["val_loss"] for h in hist], dtype=float)
            color = colors[r.get("width", r["label"])]
            best = [h for h in hist if h.get("best")]
            label = r["label"] + (f" (best: epoch {best[-1]['epoch']})" if best else "")
            ax.plot(epochs, np.minimum(val, hi), "-", color=color, lw=1.4, label=label)
            over = val > hi
            if over.any():
                clipped = True
                ax.plot(epochs[over], np.full(over.sum(), hi), "^", color=color, ms=5,
                        clip_on=False)
            if best:
                ax.plot(best[-1]["epoch"], best[-1]["val_loss"], "o", color=color, ms=6,
                        mec="black", mew=0.8, zorder=5)
        ax.set_ylim(lo, hi)
        ax.set_xlim(left=0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{objective_label(obj)} validation loss (β = 1)")
        ax.set_title(objective_label(obj) + ("  (▲: above the axis)" if clipped else ""),
                     fontsize=10, color=objective_color(obj))
        ax.legend(fontsize=7.5, loc="upper right")
        ax.grid(alpha=0.3)
    fig.suptitle("Validation loss per epoch (dots: best validation epoch, kept as the model)",
                 fontsize=10)
    fig.tight_layout()
    return fig
