"""Data configs and splits: the registry of data sets a run can name (``data: {name: gmm2d}``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor
from torch.utils.data import Dataset

from ..registry import Registry

__all__ = ["DATASETS", "DataConfig", "DataSplits"]

#: Data sets by name; each entry is a :class:`DataConfig` subclass.
DATASETS: Registry[type[DataConfig]] = Registry("data set")


@dataclass
class DataSplits:
    """What a run needs from a data set.

    Attributes:
        train: training data (a Dataset of ``(x, y)``; may re-draw itself each epoch via ``set_epoch``).
        val: ``(x, y)`` validation tensors.
        test: ``(x, y)`` test tensors.
        train_eval: ``(x, y)`` labelled training points on which the k-NN classifier is fit.
        x_shape: event shape of one observation.
        num_classes: number of labels.
        description: one line for reports.
        info: facts about the data worth recording with every run's metrics (e.g. the variance a
            PCA captures); ``run()`` adds them to ``metrics.json`` as ``data.<key>``.
    """

    train: Dataset
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    train_eval: tuple[Tensor, Tensor]
    x_shape: tuple[int, ...]
    num_classes: int
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Base of data-set configs; ``from_dict`` picks the subclass by ``name``."""

    __registry__: ClassVar[Registry] = DATASETS
    default_name: ClassVar[str] = "gmm2d"

    def load(self, seed: int = 0) -> DataSplits:  # pragma: no cover - abstract
        raise NotImplementedError
