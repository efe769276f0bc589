"""Training callbacks: progress bar, CSV log, TensorBoard and MLflow loggers.

A callback receives the trainer and plain dicts of numbers; none of them can change training.
:class:`LogConfig` (the ``log:`` section of a run config, ``torchmim train --tensorboard DIR
--mlflow``) selects the TensorBoard and MLflow loggers of a run.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["CSVLogger", "Callback", "LogConfig", "MLflowLogger", "ProgressBar",
           "TensorBoardLogger", "write_history_csv"]


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
    """One row per epoch in a CSV file (the columns of the first row), kept equal to the trainer's
    history: the file is rewritten atomically from ``trainer.history`` when a fit starts and after
    every epoch. A resumed fit therefore holds exactly the rows of the epochs its checkpoint holds
    (a row lost to a crash between the checkpoint and the log comes back, the rows of epochs after
    the checkpoint go), and a crash mid-write never leaves half a row."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._rows: list[dict[str, Any]] = []

    def on_fit_start(self, trainer: Trainer) -> None:
        self._rows = list(trainer.history)
        write_history_csv(self._rows, self.path)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        self._rows.append(logs)
        write_history_csv(self._rows, self.path)


def write_history_csv(history: list[dict[str, Any]], path: str | Path) -> None:
    """Write ``history`` (one dict per epoch; the first row's columns) to ``path`` atomically; an
    empty history gives an empty file."""
    from ..io import atomic_write_text

    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, list(history[0]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


_TENSORBOARD_MISSING = ("TensorBoard logging needs the tensorboard package: "
                        "pip install 'torchmim[tensorboard]' (or: pip install tensorboard)")
_MLFLOW_MISSING = ("MLflow logging needs the mlflow package: pip install 'torchmim[mlflow]' "
                   "(or: pip install mlflow)")


def _summary_writer() -> type:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MissingDependencyError(_TENSORBOARD_MISSING) from None
    return SummaryWriter


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise MissingDependencyError(_MLFLOW_MISSING) from None
    return mlflow


class TensorBoardLogger(Callback):
    """Scalars per epoch to TensorBoard (needs ``pip install tensorboard``; without it the
    constructor raises :class:`~torchmim.errors.MissingDependencyError`, an ``ImportError``)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.writer = _summary_writer()(str(log_dir))

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        for k, v in logs.items():
            if isinstance(v, (int, float)) and k != "epoch":
                self.writer.add_scalar(k, v, epoch)
        self.writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.writer.close()


class MLflowLogger(Callback):
    """Metrics per epoch to an MLflow run (needs ``pip install mlflow``; without it the constructor
    raises :class:`~torchmim.errors.MissingDependencyError`, an ``ImportError``).

    Args:
        run_name: the MLflow run's name.
        experiment: the MLflow experiment (default: MLflow's active/default one).
        params: further parameters to log at the start (e.g. a flattened run config).
    """

    def __init__(self, run_name: str | None = None, experiment: str | None = None,
                 params: dict[str, Any] | None = None) -> None:
        self.mlflow = mlflow = _mlflow()
        if experiment:
            mlflow.set_experiment(experiment)
        self.run_name = run_name
        self.params = dict(params or {})

    def on_fit_start(self, trainer: Trainer) -> None:
        from ..config import to_dict

        self.mlflow.start_run(run_name=self.run_name)
        flat = {f"train.{k}": v for k, v in to_dict(trainer.config).items()}
        flat["objective"] = trainer.objective.name
        flat.update(self.params)
        self.mlflow.log_params(flat)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in logs.items()
                                 if isinstance(v, (int, float)) and math.isfinite(v)}, step=epoch)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.mlflow.end_run()


@dataclass
class LogConfig:
    """Where a run logs its per-epoch metrics besides ``history.csv`` (``log:`` of a run config).

    Attributes:
        tensorboard: TensorBoard scalars: ``false``, ``true`` (into ``<run folder>/tensorboard``)
            or a folder (``torchmim train --tensorboard DIR``). Needs the tensorboard package.
        mlflow: log the run config and the metrics to an MLflow run (``--mlflow``); MLflow's
            ``MLFLOW_TRACKING_URI`` says where. Needs the mlflow package.
        mlflow_experiment: the MLflow experiment (default: MLflow's default one).
        mlflow_run_name: the MLflow run's name (default: the run folder's name).
    """

    tensorboard: bool | str = False
    mlflow: bool = False
    mlflow_experiment: str | None = None
    mlflow_run_name: str | None = None

    def __post_init__(self) -> None:
        if self.tensorboard == "":
            raise ConfigError("log.tensorboard must be true, false or a folder, got ''")

    def require(self) -> None:
        """Raise :class:`~torchmim.errors.MissingDependencyError` (one line naming the
        ``pip install`` command) if a selected logger's package is missing: call it before
        training, so that a run does not fail after its data is loaded."""
        if self.tensorboard is not False:
            _summary_writer()
        if self.mlflow:
            _mlflow()

    def callbacks(self, out_dir: str | Path | None = None, config: Any = None) -> list[Callback]:
        """The selected loggers for a run writing to ``out_dir`` (``config``: the run config,
        logged to MLflow as flat ``section.key`` parameters)."""
        self.require()
        out: list[Callback] = []
        if self.tensorboard is not False:
            if self.tensorboard is True and out_dir is None:
                raise ConfigError("log.tensorboard=true writes into the run folder and this run has "
                                  "none; set log.tensorboard to a folder")
            log_dir = Path(out_dir) / "tensorboard" if self.tensorboard is True else \
                Path(self.tensorboard)
            out.append(TensorBoardLogger(log_dir))
        if self.mlflow:
            params = {}
            if config is not None:
                from ..config import to_dict

                params = {k: v for k, v in _flatten(to_dict(config)).items()
                          if not k.startswith("log.")}
            name = self.mlflow_run_name or (Path(out_dir).name if out_dir is not None else None)
            out.append(MLflowLogger(run_name=name, experiment=self.mlflow_experiment,
                                    params=params))
        return out


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict) and v:
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat
