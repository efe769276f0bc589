"""Objectives: pure functions of (model, batch of anchor samples, β) returning loss and terms."""

from .base import (
    OBJECTIVES,
    Objective,
    ObjectiveOutput,
    decoder_path,
    draw,
    encoder_path,
    path_loss,
    two_path_loss,
)
from .baselines import AE, VAE
from .cross_entropy import CE, ce_per_sample
from .entropy_variants import MIMMinusEntropy, VAEPlusEntropy
from .mim import AMIM, MIM, mim_loss, mim_per_sample

__all__ = [
    "AE",
    "AMIM",
    "CE",
    "MIM",
    "OBJECTIVES",
    "VAE",
    "MIMMinusEntropy",
    "Objective",
    "ObjectiveOutput",
    "VAEPlusEntropy",
    "ce_per_sample",
    "decoder_path",
    "draw",
    "encoder_path",
    "get_objective",
    "mim_loss",
    "mim_per_sample",
    "path_loss",
    "two_path_loss",
]


def get_objective(spec: str | dict | Objective, **options) -> Objective:
    """An objective from a name (``"mim"``), a dict (``{"name": "mim", ...}``) or an instance."""
    from collections.abc import Mapping

    from ..config import from_dict
    from ..errors import ConfigError

    if isinstance(spec, Objective):
        return spec
    if not isinstance(spec, (str, Mapping)):
        raise ConfigError(f"objective: expected a name, a dict or an Objective, got {spec!r}")
    data = {"name": spec} if isinstance(spec, str) else dict(spec)
    data.update(options)
    return from_dict(Objective, data, where="objective")
