"""The fully connected model of the paper's low-dimensional experiments (Section 6.2, Appendix D).

Encoder and decoder are each "two fully connected layers" (one hidden layer of width ``hidden``,
tanh) regressing the parameters of a Gaussian; p(z) = N(0, I) and q(x) is the marginal of Eq. (16),
so MIM and VAE train the very same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
        if self.x_dim < 1 or self.z_dim < 1:
            raise ConfigError(f"x_dim and z_dim must be positive, got {self.x_dim}, {self.z_dim}")
        if self.hidden < 1 or self.depth < 0:
            raise ConfigError(f"hidden must be >= 1 and depth >= 0, got {self.hidden}, {self.depth}")
        ACTIVATIONS.get(self.activation)
        for name in (self.posterior, self.likelihood):
            CONDITIONALS.get(name)
        x_shape = (self.x_dim,)
        self.prior = check_prior(self.prior, self.prior_options, where="model.prior",
                                 shape=self.z_dim, x_shape=x_shape)
        self.data_prior = check_prior(self.data_prior, self.data_prior_options,
                                      where="model.data_prior", shape=self.x_dim, x_shape=x_shape)
        if self.latent_anchor is not None:
            self.latent_anchor = check_prior(self.latent_anchor, self.latent_anchor_options,
                                             where="model.latent_anchor", shape=self.z_dim,
                                             x_shape=x_shape)

    def _conditional(self, kind: str, in_dim: int, out_dim: int):
        cls = CONDITIONALS.get(kind)
        options = dict(self.conditional_options)
        if kind != "bernoulli":
            options.setdefault("std_floor", self.std_floor)
            if self.logvar_clamp is not None:
                options.setdefault("logvar_clamp", self.logvar_clamp)
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
