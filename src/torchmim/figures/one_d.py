"""The 1D consistency figures of Appendix D.2–D.4 (Fig. 13, 14, 15).

Per model, a column pair: observation space on top — the anchor P(x) (dashed), the model prior q(x)
(red) and a green histogram — and latent space below — the anchor P(z) (dotted), the prior p(z) (blue)
and a yellow histogram. The histograms depend on the column's ``mode``:

* ``reconstruction``: x ∼ P(x) → z ∼ q(z|x) → x' ∼ p(x|z) (green); z ∼ P(z) → x ∼ p(x|z) → z' ∼ q(z|x) (yellow);
* ``anchor``: decoding from the anchor, z ∼ P(z) → x' ∼ p(x|z); encoding from the anchor, x ∼ P(x) → z' ∼ q(z|x);
* ``prior``: decoding from the prior, z ∼ p(z) → x' ∼ p(x|z); encoding from the prior, x ∼ q(x) → z' ∼ q(z|x).

A consistent model has its green histogram on the red curve and its yellow one on the blue curve in
``prior`` mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from ..data.toy import GaussianMixtureData
from ..models.latent_variable_model import LatentVariableModel

__all__ = ["consistency_samples", "plot_consistency_1d"]

Mode = Literal["reconstruction", "anchor", "prior"]


@torch.no_grad()
def consistency_samples(model: LatentVariableModel, data: GaussianMixtureData, mode: Mode,
                        n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The (x-histogram, z-histogram) samples of a column in ``mode`` (see the module docs)."""
    model.eval()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        x_anchor = data.sample(n, seed=seed)[0].to(next(model.parameters()).dtype)
        if mode == "reconstruction":
            x_out = model.reconstruct(x_anchor, sample=True)
            z_anchor = model.anchor().sample((n,))
            z_out = model.encode(model.decode(z_anchor, sample=True), sample=True)
        elif mode == "anchor":
            x_out = model.decode(model.anchor().sample((n,)), sample=True)
            z_out = model.encode(x_anchor, sample=True)
        elif mode == "prior":
            x_out = model.decode(model.latent_prior().sample((n,)), sample=True)
            z_out = model.encode(model.data_distribution().sample((n,)), sample=True)
        else:
            raise ValueError(f"mode must be reconstruction, anchor or prior, got {mode!r}")
    return x_out.reshape(-1).cpu().numpy(), z_out.reshape(-1).cpu().numpy()


def _density(dist: Any, grid: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        t = torch.as_tensor(grid, dtype=torch.get_default_dtype()).unsqueeze(1)
        return dist.log_prob(t).exp().reshape(-1).cpu().numpy()


def plot_consistency_1d(
    columns: Sequence[dict[str, Any]],
    data: GaussianMixtureData,
    *,
    x_range: tuple[float, float] = (-4.0, 4.0),
    z_range: tuple[float, float] = (-4.0, 4.0),
    n: int = 20_000,
    bins: int = 80,
) -> Figure:
    """Columns of dicts with ``model``, ``mode`` and ``title``; two rows (x, z)."""
    fig, axes = plt.subplots(2, len(columns), figsize=(2.5 * len(columns), 4.4), squeeze=False)
    xg = np.linspace(*x_range, 400)
    zg = np.linspace(*z_range, 400)
    px = data.log_prob(xg[:, None]).exp().numpy()
    for col, spec in enumerate(columns):
        model: LatentVariableModel = spec["model"]
        x_s, z_s = consistency_samples(model, data, spec["mode"], n=n)
        ax = axes[0, col]
        ax.hist(x_s, bins=bins, range=x_range, density=True, color="tab:green", alpha=0.55)
        ax.plot(xg, px, "--", color="black", lw=1.2, label="P(x)")
        ax.plot(xg, _density(model.data_distribution(), xg), color="tab:red", lw=1.2, label="q(x)")
        ax.set_title(spec["title"], fontsize=9)
        ax.set_xlim(*x_range)
        ax = axes[1, col]
        ax.hist(z_s, bins=bins, range=z_range, density=True, color="gold", alpha=0.6)
        ax.plot(zg, _density(model.anchor(), zg), ":", color="black", lw=1.5, label="P(z)")
        ax.plot(zg, _density(model.latent_prior(), zg), color="tab:blue", lw=1.2, label="p(z)")
        ax.set_xlim(*z_range)
        for a in axes[:, col]:
            a.set_yticks([])
    axes[0, 0].set_ylabel("x")
    axes[1, 0].set_ylabel("z")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[1, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout(pad=0.4)
    return fig
