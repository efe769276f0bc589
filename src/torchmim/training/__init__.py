"""Training: the :class:`Trainer`, its config and callbacks."""

from .callbacks import Callback, CSVLogger, MLflowLogger, ProgressBar, TensorBoardLogger
from .trainer import CHECKPOINT_FORMAT, Trainer, TrainerConfig, fit, resolve_device
from .vectorized import VectorizedTrainer, group_key, run_group, unsupported_reason

__all__ = ["CHECKPOINT_FORMAT", "CSVLogger", "Callback", "MLflowLogger", "ProgressBar",
           "TensorBoardLogger", "Trainer", "TrainerConfig", "VectorizedTrainer", "fit", "group_key",
           "resolve_device", "run_group", "unsupported_reason"]
