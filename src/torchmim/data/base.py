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
        transform: the map from the user's raw rows to these tensors (a
            :class:`~torchmim.data.transform.DataTransform`, e.g. a standardisation), which
            ``run()`` saves with the model; ``None``: the data are used as given.
    """

    train: Dataset
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    train_eval: tuple[Tensor, Tensor]
    x_shape: tuple[int, ...]
    num_classes: int
    description: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    transform: Any = None


@dataclass
class DataConfig:
    """Base of data-set configs; ``from_dict`` picks the subclass by ``name``."""

    __registry__: ClassVar[Registry] = DATASETS
    default_name: ClassVar[str] = "gmm2d"

    def __post_init__(self) -> None:
        """Every field checked against its annotation (``n_train=2.5`` or ``"10"`` is a one-line
        :class:`~torchmim.errors.ConfigError`, as from YAML); subclasses call this first."""
        from ..config import check_fields

        check_fields(self, "data")

    def load(self, seed: int = 0) -> DataSplits:  # pragma: no cover - abstract
        raise NotImplementedError

    def configure_model(self, model: Any) -> Any:
        """The model config adapted to this data (``RunConfig`` calls it; default: unchanged).
        The ``file`` data set sets the model's input size and likelihood from the file."""
        return model
