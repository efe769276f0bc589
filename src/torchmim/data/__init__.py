"""Data: the paper's toy mixtures, loading helpers and the data-set registry."""

from .base import DATASETS, DataConfig, DataSplits
from .download import REMOTE_FILES, RemoteFile, cache_dir, download_url, fetch, md5sum
from .files import ArrayDataConfig, FileDataConfig, from_arrays, read_table
from .idx import read_idx, write_idx
from .images import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    BinarizedImages,
    FashionMNISTConfig,
    MNISTConfig,
    bernoulli_uniforms,
    binarize_images,
    read_idx_images,
)
from .loading import as_dataloader, as_tensor, batch_x, check_finite
from .omniglot import OmniglotConfig, OmniglotImages, read_chardata, read_omniglot_pngs
from .pca import FashionMNISTPCAConfig, pca_projection
from .toy import (
    CustomMixtureConfig,
    GaussianMixtureData,
    GMM2DConfig,
    GMM20DConfig,
    ResampledMixtureDataset,
    paper_2d_mixture,
    paper_20d_mixture,
)
from .transform import DataTransform

__all__ = [
    # your own data (files, arrays, DataFrames) and its stored transform
    "ArrayDataConfig",
    "DataTransform",
    "FileDataConfig",
    "from_arrays",
    "read_table",
    "FashionMNISTPCAConfig",
    "pca_projection",
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
    # image data (MNIST, Fashion-MNIST, Omniglot)
    "BinarizedImages",
    "FASHION_MNIST_CLASSES",
    "FashionMNISTConfig",
    "MNISTConfig",
    "MNIST_CLASSES",
    "OmniglotConfig",
    "OmniglotImages",
    "REMOTE_FILES",
    "RemoteFile",
    "bernoulli_uniforms",
    "binarize_images",
    "cache_dir",
    "download_url",
    "fetch",
    "md5sum",
    "read_chardata",
    "read_idx",
    "read_idx_images",
    "read_omniglot_pngs",
    "write_idx",
]
