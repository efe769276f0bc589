"""A one-level MLP model for images: the VampPrior paper's "VAE (L = 1)" architecture.

* q(z|x): flatten, gated dense C·H·W → 300 → 300, Gaussian head → z (log-variance clamped to
  [−6, 2]);
* p(x|z): gated dense z → 300 → 300, linear 300 → C·H·W Bernoulli logits, reshaped to (C, H, W);
* p(z): any prior of the registry over the whole latent (``prior`` + ``prior_options``): N(0, I)
  by default, the VampPrior (1/K) Σ_k q(z|u_k) of the paper's image experiments, ...;
* q(x): the marginal of Eq. (16); P(z) = p(z).

Hidden sizes: the VampPrior paper's one-level models use two gated dense layers of 300 units in both
networks (``hidden=300, depth=2``); the latent size defaults to 40 (their one-level z); all linear
weights are He-normal.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent

from ..errors import ConfigError
from ..layers import (
    GatedDense,
    GaussianHead,
    check_images,
    check_latent,
    chunked_no_grad,
    he_normal_,
)
from ..precision import full_precision
from ._image import ImageConfigMixin
from .configs import MODELS, ModelConfig
from .latent_variable_model import LatentVariableModel

__all__ = ["ImageMLPConfig", "MLPImageDecoder", "MLPImageEncoder"]


def _gated_stack(in_features: int, hidden: int, depth: int) -> nn.Sequential:
    widths = [in_features] + [hidden] * depth
    return nn.Sequential(*(GatedDense(a, b) for a, b in itertools.pairwise(widths)))


class MLPImageEncoder(nn.Module):
    """q(z|x) = N(μ(x), diag σ²(x)) from flattened images through gated dense layers."""

    def __init__(self, x_shape: Sequence[int], z_dim: int = 40, hidden: int = 300, depth: int = 2,
                 *, logvar_clamp: tuple[float, float] | None = (-6.0, 2.0),
                 std_floor: float = 0.0) -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.layers = _gated_stack(math.prod(self.x_shape), hidden, depth)
        self.head = GaussianHead(hidden if depth else math.prod(self.x_shape), z_dim,
                                 logvar_clamp=logvar_clamp, std_floor=std_floor)

    def forward(self, x: Tensor) -> Independent:
        check_images(x, self.x_shape)
        return self.head(self.layers(x.flatten(x.dim() - 3)))


class MLPImageDecoder(nn.Module):
    """p(x|z) = Independent(Bernoulli(logits(z)), 3) over (C, H, W)."""

    def __init__(self, x_shape: Sequence[int], z_dim: int = 40, hidden: int = 300,
                 depth: int = 2) -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.z_dim = z_dim
        self.layers = _gated_stack(z_dim, hidden, depth)
        self.out = he_normal_(nn.Linear(hidden if depth else z_dim, math.prod(self.x_shape)))

    def logits(self, z: Tensor) -> Tensor:
        z = check_latent(z, self.z_dim)
        lead = z.shape[:-1]
        flat = chunked_no_grad(lambda v: self.out(self.layers(v)), z.reshape(-1, self.z_dim))
        return flat.reshape(*lead, *self.x_shape)

    def forward(self, z: Tensor) -> Independent:
        return Independent(Bernoulli(logits=full_precision(self.logits(z)), validate_args=False), 3,
                           validate_args=False)


@MODELS.register("image-mlp")
@dataclass
class ImageMLPConfig(ImageConfigMixin, ModelConfig):
    """One-level gated-MLP model for images (see the module docs).

    Attributes:
        x_shape: (C, H, W) of one image.
        z_dim: latent size (40).
        hidden, depth: width and number of gated dense layers of both networks (300, 2).
        prior: registry name (:data:`~torchmim.distributions.PRIORS`) of p(z) over the whole z:
            ``normal`` (the default; ``standard`` is its old name), ``vampprior`` (through the
            encoder q(z|x)), ``gmm``, ...
        prior_options: its options (the VampPrior's: ``num_pseudo_inputs`` 500, ``noise`` 0.01).
        latent_anchor, latent_anchor_options: the anchor P(z) that symmetric MIM samples
            (``None``: the prior p(z), the paper's set-up; e.g. ``normal`` for a fixed N(0, I)).
        logvar_clamp: hard clamp of the encoder's log-variance ((−6, 2)).
        std_floor: added to the encoder's standard deviation (0).
        likelihood: ``"bernoulli"``.
    """

    default_nll_samples: ClassVar[int] = 5000

    x_shape: tuple[int, ...] = (1, 28, 28)
    z_dim: int = 40
    hidden: int = 300
    depth: int = 2
    prior: str = "normal"
    prior_options: dict[str, Any] = field(default_factory=dict)
    latent_anchor: str | None = None
    latent_anchor_options: dict[str, Any] = field(default_factory=dict)
    logvar_clamp: tuple[float, float] | None = (-6.0, 2.0)
    std_floor: float = 0.0
    likelihood: str = "bernoulli"

    def __post_init__(self) -> None:
        super().__post_init__()  # field types (ModelConfig)
        if self.z_dim < 1 or self.hidden < 1 or self.depth < 0:
            raise ConfigError(f"model.z_dim and model.hidden must be >= 1 and model.depth >= 0, "
                              f"got {self.z_dim}, {self.hidden}, {self.depth}")
        self._check_image_fields(prior_shape=self.z_dim, z_dim=self.z_dim)

    def build(self) -> LatentVariableModel:
        # built in this order (encoder, decoder, prior) so a seed gives the same initial weights
        # as torchmim 0.1
        encoder = MLPImageEncoder(self.x_shape, self.z_dim, self.hidden, self.depth,
                                  logvar_clamp=self.logvar_clamp, std_floor=self.std_floor)
        decoder = MLPImageDecoder(self.x_shape, self.z_dim, self.hidden, self.depth)
        model = LatentVariableModel(
            encoder=encoder,
            decoder=decoder,
            prior=self._build_prior(self.z_dim),
            latent_anchor=self._build_anchor(self.z_dim),
            x_shape=self.x_shape,
            z_shape=(self.z_dim,),
        )
        model.config = self
        return model
