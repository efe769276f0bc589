"""Image figures of Section 6.3–6.4: test images with reconstructions, random samples, and t-SNE
embeddings of the test codes coloured by class (Fig. 6–10, 16–21).

Reconstructions show the probability of each pixel being 1 (the decoder mean), as the paper does.
The grid is assembled here (a few lines of NumPy) to avoid depending on torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ["image_grid", "plot_image_rows", "plot_tsne"]


def image_grid(images: Tensor | np.ndarray, nrow: int, pad: int = 1, pad_value: float = 1.0
               ) -> np.ndarray:
    """Tile (N, C, H, W) or (N, H, W) images in [0, 1] into one (rows·(H+pad), nrow·(W+pad)) array
    (grey) or (…, 3) (colour)."""
    a = images.detach().cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    if a.ndim == 3:
        a = a[:, None]
    n, c, h, w = a.shape
    rows = int(np.ceil(n / nrow))
    grid = np.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, y:y + h, x:x + w] = a[i]
    grid = np.clip(grid, 0.0, 1.0)
    return grid[0] if c == 1 else np.moveaxis(grid, 0, -1)


def plot_image_rows(rows: Sequence[tuple[str, Tensor]], *, nrow: int = 16, title: str = "") -> Figure:
    """One labelled strip of images per row (e.g. test data, VAE and MIM reconstructions)."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(nrow * 0.55, 0.75 * len(rows) * max(
        1, int(np.ceil(len(rows[0][1]) / nrow))) + 0.3), squeeze=False)
    for ax, (label, imgs) in zip(axes[:, 0], rows):
        ax.imshow(image_grid(imgs, nrow), cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3)
    return fig


def plot_tsne(panels: Sequence[tuple[str, Tensor | np.ndarray, Tensor | np.ndarray]], *,
              class_names: Sequence[str] | None = None, seed: int = 0, perplexity: float = 30.0
              ) -> Figure:
    """t-SNE (scikit-learn) of each panel's codes (N, D) to 2D, coloured by class label."""
    from sklearn.manifold import TSNE

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.3), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, (label, z, y) in zip(axes[0], panels):
        z = z.detach().cpu().numpy() if isinstance(z, Tensor) else np.asarray(z)
        y = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
        emb = TSNE(n_components=2, perplexity=min(perplexity, (len(z) - 1) / 3), init="pca",
                   random_state=seed).fit_transform(z.reshape(len(z), -1))
        for k in np.unique(y):
            sel = y == k
            name = class_names[int(k)] if class_names is not None and int(k) < len(class_names) \
                else str(int(k))
            ax.scatter(emb[sel, 0], emb[sel, 1], s=2, color=cmap(int(k) % 10), label=name,
                       rasterized=True)
        ax.set_title(label, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(10, len(labels)), fontsize=7,
               markerscale=4, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


