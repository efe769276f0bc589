"""Shared figure style: the paper draws MIM in blue and VAE in red."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)

__all__ = ["COLORS", "objective_color", "LABELS"]

COLORS = {"mim": "tab:blue", "amim": "tab:cyan", "vae": "tab:red", "ae": "tab:gray",
          "ce": "tab:green"}
LABELS = {"mim": "MIM", "amim": "A-MIM", "vae": "VAE", "ae": "AE", "ce": "CE"}


def objective_color(name: str) -> str:
    """Colour of an objective (MIM blue, VAE red, others from a fixed palette)."""
    key = name.lower()
    if key in COLORS:
        return COLORS[key]
    for prefix, color in COLORS.items():
        if key.startswith(prefix):
            return color
    return "tab:purple"
