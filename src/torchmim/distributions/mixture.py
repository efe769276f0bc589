"""A Gaussian-mixture distribution with an honest reparameterised sample.

``torch.distributions.MixtureSameFamily`` has no ``rsample``. Symmetric MIM needs pathwise gradients
through samples of mixtures (z ~ p(z) for a VampPrior, x ~ p(x|z) for the 1D mixtures of Appendix
D.2), so this subclass adds one, in the two cases where it is exact:

* **fixed mixing weights** (e.g. the uniform weights of a VampPrior): draw the component index without
  gradient and reparameterise the draw within that component; the gradient reaches every component
  parameter and there is no gradient to miss;
* **univariate components** (event size 1): implicit reparameterisation (Figurnov et al., 2018). With
  F the mixture CDF and x = F⁻¹(u), ∂x/∂θ = −(∂F(x; θ)/∂θ) / p(x; θ), which reaches the mixing weights too.

Otherwise (multivariate components *and* learnable weights) ``has_rsample`` is ``False`` and
``rsample`` raises, instead of silently dropping the gradient of the weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from ..errors import DataError

__all__ = ["ReparameterizedMixture"]


def _base_normal(component: Distribution) -> Normal | None:
    """The underlying ``Normal`` of a (possibly ``Independent``-wrapped) Normal component."""
    while isinstance(component, Independent):
        component = component.base_dist
    return component if isinstance(component, Normal) else None


def _sample_shape(sample_shape: Any) -> torch.Size:
    """``sample_shape`` as a ``torch.Size`` of non-negative integers, or a one-line DataError."""
    dims = [sample_shape] if isinstance(sample_shape, int) else sample_shape
    try:
        dims = list(dims)
    except TypeError:
        dims = None
    if dims is None or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                               for d in dims):
        raise DataError(f"sample_shape must be a tuple of non-negative integers, got "
                        f"{sample_shape!r}")
    return torch.Size(dims)


class ReparameterizedMixture(MixtureSameFamily):
    """``MixtureSameFamily`` with ``rsample`` where a pathwise gradient is exact (see module docs)."""

    def __init__(
        self,
        mixture_distribution: Categorical,
        component_distribution: Distribution,
        validate_args: bool | None = False,
    ) -> None:
        super().__init__(mixture_distribution, component_distribution, validate_args=validate_args)

    @property
    def _weights_fixed(self) -> bool:
        return not self.mixture_distribution.logits.requires_grad

    @property
    def _univariate_normal(self) -> bool:
        return _base_normal(self.component_distribution) is not None and self.event_shape.numel() == 1

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.component_distribution.has_rsample and (
            self._weights_fixed or self._univariate_normal
        )

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        """As ``MixtureSameFamily.sample``, with a one-line :class:`~torchmim.errors.DataError`
        for a negative or non-integer ``sample_shape``; a shape with a 0 gives an empty tensor."""
        sample_shape = _sample_shape(sample_shape)
        if sample_shape.numel() == 0:
            return self._empty(sample_shape)
        return super().sample(sample_shape)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        sample_shape = _sample_shape(sample_shape)
        if sample_shape.numel() == 0 and self.has_rsample:
            return self._empty(sample_shape)
        if self._weights_fixed:
            return self._rsample_given_component(sample_shape)
        if self._univariate_normal:
            return self._rsample_implicit(sample_shape)
        raise NotImplementedError(
            "rsample of a multivariate mixture with learnable mixing weights has no exact pathwise "
            "gradient; use sample() (no gradient) or fix the weights"
        )

    def _empty(self, sample_shape: torch.Size) -> Tensor:
        logits = self.mixture_distribution.logits
        return logits.new_empty(self._extended_shape(sample_shape))

    def _rsample_given_component(self, sample_shape: torch.Size) -> Tensor:
        with torch.no_grad():
            index = self.mixture_distribution.sample(sample_shape)  # sample + batch
        components = self.component_distribution.rsample(sample_shape)  # sample + batch + (K,) + event
        event_ndims = len(self.event_shape)
        index = index.reshape(index.shape + (1,) * (event_ndims + 1))
        index = index.expand(index.shape[:-event_ndims - 1] + (1,) + self.event_shape)
        return components.gather(len(sample_shape) + len(self.batch_shape), index).squeeze(
            len(sample_shape) + len(self.batch_shape)
        )

    def _rsample_implicit(self, sample_shape: torch.Size) -> Tensor:
        with torch.no_grad():
            x = self.sample(sample_shape)
        normal = _base_normal(self.component_distribution)
        assert normal is not None
        # CDF of the mixture at the (detached) sample, differentiable in all parameters.
        xk = x.reshape(x.shape[: x.dim() - len(self.event_shape)] + (1,))  # sample + batch + (1,)
        loc = normal.loc.reshape(normal.loc.shape[: len(self.batch_shape) + 1])
        scale = normal.scale.reshape(normal.scale.shape[: len(self.batch_shape) + 1])
        cdf_k = 0.5 * (1 + torch.erf((xk - loc) / (scale * 2**0.5)))
        weights = torch.softmax(self.mixture_distribution.logits, dim=-1)
        cdf = (weights * cdf_k).sum(-1)
        density = self.log_prob(x).exp().clamp_min(torch.finfo(x.dtype).tiny)
        shift = -(cdf - cdf.detach()) / density.detach()
        return x + shift.reshape(shift.shape + (1,) * len(self.event_shape))
