"""Shared figure style: the paper draws MIM in blue and VAE in red."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)

__all__ = ["COLORS", "LABELS", "objective_color", "objective_label"]

COLORS = {"mim": "tab:blue", "amim": "tab:cyan", "vae": "tab:red", "ae": "tab:gray",
          "ce": "tab:green", "mim_minus_h": "tab:blue", "vae_plus_h": "tab:red"}
LABELS = {"mim": "MIM", "amim": "A-MIM", "vae": "VAE", "ae": "AE", "ce": "CE",
          "mim_minus_h": "MIM − H", "vae_plus_h": "VAE + H"}


def objective_color(name: str) -> str:
    """Colour of an objective (MIM blue, VAE red, others from a fixed palette)."""
    key = name.lower()
    if key in COLORS:
        return COLORS[key]
    for prefix, color in COLORS.items():
        if key.startswith(prefix):
            return color
    return "tab:purple"


def objective_label(name: str) -> str:
    """Display name of an objective (``mim`` → ``MIM``)."""
    return LABELS.get(name.lower(), name)
