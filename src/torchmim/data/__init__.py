"""Data: the paper's toy mixtures, loading helpers and the data-set registry."""

from .base import DATASETS, DataConfig, DataSplits
from .loading import as_dataloader, as_tensor, batch_x, check_finite
from .toy import (
    CustomMixtureConfig,
    GaussianMixtureData,
    GMM2DConfig,
    GMM20DConfig,
    ResampledMixtureDataset,
    paper_2d_mixture,
    paper_20d_mixture,
)

__all__ = [
    "DATASETS",
    "CustomMixtureConfig",
    "DataConfig",
    "DataSplits",
    "GMM2DConfig",
    "GMM20DConfig",
    "GaussianMixtureData",
    "ResampledMixtureDataset",
    "as_dataloader",
    "as_tensor",
    "batch_x",
    "check_finite",
    "paper_20d_mixture",
    "paper_2d_mixture",
]
