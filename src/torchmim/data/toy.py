"""The paper's low-dimensional data (Section 6.2, Fig. 2–4) and user-given Gaussian mixtures.

Facts of the reference code (``specs/toy-data.md``): five equally weighted isotropic components with
standard deviation 0.25; means at the origin and on the unit circle at 0°, 72°, 144° and 216° (the fifth
slot of the pentagon, 288°, is empty); in 20D, coordinates 3–20 of the means fill [−50, 50] evenly
(``linspace(−50, 50, 100)`` as 5 rows of 20, first two columns overwritten by the 2D means). A point's
label is its component. The reference draws fresh training samples every epoch, 10,000 a time.
"""

from __future__ import annotations

import reprlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..seeding import derive_seed
from .base import DATASETS, DataConfig, DataSplits

__all__ = [
    "CustomMixtureConfig",
    "GMM2DConfig",
    "GMM20DConfig",
    "GaussianMixtureData",
    "ResampledMixtureDataset",
    "paper_2d_mixture",
    "paper_20d_mixture",
]


class GaussianMixtureData:
    """A fixed mixture of isotropic (or diagonal) Gaussians to draw labelled data from.

    Args:
        means: component means, shape (K, D).
        std: one standard deviation for all, or per component (K,), or (K, D).
        weights: mixing weights (K,), normalised here; equal by default.
    """

    def __init__(self, means: Sequence | np.ndarray, std: float | Sequence = 0.25,
                 weights: Sequence | None = None) -> None:
        self.means = _float_array(means, "mixture means")
        if self.means.ndim != 2 or self.means.shape[0] < 1 or self.means.shape[1] < 1:
            raise ConfigError(f"mixture means must have shape (K, D), got {self.means.shape}")
        k, d = self.means.shape
        std_arr = _float_array(std, "mixture std")
        if std_arr.ndim == 1 and std_arr.shape[0] == k:
            std_arr = std_arr[:, None]
        try:
            self.stds = np.broadcast_to(std_arr, (k, d)).copy()
        except ValueError:
            raise ConfigError(f"mixture std of shape {std_arr.shape} does not fit {k} components "
                              f"in {d} dimensions") from None
        if not (self.stds > 0).all():
            raise ConfigError("mixture standard deviations must be positive")
        w = np.full(k, 1.0 / k) if weights is None else _float_array(weights, "mixture weights")
        if w.shape != (k,) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(f"mixture weights must be {k} non-negative numbers with a positive sum")
        self.weights = w / w.sum()

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def sample(self, n: int, *, seed: int | None = None,
               generator: np.random.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` points (float32, shape (n, D)) and their component labels (int64)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise DataError(f"the number of points to sample must be a non-negative integer, "
                            f"got {n!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise DataError(f"seed must be a non-negative integer or None, got {seed!r}")
        rng = generator if generator is not None else np.random.default_rng(seed)
        labels = rng.choice(self.num_components, size=n, p=self.weights)
        x = self.means[labels] + self.stds[labels] * rng.standard_normal((n, self.dim))
        return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)

    def distribution(self, dtype: torch.dtype = torch.float64) -> MixtureSameFamily:
        """P(x) as a ``torch.distributions`` mixture (for densities and contour plots)."""
        comps = Independent(Normal(torch.as_tensor(self.means, dtype=dtype),
                                   torch.as_tensor(self.stds, dtype=dtype)), 1)
        return MixtureSameFamily(Categorical(probs=torch.as_tensor(self.weights, dtype=dtype)), comps)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """The mixture's exact per-coordinate mean and standard deviation:
        E[x] = Σ w_k μ_k, Var[x] = Σ w_k (σ_k² + μ_k²) − E[x]²."""
        w = self.weights[:, None]
        mean = (w * self.means).sum(0)
        var = (w * (self.stds**2 + self.means**2)).sum(0) - mean**2
        return mean, np.sqrt(np.maximum(var, 0.0))

    def standardized(self) -> GaussianMixtureData:
        """The same mixture with every coordinate shifted and scaled to mean 0 and variance 1
        (exactly, from :meth:`moments`): a mixture of Gaussians again, with per-coordinate stds."""
        mean, std = self.moments()
        return GaussianMixtureData((self.means - mean) / std, self.stds / std, self.weights)

    def log_prob(self, x: Tensor | np.ndarray) -> Tensor:
        """log P(x) in float64."""
        return self.distribution().log_prob(torch.as_tensor(np.asarray(x), dtype=torch.float64))


def _float_array(values: Any, what: str) -> np.ndarray:
    """``values`` as a float64 array of finite numbers, or a one-line ConfigError."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be numbers in a regular array, got "
                          f"{reprlib.repr(values)}") from None
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} must be finite numbers, got {reprlib.repr(values)}")
    return arr


def _pentagon_means() -> np.ndarray:
    angles = np.deg2rad([0.0, 72.0, 144.0, 216.0])
    return np.vstack([[0.0, 0.0], np.stack([np.cos(angles), np.sin(angles)], axis=1)])


def paper_2d_mixture() -> GaussianMixtureData:
    """The 2D data of Fig. 2 and 3: five components, std 0.25 (label 0 is the one at the origin)."""
    return GaussianMixtureData(_pentagon_means(), std=0.25)


def paper_20d_mixture() -> GaussianMixtureData:
    """The 20D data of Fig. 4: the 2D means in the first two coordinates, the rest in [−50, 50]."""
    means = np.linspace(-50.0, 50.0, 100).reshape(5, 20)
    means[:, :2] = _pentagon_means()
    return GaussianMixtureData(means, std=0.25)


class ResampledMixtureDataset(Dataset):
    """``size`` labelled points of a mixture, drawn afresh for every epoch (as the reference does).

    The points of epoch e are a deterministic function of (seed, e); the trainer calls ``set_epoch``.
    ``dataset[list_of_indices]`` returns a whole batch (``batched_indexing``).
    """

    batched_indexing = True

    def __init__(self, mixture: GaussianMixtureData, size: int, seed: int = 0) -> None:
        self.mixture, self.size, self.seed = mixture, int(size), int(seed)
        self.set_epoch(1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.x, self.y = self.mixture.sample(self.size, seed=derive_seed(self.seed, "epoch", epoch))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int | list[int]) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]


@dataclass
class _MixtureConfig(DataConfig):
    """Common fields of the mixture data sets."""

    n_train: int = 10_000
    n_val: int = 10_000
    n_test: int = 10_000
    resample: bool = True
    #: draw from the mixture with every coordinate standardised exactly (mean 0, variance 1): the
    #: paper's 20D data has coordinates spread over ±50 next to two of spread ~1 (Fig. 4)
    standardize: bool = False

    def mixture(self) -> GaussianMixtureData:  # pragma: no cover - abstract
        raise NotImplementedError

    def data_mixture(self) -> GaussianMixtureData:
        """The mixture the points are drawn from: :meth:`mixture`, standardised if asked."""
        mix = self.mixture()
        return mix.standardized() if self.standardize else mix

    def __post_init__(self) -> None:
        super().__post_init__()  # field types
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")

    def load(self, seed: int = 0) -> DataSplits:
        """Independent training, validation and test draws (and a labelled training draw for k-NN)."""
        mix = self.data_mixture()
        rng = np.random.default_rng([seed, 20_191_212])
        sub = [np.random.default_rng(s) for s in rng.bit_generator.seed_seq.spawn(4)]
        if self.resample:
            train: Dataset = ResampledMixtureDataset(mix, self.n_train, seed=int(rng.integers(2**62)))
        else:
            train = torch.utils.data.TensorDataset(*mix.sample(self.n_train, generator=sub[0]))
        return DataSplits(
            train=train,
            val=mix.sample(self.n_val, generator=sub[1]),
            test=mix.sample(self.n_test, generator=sub[2]),
            train_eval=mix.sample(self.n_train, generator=sub[3]),
            x_shape=(mix.dim,),
            num_classes=mix.num_components,
            description=self.describe(),
        )

    def describe(self) -> str:
        mix = self.mixture()
        return (f"{mix.num_components}-component Gaussian mixture in {mix.dim}D"
                f"{' (standardised)' if self.standardize else ''}; "
                f"{self.n_train} training points "
                f"({'fresh every epoch' if self.resample else 'fixed'}), "
                f"{self.n_val} validation, {self.n_test} test")


@DATASETS.register("gmm2d")
@dataclass
class GMM2DConfig(_MixtureConfig):
    """The paper's 2D mixture (Fig. 2, 3)."""

    def mixture(self) -> GaussianMixtureData:
        return paper_2d_mixture()


@DATASETS.register("gmm20d")
@dataclass
class GMM20DConfig(_MixtureConfig):
    """The paper's 20D mixture (Fig. 4)."""

    def mixture(self) -> GaussianMixtureData:
        return paper_20d_mixture()


@DATASETS.register("gmm")
@dataclass
class CustomMixtureConfig(_MixtureConfig):
    """A user-given mixture: ``means`` (K × D), ``std`` (scalar or per component), ``weights``."""

    means: list[list[float]] = field(default_factory=lambda: _pentagon_means().tolist())
    std: float | list[float] = 0.25
    weights: list[float] | None = None

    def mixture(self) -> GaussianMixtureData:
        return GaussianMixtureData(self.means, self.std, self.weights)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.mixture()  # validate now, with a ConfigError
