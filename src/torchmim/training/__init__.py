"""Training: the :class:`Trainer`, its config and callbacks."""

from .callbacks import Callback, CSVLogger, MLflowLogger, ProgressBar, TensorBoardLogger
from .trainer import CHECKPOINT_FORMAT, Trainer, TrainerConfig, fit, resolve_device

__all__ = ["CHECKPOINT_FORMAT", "CSVLogger", "Callback", "MLflowLogger", "ProgressBar",
           "TensorBoardLogger", "Trainer", "TrainerConfig", "fit", "resolve_device"]
