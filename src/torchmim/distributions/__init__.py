"""Densities as modules: conditionals q(z|x), p(x|z) and priors p(z), q(x), P(z).

Every prior is a :class:`Prior` registered in :data:`PRIORS`; models build theirs with
:func:`build_prior`. ``AutoregressiveBernoulli`` (the PixelHVAE likelihood) is imported on first
use: it is built on :mod:`torchmim.layers`, which itself imports from this package.
"""

from .conditional import (
    CONDITIONALS,
    ConditionalBernoulli,
    ConditionalGaussian,
    ConditionalGaussianMixture,
    gaussian_from_mean_logvar,
)
from .flow import FlowPrior
from .hierarchical import HierarchicalDistribution, HierarchicalPrior
from .marginal import MarginalDataPrior, MarginalDistribution
from .mixture import ReparameterizedMixture
from .priors import (
    PRIORS,
    DiagonalGaussian,
    GaussianMixture,
    Prior,
    StandardNormal,
    build_prior,
    check_prior,
)
from .vampprior import VampPrior, VampPriorDistribution

__all__ = [
    "AutoregressiveBernoulli",
    "CONDITIONALS",
    "PRIORS",
    "ConditionalBernoulli",
    "ConditionalGaussian",
    "ConditionalGaussianMixture",
    "DiagonalGaussian",
    "FlowPrior",
    "GaussianMixture",
    "HierarchicalDistribution",
    "HierarchicalPrior",
    "MarginalDataPrior",
    "MarginalDistribution",
    "Prior",
    "ReparameterizedMixture",
    "StandardNormal",
    "VampPrior",
    "VampPriorDistribution",
    "build_prior",
    "check_prior",
    "gaussian_from_mean_logvar",
]


def __getattr__(name: str):
    if name == "AutoregressiveBernoulli":
        from .autoregressive import AutoregressiveBernoulli

        return AutoregressiveBernoulli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
