"""Model configs: one dataclass per architecture, registered by name, each able to ``build()`` its model.

A saved model stores ``{"name": ..., <config fields>}`` and its ``state_dict`` — never pickled code —
so :func:`~torchmim.models.load_model` rebuilds it from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from .latent_variable_model import LatentVariableModel

__all__ = ["MODELS", "ModelConfig"]

#: Model architectures by name; each entry is a :class:`ModelConfig` subclass.
MODELS: Registry[type[ModelConfig]] = Registry("model")


@dataclass
class ModelConfig:
    """Base of architecture configs; ``from_dict`` picks the subclass by the ``name`` key."""

    __registry__: ClassVar[Registry] = MODELS
    default_name: ClassVar[str] = "mlp"
    #: importance samples S of the test NLL when the evaluation does not say (Section 6.2: 1000).
    default_nll_samples: ClassVar[int] = 1000

    def __post_init__(self) -> None:
        """Every field checked against its annotation (``x_dim=2.5`` or ``"2"`` is a one-line
        :class:`~torchmim.errors.ConfigError`, as from YAML); subclasses call this first."""
        from ..config import check_fields

        check_fields(self, "model")

    def build(self) -> LatentVariableModel:  # pragma: no cover - abstract
        raise NotImplementedError
