"""The fully connected model of the paper's low-dimensional experiments (Section 6.2, Appendix D).

Encoder and decoder are each "two fully connected layers" (one hidden layer of width ``hidden``,
tanh) regressing the parameters of a Gaussian; p(z) = N(0, I) and q(x) is the marginal of Eq. (16),
so MIM and VAE train the very same parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..config import check_number
from ..distributions.conditional import CONDITIONALS
from ..distributions.priors import build_prior, check_prior
from ..errors import ConfigError
from ..networks import ACTIVATIONS, MLP
from .configs import MODELS, ModelConfig
from .latent_variable_model import LatentVariableModel

__all__ = ["MLPModelConfig"]


@MODELS.register("mlp")
@dataclass
class MLPModelConfig(ModelConfig):
    """Fully connected encoder/decoder over vectors.

    Attributes:
        x_dim, z_dim: observation and latent sizes.
        hidden, depth, activation: width, number of hidden layers and nonlinearity of both networks.
        posterior, likelihood: conditional densities of q(z|x) and p(x|z) (``gaussian``, ``bernoulli``,
            ``gmm``); ``conditional_options`` are passed to both (e.g. ``num_components``).
        prior, data_prior, latent_anchor: registry names (:data:`~torchmim.distributions.PRIORS`)
            of p(z), q(x) and P(z) (``None``: P(z) = p(z)), with their options; the same
            mechanism as every model's ``prior`` / ``prior_options``.
        std_floor: added to every conditional standard deviation (1e-6 in the reference).
        logvar_clamp: optional hard clamp of conditional log-variances.
    """

    x_dim: int = 2
    z_dim: int = 2
    hidden: int = 50
    depth: int = 1
    activation: str = "tanh"
    posterior: str = "gaussian"
    likelihood: str = "gaussian"
    conditional_options: dict[str, Any] = field(default_factory=dict)
    prior: str = "normal"
    prior_options: dict[str, Any] = field(default_factory=dict)
    data_prior: str = "marginal"
    data_prior_options: dict[str, Any] = field(default_factory=dict)
    latent_anchor: str | None = None
    latent_anchor_options: dict[str, Any] = field(default_factory=dict)
    std_floor: float = 1e-6
    logvar_clamp: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()  # field types
        for name in ("x_dim", "z_dim", "hidden"):
            check_number(getattr(self, name), f"model.{name}", low=1, integer=True)
        check_number(self.depth, "model.depth", low=0, integer=True)
        check_number(self.std_floor, "model.std_floor", low=0)
        if self.logvar_clamp is not None:
            low, high = self.logvar_clamp
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ConfigError(f"model.logvar_clamp must be (low, high) with finite low < high, "
                                  f"got {list(self.logvar_clamp)}")
        ACTIVATIONS.get(self.activation)
        for name in (self.posterior, self.likelihood):
            CONDITIONALS.get(name)
        self._check_conditional_options()
        x_shape = (self.x_dim,)
        self.prior = check_prior(self.prior, self.prior_options, where="model.prior",
                                 shape=self.z_dim, x_shape=x_shape)
        self.data_prior = check_prior(self.data_prior, self.data_prior_options,
                                      where="model.data_prior", shape=self.x_dim, x_shape=x_shape)
        if self.latent_anchor is not None:
            self.latent_anchor = check_prior(self.latent_anchor, self.latent_anchor_options,
                                             where="model.latent_anchor", shape=self.z_dim,
                                             x_shape=x_shape)

    def _options(self, kind: str) -> dict[str, Any]:
        options = dict(self.conditional_options)
        if kind != "bernoulli":
            options.setdefault("std_floor", self.std_floor)
            if self.logvar_clamp is not None:
                options.setdefault("logvar_clamp", self.logvar_clamp)
        return options

    def _check_conditional_options(self) -> None:
        """``conditional_options`` accepted by both conditionals (built once on a stand-in
        network, which is cheap and draws no random numbers), so a typo fails when the config is
        read, not when the model is built."""
        k = self.conditional_options.get("num_components", 1)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"model.conditional_options.num_components must be a positive "
                              f"integer, got {k!r}")
        for kind, dim in ((self.posterior, self.z_dim), (self.likelihood, self.x_dim)):
            try:
                CONDITIONALS.get(kind).for_vectors(nn.Identity(), dim, **self._options(kind))
            except TypeError as e:
                raise ConfigError(f"model.conditional_options: {e}") from None

    def _conditional(self, kind: str, in_dim: int, out_dim: int):
        cls = CONDITIONALS.get(kind)
        options = self._options(kind)
        net = MLP(in_dim, cls.num_outputs(out_dim, **options), hidden=self.hidden, depth=self.depth,
                  activation=self.activation)
        try:
            return cls.for_vectors(net, out_dim, **options)
        except TypeError as e:
            raise ConfigError(f"model.conditional_options: {e}") from None

    def build(self) -> LatentVariableModel:
        """Build the model (parameters initialised from the global torch RNG)."""

        def density(key: str, name: str, dim: int, options: dict[str, Any]):
            return build_prior(name, dim, options, x_shape=(self.x_dim,),
                               where=f"model.{key}_options")

        model = LatentVariableModel(
            encoder=self._conditional(self.posterior, self.x_dim, self.z_dim),
            decoder=self._conditional(self.likelihood, self.z_dim, self.x_dim),
            prior=density("prior", self.prior, self.z_dim, self.prior_options),
            data_prior=density("data_prior", self.data_prior, self.x_dim, self.data_prior_options),
            latent_anchor=(None if self.latent_anchor is None
                           else density("latent_anchor", self.latent_anchor, self.z_dim,
                                        self.latent_anchor_options)),
            x_shape=(self.x_dim,),
            z_shape=(self.z_dim,),
        )
        model.config = self
        return model
