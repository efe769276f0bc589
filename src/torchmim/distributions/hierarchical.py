"""Two-level latent distributions over the flat latent z = [z1, z2] (spec, "Latents").

The hierarchical image models (convHVAE and PixelHVAE with L = 2, paper Section 6.3) have two
latent levels; the rest of the library sees one flat vector, **z1 first, then z2**:
z = [z1, z2] ∈ R^{d1+d2}.

* encoder   q(z|x) = q(z2|x) · q(z1|x, z2)
* prior     p(z)   = p(z2)   · p(z1|z2)      (p(z2) any prior from the registry, p(z1|z2) a network)

:class:`HierarchicalDistribution` represents either: a *top* distribution over z2 and a
*conditional* map z2 ↦ distribution over z1 (for the encoder, a closure over the already computed
features of x). :class:`HierarchicalPrior` is the :class:`~torchmim.distributions.Prior` module
p(z) = p(z2) p(z1|z2).

β warm-up of the top level (the image reference's MIM code). During warm-up the MIM loss of the
two-level models uses

    log p_β(z) = log p(z1 | z2) + β · log p(z2)

in place of log p(z), in both paths and inside the encoder-path estimate of log q(x) (Algorithm 2,
line 5): the reference's ``log_p_z = log_p_z1 + beta * log_p_z2``. With the marginal q(x) of
Eq. (16), Eq. (18)'s own β cancels from the encoder path (it only rescales the loss by (1 + β)/2),
so this is what β actually changes for MIM there. :meth:`HierarchicalDistribution.warmed_up` gives
the distribution the loss sees at weight β (its ``log_prob`` is not normalised for β < 1; sampling
is unchanged); :class:`HierarchicalPrior` ``top_warmup`` turns it on. The VAE is untouched: its β
weighs the whole KL term (Eq. 18), as in the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from ..errors import DataError
from .priors import Prior

if TYPE_CHECKING:  # pragma: no cover
    from ..models.latent_variable_model import LatentVariableModel

__all__ = ["HierarchicalDistribution", "HierarchicalPrior"]


class HierarchicalDistribution(Distribution):
    """p(z) = p_top(z2) · p(z1 | z2) over the flat z = [z1, z2] (z1 first).

    Args:
        top: distribution over z2 (event shape (d2,)); its batch shape is this distribution's.
        conditional: ``conditional(z2) -> Distribution`` over z1 (event shape (d1,)), with batch
            shape ``z2.shape[:-1]`` (broadcast against ``top``'s batch shape): any extra leading
            sample dimensions of z2 must pass through.
        z1_dim: d1.
        top_weight: the weight β of log p_top(z2) in ``log_prob`` (1: the density itself; see the
            module docs, "β warm-up of the top level").
        top_warmup: whether :meth:`warmed_up` applies a warm-up weight (else it returns ``self``).

    Semantics:

    * ``rsample`` / ``sample``: ancestral, z2 ∼ top, then z1 ∼ p(z1|z2); ``rsample`` is
      reparameterised end to end (pathwise gradients into both levels).
    * ``log_prob(z) = top_weight · top.log_prob(z2) + conditional(z2).log_prob(z1)``, for z of
      shape (..., d1 + d2) with any leading sample dimensions.
    * ``mean``: the plug-in mean [E[z1 | z2 = E z2], E z2] — exact for z2, and the conditional mean
      of z1 at the mean of z2 (E[z1] itself has no closed form when the conditional mean is
      nonlinear in z2). ``variance``: [Var(z1 | z2 = E z2), Var z2], the plug-in counterpart (it
      leaves out the Var_{z2}(E[z1|z2]) term of the law of total variance, and so does not bound
      Var z1 in general). The encoder's ``mean`` is what ``model.encode(x)`` returns.

    The common objective pattern ``z = q.rsample(); q.log_prob(z)`` reuses the z1 conditional built
    during ``rsample`` (cached on this object, keyed on the identity and version of the returned
    tensor) instead of running the z1 network a second time; the result is identical.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.real_vector

    def __init__(self, top: Distribution, conditional: Callable[[Tensor], Distribution],
                 z1_dim: int, *, top_weight: float = 1.0, top_warmup: bool = False) -> None:
        if len(top.event_shape) != 1:
            raise DataError(f"the top level must be a distribution over vectors, got event shape "
                            f"{tuple(top.event_shape)}")
        self.top = top
        self.conditional = conditional
        self.z1_dim = int(z1_dim)
        self.z2_dim = int(top.event_shape[0])
        self.top_weight = float(top_weight)
        self.top_warmup = bool(top_warmup)
        self._cache: tuple[Tensor, int, Distribution] | None = None
        super().__init__(top.batch_shape, torch.Size([self.z1_dim + self.z2_dim]),
                         validate_args=False)

    # ------------------------------------------------------------------ helpers
    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return bool(self.top.has_rsample)

    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(z1, z2) of a flat z (..., d1 + d2)."""
        if not isinstance(z, Tensor) or z.dim() < 1 or z.shape[-1] != self.z1_dim + self.z2_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise DataError(f"z has shape {shape}, but the two-level latent z = [z1, z2] has "
                            f"{self.z1_dim} + {self.z2_dim} = {self.z1_dim + self.z2_dim} entries "
                            "in its last dimension")
        return z[..., : self.z1_dim], z[..., self.z1_dim:]

    @staticmethod
    def join(z1: Tensor, z2: Tensor) -> Tensor:
        """The flat z = [z1, z2]."""
        return torch.cat([z1, z2], dim=-1)

    def warmed_up(self, beta: float) -> HierarchicalDistribution:
        """The prior as the MIM loss sees it at warm-up weight β: log p(z1|z2) + β · log p(z2)
        when ``top_warmup`` is on and β ≠ 1, else ``self``. Same top, same conditional, same
        samples; only ``log_prob`` changes (not normalised for β < 1)."""
        if not self.top_warmup or beta == 1.0:
            return self
        return HierarchicalDistribution(self.top, self.conditional, self.z1_dim,
                                        top_weight=beta * self.top_weight, top_warmup=True)

    def _conditional_at(self, z: Tensor, z2: Tensor) -> Distribution:
        cache = self._cache
        if cache is not None and cache[0] is z and cache[1] == z._version:
            return cache[2]
        return self.conditional(z2)

    # ------------------------------------------------------------------ sampling
    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        z2 = self.top.rsample(torch.Size(sample_shape))
        p1 = self.conditional(z2)
        z = self.join(p1.rsample(), z2)
        self._cache = (z, z._version, p1)
        return z

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        with torch.no_grad():
            z2 = self.top.sample(torch.Size(sample_shape))
            return self.join(self.conditional(z2).sample(), z2)

    # ------------------------------------------------------------------ densities
    def log_prob_levels(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """(log p_top(z2), log p(z1|z2)) at ``value`` = [z1, z2]."""
        z1, z2 = self.split(value)
        return self.top.log_prob(z2), self._conditional_at(value, z2).log_prob(z1)

    def log_prob(self, value: Tensor) -> Tensor:
        """log p(z) = log p_top(z2) + log p(z1 | z2) (with ``top_weight`` on the first term)."""
        log_top, log_cond = self.log_prob_levels(value)
        if self.top_weight != 1.0:
            log_top = self.top_weight * log_top
        return log_top + log_cond

    def sampling_log_prob(self, value: Tensor) -> Tensor:
        """log p(z) of the distribution the samples come from (``top_weight`` ignored): the
        REINFORCE score of a non-reparameterised sample (``objectives.base.decoder_path``)."""
        log_top, log_cond = self.log_prob_levels(value)
        return log_top + log_cond

    @property
    def mean(self) -> Tensor:
        z2 = self.top.mean
        return self.join(self.conditional(z2).mean, z2)

    @property
    def variance(self) -> Tensor:
        z2 = self.top.mean
        return self.join(self.conditional(z2).variance, self.top.variance)


class HierarchicalPrior(Prior):
    """p(z) = p(z2) · p(z1 | z2) over z = [z1, z2] (spec: "The joint prior is p(z1|z2) p(z2)").

    Args:
        top: the prior module over z2 — any :class:`~torchmim.distributions.Prior` over vectors of
            size d2 (the image configs build it from ``PRIORS``: ``normal``, ``vampprior``, ``gmm``,
            ...); it is bound to the model too.
        conditional: module ``z2 -> Distribution`` over z1 (the p(z1|z2) network, part of the
            model).
        z1_dim: d1.
        top_warmup: MIM's β warm-up also weighs log p(z2) by β (the image reference; see the
            module docs); off, β acts only through Eq. (18).

    ``rsample`` is exact and pathwise whenever the top has one (a standard normal, or a VampPrior's
    fixed-weight mixture), so symmetric MIM's z ∼ p(z) sends gradients into the top prior (for a
    VampPrior: the pseudo-inputs and the encoder's q(z2|x) network) and the p(z1|z2) network.
    ``initialize_from_data`` is not forwarded to the top: the model calls it on every submodule,
    the top included.
    """

    def __init__(self, top: Prior, conditional: nn.Module, z1_dim: int, *,
                 top_warmup: bool = False) -> None:
        super().__init__()
        self.top = top
        self.conditional = conditional
        self.z1_dim = int(z1_dim)
        self.top_warmup = bool(top_warmup)
        self.needs_model = top.needs_model  # defined through the model iff its top is

    def bind(self, model: LatentVariableModel) -> None:
        self.top.bind(model)

    def forward(self) -> HierarchicalDistribution:
        return HierarchicalDistribution(self.top(), self.conditional, self.z1_dim,
                                        top_warmup=self.top_warmup)
