"""Unconditional densities: the latent prior p(z), the data prior q(x) and the anchors P(z).

Each is an ``nn.Module`` whose ``forward()`` returns a ``torch.distributions.Distribution``, so priors
are interchangeable wherever a density over z or x is needed. A prior used as the data prior q(x)
also answers :meth:`Prior.anchored_log_prob`, the log q(x) that the MIM loss needs at a sample of the
anchored encoding or decoding distribution; a parametric density just evaluates ``log_prob``, while the
marginal of Eq. (16) (:class:`~torchmim.distributions.marginal.MarginalDataPrior`) estimates it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from ..registry import Registry
from .conditional import gaussian_from_mean_logvar
from .mixture import ReparameterizedMixture

if TYPE_CHECKING:  # pragma: no cover
    from ..model import LatentVariableModel

__all__ = ["PRIORS", "DiagonalGaussian", "GaussianMixture", "Path", "Prior", "StandardNormal"]

Path = Literal["encoder", "decoder"]

#: Registry of priors by name (used by model configs: ``prior: gmm``).
PRIORS: Registry[type[Prior]] = Registry("prior")


def _shape(shape: int | Sequence[int]) -> torch.Size:
    return torch.Size([shape] if isinstance(shape, int) else shape)


class Prior(nn.Module):
    """Base class of unconditional densities; ``forward()`` returns the distribution."""

    #: Whether this density is defined through the model (e.g. the marginal of Eq. 16).
    needs_model: bool = False

    def forward(self) -> Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def bind(self, model: LatentVariableModel) -> None:
        """Called by the model that owns this prior; densities defined through the model keep it."""

    def anchored_log_prob(
        self, x: Tensor, *, path: Path, log_px_z: Tensor, log_pz: Tensor, log_qz_x: Tensor
    ) -> Tensor:
        """log q(x) at a sample of the anchored encoding (``path="encoder"``) or decoding path.

        A parametric density ignores the path and the other terms and returns ``log_prob(x)``.
        """
        return self().log_prob(x)


@PRIORS.register("normal")
class StandardNormal(Prior):
    """N(0, I) over ``shape`` (the paper's P(z) and the "standard" prior of the image models)."""

    def __init__(self, shape: int | Sequence[int]) -> None:
        super().__init__()
        shape = _shape(shape)
        self.register_buffer("loc", torch.zeros(shape))
        self.register_buffer("scale", torch.ones(shape))

    def forward(self) -> Independent:
        return Independent(Normal(self.loc, self.scale, validate_args=False), self.loc.dim(),
                           validate_args=False)


@PRIORS.register("gaussian")
class DiagonalGaussian(Prior):
    """N(μ, diag σ²) with learnable (or fixed) μ and log σ² — the learned Gaussian prior of App. D.3."""

    def __init__(
        self,
        shape: int | Sequence[int],
        *,
        loc: float | Tensor = 0.0,
        logvar: float | Tensor = 0.0,
        learnable: bool = True,
        std_floor: float = 1e-6,
    ) -> None:
        super().__init__()
        shape = _shape(shape)
        loc_t = torch.as_tensor(loc, dtype=torch.get_default_dtype()).expand(shape).clone()
        logvar_t = torch.as_tensor(logvar, dtype=torch.get_default_dtype()).expand(shape).clone()
        if learnable:
            self.loc = nn.Parameter(loc_t)
            self.logvar = nn.Parameter(logvar_t)
        else:
            self.register_buffer("loc", loc_t)
            self.register_buffer("logvar", logvar_t)
        self.std_floor = float(std_floor)

    def forward(self) -> Independent:
        return gaussian_from_mean_logvar(self.loc, self.logvar, std_floor=self.std_floor,
                                         event_ndims=self.loc.dim())


@PRIORS.register("gmm")
class GaussianMixture(Prior):
    """Σ_k π_k N(μ_k, diag σ_k²): a K-component diagonal Gaussian mixture over vectors of size ``dim``.

    Used as a learnable p(z) or q(x) (Section 5.1, Appendix D), or — with ``learnable=False`` and
    explicit parameters — as a fixed anchor. Sampling is reparameterised where that is exact (see
    :class:`~torchmim.distributions.mixture.ReparameterizedMixture`).

    Args:
        dim: event size.
        num_components: K.
        means, stds, weights: optional initial values, shapes (K, dim), (K, dim) or scalar, (K,).
            Without ``means`` they are drawn from N(0, ``init_spread``²) with the global torch RNG.
        learnable: parameters (True) or buffers (False).
        learn_weights: whether the mixing weights are learned (only with ``learnable``).
    """

    def __init__(
        self,
        dim: int | Sequence[int],
        num_components: int = 10,
        *,
        means: Tensor | Sequence | None = None,
        stds: Tensor | Sequence | float | None = None,
        weights: Tensor | Sequence | None = None,
        learnable: bool = True,
        learn_weights: bool = True,
        init_spread: float = 1.0,
        std_floor: float = 1e-6,
    ) -> None:
        super().__init__()
        if len(_shape(dim)) != 1:
            raise ValueError(f"GaussianMixture is over vectors; got event shape {tuple(_shape(dim))}")
        dim, k = _shape(dim)[0], num_components
        dtype = torch.get_default_dtype()
        mu = (torch.as_tensor(means, dtype=dtype) if means is not None
              else init_spread * torch.randn(k, dim))
        if mu.shape != (k, dim):
            raise ValueError(f"means must have shape ({k}, {dim}), got {tuple(mu.shape)}")
        sd = torch.as_tensor(1.0 if stds is None else stds, dtype=dtype).expand(k, dim).clone()
        w = torch.full((k,), 1.0 / k) if weights is None else torch.as_tensor(weights, dtype=dtype)
        if w.shape != (k,) or (w < 0).any():
            raise ValueError(f"weights must be {k} non-negative numbers, got {w.tolist()}")
        logits = torch.log(w / w.sum())
        logvar = 2 * torch.log(sd)
        register = (lambda n, t: setattr(self, n, nn.Parameter(t))) if learnable else self.register_buffer
        register("loc", mu)
        register("logvar", logvar)
        if learnable and learn_weights:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)
        self.std_floor = float(std_floor)

    @property
    def num_components(self) -> int:
        return self.logits.shape[0]

    def forward(self) -> ReparameterizedMixture:
        components = gaussian_from_mean_logvar(self.loc, self.logvar, std_floor=self.std_floor)
        return ReparameterizedMixture(Categorical(logits=self.logits, validate_args=False), components)
