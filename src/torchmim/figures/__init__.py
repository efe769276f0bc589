"""Figures in the paper's style (matplotlib, Agg backend; nothing here needs a display)."""

from .style import COLORS, objective_color
from .toy import (
           plot_latent_ellipses,
           plot_observation_space,
           plot_toy_comparison,
           plot_training_curves,
)

__all__ = ["COLORS", "objective_color", "plot_latent_ellipses", "plot_observation_space",
           "plot_toy_comparison", "plot_training_curves"]
