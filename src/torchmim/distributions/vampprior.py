"""The VampPrior (Tomczak & Welling, 2018): a mixture of variational posteriors at pseudo-inputs.

    p(z) = (1/K) Σ_k q(z | u_k),      u_k = clamp(ũ_k, 0, 1) ∈ [0, 1]^{C×H×W},

with K learnable pseudo-inputs ũ_k (paper, Section 5.1; spec, "Priors on z2"). For the two-level
image models the VampPrior is the prior on the top level z2 and reuses the encoder's q(z2|x)
network; for a one-level model it reuses the encoder q(z|x) itself.

In configs it is ``prior: vampprior`` with ``prior_options`` ``num_pseudo_inputs`` (K, default 500,
the paper's), ``noise`` (default 0.01, the reference's), ``bounds`` (default [0, 1]),
``init_binarize`` and ``reflect_noise`` (both default false, the reference); the pseudo-inputs take
the model's observation shape (:meth:`VampPrior.from_config`).

Parameterisation. The reference stores the pseudo-inputs as the weight of a linear map applied to
one-hot vectors, followed by a hard-tanh to [0, 1]; that is exactly a (K, C, H, W) parameter ũ read
through ``clamp(ũ, 0, 1)``, which is what :class:`VampPrior` stores (``pseudo_inputs``). An entry
outside [0, 1] gets no gradient (as in the reference).

Initialisation (:meth:`VampPrior.initialize_from_data`), by default the reference's
(``--use_training_data_init``): the first K training images (cycled if fewer) as **grey levels**
plus N(0, ``noise``²) noise, added as is. The trainer hands grey levels for the binarised image
data sets (``BinarizedImages.initialization_data``), as the reference initialises from its
grey-level ``x_train`` before the dynamic binarisation. The noise is unreflected there, so a pixel
at 0 or 1 (most of an MNIST background) starts outside [0, 1] about half the time, is read as 0 or
1 through the clamp and never receives a gradient. Two options change this:
``init_binarize`` draws Bernoulli(grey level) first (pseudo-inputs start as binary images, the
behaviour of torchmim before issue 12), and ``reflect_noise`` reflects the noisy values back into
the bounds, so every pixel starts inside, at the same distance from the data, and gets a gradient.
Before any data is seen the pseudo-inputs are N(0.05, 0.01²) (the reference's default without data
initialisation). The trainer calls ``model.initialize_from_data`` with the first training
examples in a fresh fit; call it yourself when you train a model another way.

Sharing. The prior is defined through the model's encoder: :meth:`VampPrior.bind` keeps the model in
a plain list (not a submodule), so the encoder's weights appear once in ``state_dict`` (under
``encoder.``) and once in ``parameters()``; the VampPrior's own state is only its pseudo-inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent, Normal

from ..errors import ConfigError, DataError
from .mixture import ReparameterizedMixture
from .priors import PRIORS, Prior

if TYPE_CHECKING:  # pragma: no cover
    from ..models.latent_variable_model import LatentVariableModel

__all__ = ["VampPrior", "VampPriorDistribution", "gaussian_mixture_log_prob"]

#: Elements of a (rows, K, D) block evaluated at once by the chunked mixture log-density.
_CHUNK_ELEMENTS = 1 << 22


def gaussian_mixture_log_prob(value: Tensor, loc: Tensor, scale: Tensor, *,
                              log_weights: Tensor | None = None,
                              chunk_elements: int = _CHUNK_ELEMENTS) -> Tensor:
    """log Σ_k π_k N(value; loc_k, diag scale_k²) for value (..., D), loc / scale (K, D).

    Exact differences (no expansion of the square, so float32 keeps its precision), a logsumexp
    over k, and the rows of ``value`` processed in blocks of at most ``chunk_elements`` (rows·K·D)
    so that memory stays bounded for the many samples of an importance-sampled NLL. ``log_weights``
    defaults to uniform (−log K).
    """
    k, d = loc.shape
    if value.shape[-1] != d:
        raise DataError(f"the mixture is over vectors of size {d}, got values of shape "
                        f"{tuple(value.shape)}")
    flat = value.reshape(-1, d)
    log_norm = scale.log().sum(-1) + 0.5 * d * math.log(2 * math.pi)  # (K,)
    log_w = (torch.full((k,), -math.log(k), dtype=loc.dtype, device=loc.device)
             if log_weights is None else log_weights)
    rows = max(1, chunk_elements // max(k * d, 1))
    out = []
    for start in range(0, flat.shape[0], rows):
        v = flat[start:start + rows].unsqueeze(-2)  # (n, 1, D)
        sq = ((v - loc) / scale).square().sum(-1)  # (n, K)
        out.append(torch.logsumexp(log_w - log_norm - 0.5 * sq, dim=-1))
    result = torch.cat(out) if out else flat.new_zeros(0)
    return result.reshape(value.shape[:-1])


class VampPriorDistribution(ReparameterizedMixture):
    """(1/K) Σ_k N(loc_k, diag scale_k²) with fixed uniform weights: an exact ``rsample``.

    ``rsample`` draws the component index without gradient and reparameterises within the component
    (``loc_k + scale_k ε``), gathering only the chosen component's parameters (O(n·D), not
    O(n·K·D)).
    ``log_prob`` is :func:`gaussian_mixture_log_prob` (chunked, exact). Mean and variance are the
    mixture's (from ``MixtureSameFamily``).
    """

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        if loc.dim() != 2 or loc.shape != scale.shape:
            raise DataError(f"VampPriorDistribution needs loc and scale of shape (K, D), got "
                            f"{tuple(loc.shape)} and {tuple(scale.shape)}")
        k = loc.shape[0]
        mixing = Categorical(logits=torch.zeros(k, dtype=loc.dtype, device=loc.device),
                             validate_args=False)
        components = Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)
        super().__init__(mixing, components)
        self.loc_k, self.scale_k = loc, scale

    def log_prob(self, value: Tensor) -> Tensor:
        return gaussian_mixture_log_prob(value, self.loc_k, self.scale_k)

    def _rsample_given_component(self, sample_shape: torch.Size) -> Tensor:
        with torch.no_grad():
            index = self.mixture_distribution.sample(sample_shape)  # sample_shape, values in [0, K)
        eps = torch.randn(index.shape + self.loc_k.shape[-1:], dtype=self.loc_k.dtype,
                          device=self.loc_k.device)
        return self.loc_k[index] + self.scale_k[index] * eps

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        with torch.no_grad():
            return self._rsample_given_component(torch.Size(sample_shape))


def _normal_params(dist: Distribution) -> tuple[Tensor, Tensor]:
    """(loc, scale) of a diagonal Gaussian given as ``Normal`` or ``Independent(Normal)``."""
    base = dist
    while isinstance(base, Independent):
        base = base.base_dist
    if not isinstance(base, Normal):
        raise ConfigError(f"a VampPrior needs a Gaussian posterior at the pseudo-inputs, got "
                          f"{type(dist).__name__}")
    return base.loc, base.scale


@PRIORS.register("vampprior")
class VampPrior(Prior):
    """p(z) = (1/K) Σ_k q(z | u_k) with learnable pseudo-inputs (see the module docs).

    The posterior evaluated at the pseudo-inputs is ``model.encoder.top_posterior(u)`` if the
    encoder defines it (the two-level encoders: q(z2|x)), else ``model.encoder(u)`` (one level).

    Args:
        x_shape: the shape of one pseudo-input (an observation), e.g. (1, 28, 28).
        num_pseudo_inputs: K (500 in the paper).
        noise: standard deviation of the noise added to the data initialisation (0.01, as the
            reference).
        bounds: the range the pseudo-inputs are clamped to ((0, 1) for images); ``None``: no clamp.
        init_binarize: initialise from Bernoulli(x) of the data given (binary pseudo-inputs)
            instead of x itself (the reference: grey levels, False).
        reflect_noise: reflect the initial noise back into ``bounds`` (False: added as is, the
            reference).

    Built by :meth:`from_config` (from a model config), it also knows the latent shape it is over
    and checks that the encoder's posterior at the pseudo-inputs has it.
    """

    needs_model = True

    def __init__(self, x_shape: int | Sequence[int], num_pseudo_inputs: int = 500, *,
                 noise: float = 0.01, bounds: Sequence[float] | None = (0.0, 1.0),
                 init_binarize: bool = False, reflect_noise: bool = False) -> None:
        super().__init__()
        x_shape = (x_shape,) if isinstance(x_shape, int) else tuple(x_shape)
        if isinstance(num_pseudo_inputs, bool) or not isinstance(num_pseudo_inputs, int) \
                or num_pseudo_inputs < 1:
            raise ConfigError(f"num_pseudo_inputs must be an integer >= 1, got "
                              f"{num_pseudo_inputs!r}")
        if not isinstance(noise, (int, float)) or not 0 <= noise < float("inf"):
            raise ConfigError(f"the pseudo-input noise must be a number >= 0, got {noise!r}")
        if bounds is not None and (len(bounds) != 2 or not bounds[0] < bounds[1]):
            raise ConfigError(f"bounds must be [low, high] with low < high, got {bounds!r}")
        for name, flag in (("init_binarize", init_binarize), ("reflect_noise", reflect_noise)):
            if not isinstance(flag, bool):
                raise ConfigError(f"{name} must be true or false, got {flag!r}")
        self.x_shape = x_shape
        self.noise = float(noise)
        self.init_binarize = init_binarize
        self.reflect_noise = reflect_noise
        self.bounds = (float(bounds[0]), float(bounds[1])) if bounds is not None else None
        self.latent_shape: tuple[int, ...] | None = None  # set by from_config
        init = 0.05 + 0.01 * torch.randn(num_pseudo_inputs, *x_shape)
        self.pseudo_inputs = torch.nn.Parameter(init)
        self._owner: list[LatentVariableModel] = []  # a plain list: the encoder is not a submodule

    @classmethod
    def from_config(cls, shape: int | Sequence[int], *, x_shape: Sequence[int] | None = None,
                    **options: Any) -> VampPrior:
        """The pseudo-inputs take the observation shape ``x_shape``; ``shape`` (the latent, or the
        top level of a two-level model) is what the encoder's posterior at them must have."""
        if x_shape is None:
            raise ConfigError("a VampPrior needs the model's observation shape (x_shape) for its "
                              "pseudo-inputs")
        prior = cls(x_shape, **options)
        prior.latent_shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return prior

    @property
    def num_pseudo_inputs(self) -> int:
        return self.pseudo_inputs.shape[0]

    def bind(self, model: LatentVariableModel) -> None:
        if tuple(model.x_shape) != self.x_shape:
            raise ConfigError(f"the VampPrior's pseudo-inputs have shape {self.x_shape} but the "
                              f"model's observations have shape {tuple(model.x_shape)}")
        self._owner[:] = [model]

    @property
    def model(self) -> LatentVariableModel:
        if not self._owner:
            raise RuntimeError("a VampPrior is defined through a model's encoder; add it to a "
                               "LatentVariableModel (or a HierarchicalPrior inside one) first")
        return self._owner[0]

    def inputs(self) -> Tensor:
        """The pseudo-inputs u_k = clamp(ũ_k, *bounds), shape (K, *x_shape)."""
        return self.pseudo_inputs if self.bounds is None else self.pseudo_inputs.clamp(*self.bounds)

    def posterior_at_inputs(self) -> Distribution:
        """q(z | u_k) for all k (batch shape (K,))."""
        encoder = self.model.encoder
        posterior = getattr(encoder, "top_posterior", encoder)
        return posterior(self.inputs())

    def forward(self) -> VampPriorDistribution:
        loc, scale = _normal_params(self.posterior_at_inputs())
        if self.latent_shape is not None and tuple(loc.shape[1:]) != self.latent_shape:
            raise ConfigError(f"the VampPrior is over {self.latent_shape}, but the encoder's "
                              f"posterior at its pseudo-inputs is over {tuple(loc.shape[1:])}")
        return VampPriorDistribution(loc, scale)

    @torch.no_grad()
    def initialize_from_data(self, x: Tensor) -> None:
        """Pseudo-inputs ← the first K images of ``x`` (cycled if fewer; Bernoulli draws of them
        with ``init_binarize``) + N(0, noise²) noise (reflected into ``bounds`` with
        ``reflect_noise``)."""
        if not isinstance(x, Tensor) or x.shape[0] == 0:
            raise DataError("initialize_from_data needs a non-empty tensor of observations")
        n = x.shape[0]
        if tuple(x.shape[1:]) != self.x_shape:
            if x[0].numel() != math.prod(self.x_shape):
                raise DataError(f"cannot initialise pseudo-inputs of shape {self.x_shape} from "
                                f"data of shape {tuple(x.shape)}")
            x = x.reshape(n, *self.x_shape)
        k = self.num_pseudo_inputs
        index = torch.arange(k, device=x.device) % n
        u = x[index].to(self.pseudo_inputs)
        if self.init_binarize:
            if ((u < 0) | (u > 1)).any():
                raise DataError("init_binarize needs data in [0, 1] (pixel probabilities)")
            u = torch.bernoulli(u)
        u = u + self.noise * torch.randn_like(u)
        if self.reflect_noise and self.bounds is not None:
            lo, hi = self.bounds
            u = hi - (hi - (lo + (u - lo).abs())).abs()  # reflect at lo, then at hi
        self.pseudo_inputs.copy_(u)
