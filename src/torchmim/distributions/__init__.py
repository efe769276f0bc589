"""Densities as modules: conditionals q(z|x), p(x|z) and priors p(z), q(x), P(z)."""

from .conditional import (
    CONDITIONALS,
    ConditionalBernoulli,
    ConditionalGaussian,
    ConditionalGaussianMixture,
    gaussian_from_mean_logvar,
)
from .hierarchical import HierarchicalDistribution, HierarchicalPrior
from .marginal import MarginalDataPrior, MarginalDistribution
from .mixture import ReparameterizedMixture
from .priors import PRIORS, DiagonalGaussian, GaussianMixture, Prior, StandardNormal
from .vampprior import VampPrior, VampPriorDistribution

__all__ = [
    "CONDITIONALS",
    "PRIORS",
    "ConditionalBernoulli",
    "ConditionalGaussian",
    "ConditionalGaussianMixture",
    "DiagonalGaussian",
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
    "gaussian_from_mean_logvar",
]
