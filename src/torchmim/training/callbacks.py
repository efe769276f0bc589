"""Training callbacks: progress bar, CSV log, TensorBoard and MLflow loggers.

A callback receives the trainer and plain dicts of numbers; none of them can change training.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["CSVLogger", "Callback", "MLflowLogger", "ProgressBar", "TensorBoardLogger"]


class Callback:
    """Hooks called by :class:`~torchmim.training.Trainer`; override the ones you need."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None: ...

    def on_batch_end(self, trainer: Trainer, step: int, logs: dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None: ...

    def on_fit_end(self, trainer: Trainer) -> None: ...


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class ProgressBar(Callback):
    """A tqdm bar over epochs with the running training loss, validation loss and β.

    Args:
        desc: label shown before the bar.
        batches: also show a bar over the batches of each epoch.
    """

    def __init__(self, desc: str = "train", *, batches: bool = True, leave: bool = True) -> None:
        self.desc, self.batches, self.leave = desc, batches, leave
        self._epochs = self._steps = None
        self._running = 0.0
        self._count = 0

    def on_fit_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        cfg = trainer.config
        self._epochs = tqdm(total=cfg.epochs, initial=trainer.epoch, desc=self.desc, unit="epoch",
                            leave=self.leave, dynamic_ncols=True, mininterval=0.5)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._running, self._count = 0.0, 0
        if self.batches:
            total = trainer.batches_per_epoch
            self._steps = self._tqdm(total=total, desc=f"epoch {epoch}", unit="batch", leave=False,
                                     dynamic_ncols=True, mininterval=0.5)

    def on_batch_end(self, trainer: Trainer, step: int, logs: dict[str, float]) -> None:
        self._count += 1
        self._running += (logs["loss"] - self._running) / self._count
        if self._steps is not None:
            self._steps.update(1)
            if step % 10 == 0:
                self._steps.set_postfix(loss=f"{self._running:.4g}", refresh=False)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None
        shown = {k: _fmt(logs[k]) for k in ("train_loss", "val_loss", "beta") if k in logs
                 and not (isinstance(logs[k], float) and math.isnan(logs[k]))}
        self._epochs.set_postfix(shown, refresh=False)
        self._epochs.update(1)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._steps is not None:
            self._steps.close()
        if self._epochs is not None:
            self._epochs.close()


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file (the columns of the first row; resumes append)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fields: list[str] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._fields is None:
            if self.path.exists() and self.path.stat().st_size > 0:
                with self.path.open() as f:
                    self._fields = next(csv.reader(f))
            else:
                self._fields = list(logs)
                with self.path.open("w", newline="") as f:
                    csv.writer(f).writerow(self._fields)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self._fields, extrasaction="ignore").writerow(logs)


class TensorBoardLogger(Callback):
    """Scalars per epoch to TensorBoard (needs ``pip install tensorboard``)."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("TensorBoardLogger needs the tensorboard package: "
                              "pip install 'torchmim[tensorboard]'") from e
        self.writer = SummaryWriter(str(log_dir))

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        for k, v in logs.items():
            if isinstance(v, (int, float)) and k != "epoch":
                self.writer.add_scalar(k, v, epoch)
        self.writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.writer.close()


class MLflowLogger(Callback):
    """Metrics per epoch to an MLflow run (needs ``pip install mlflow``)."""

    def __init__(self, run_name: str | None = None, experiment: str | None = None) -> None:
        try:
            import mlflow
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("MLflowLogger needs the mlflow package: pip install mlflow") from e
        self.mlflow = mlflow
        if experiment:
            mlflow.set_experiment(experiment)
        self.run_name = run_name

    def on_fit_start(self, trainer: Trainer) -> None:
        from ..config import to_dict

        self.mlflow.start_run(run_name=self.run_name)
        flat = {f"train.{k}": v for k, v in to_dict(trainer.config).items()}
        flat["objective"] = trainer.objective.name
        self.mlflow.log_params(flat)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        self.mlflow.log_metrics({k: v for k, v in logs.items() if isinstance(v, (int, float))
                                 and math.isfinite(v)}, step=epoch)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.mlflow.end_run()
