"""Latent-variable models and the registry of architectures."""

from .configs import MODELS, ModelConfig
from .hvae import ConvHVAEConfig, PixelHVAEConfig
from .image_mlp import ImageMLPConfig
from .latent_variable_model import JointTerms, LatentVariableModel
from .mlp import MLPModelConfig

__all__ = ["MODELS", "ConvHVAEConfig", "ImageMLPConfig", "JointTerms", "LatentVariableModel",
           "MLPModelConfig", "ModelConfig", "PixelHVAEConfig", "build_model"]


def build_model(config: ModelConfig | dict | None = None, **overrides) -> LatentVariableModel:
    """Build a model from a config dataclass, a dict with a ``name`` key, or keyword options.

    >>> model = build_model(name="mlp", hidden=20)
    """
    from ..config import from_dict, to_dict
    from ..errors import ConfigError

    if config is None:
        config = {}
    if isinstance(config, str):  # build_model("mlp", hidden=20)
        config = {"name": config}
    data = to_dict(config) if not isinstance(config, dict) else dict(config)
    if not isinstance(data, dict):
        raise ConfigError(f"model: expected a ModelConfig, a dict or a name, got {config!r}")
    data.update(overrides)
    return from_dict(ModelConfig, data, where="model").build()
