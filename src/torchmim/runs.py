"""One run: build a model, train it with an objective on a data set, evaluate it, save everything.

This is the unit of work of the library — what ``torchmim train`` executes, what the demo runs for
each objective and width, and what a sweep runs for each cell. The save folder holds

    config.yaml        the full RunConfig (loadable with ``RunConfig.from_file``)
    model.pt           the best-validation model (registry name + config + weights)
    checkpoint.pt      the trainer state, for ``resume``
    history.csv        one row per epoch
    metrics.json       the test measures, with N and k
    environment.json   versions, machine, git commit
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import apply_overrides, from_dict, load_config_file, save_config_file, to_dict
from .data.base import DataConfig, DataSplits
from .data.toy import GMM2DConfig
from .environment import environment_info
from .errors import ConfigError
from .evaluation import EvalConfig, default_nll_samples, evaluate
from .io import save_model
from .models.configs import ModelConfig
from .models.latent_variable_model import LatentVariableModel
from .models.mlp import MLPModelConfig
from .objectives.base import Objective
from .objectives.mim import MIM
from .seeding import derive_seed, seed_everything
from .training.callbacks import Callback, CSVLogger, LogConfig
from .training.trainer import Trainer, TrainerConfig

__all__ = ["EvalConfig", "InitConfig", "RunConfig", "RunResult", "evaluate_run", "run"]


@dataclass
class InitConfig:
    """A first training stage with another objective, whose best model starts the main stage
    (Appendix D.4 trains CE → MIM and MIM → CE)."""

    objective: Objective = field(default_factory=MIM)
    epochs: int = 50


@dataclass
class RunConfig:
    """Everything that defines a run; round-trips through YAML/JSON.

    ``seed`` seeds the model's initialisation, the data draws and training (``train.seed`` follows it).
    """

    model: ModelConfig = field(default_factory=MLPModelConfig)
    objective: Objective = field(default_factory=MIM)
    data: DataConfig = field(default_factory=GMM2DConfig)
    train: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    init: InitConfig | None = None
    log: LogConfig = field(default_factory=LogConfig)  # TensorBoard / MLflow loggers

    def __post_init__(self) -> None:
        if self.train.seed not in (0, self.seed):
            raise ConfigError(f"train.seed={self.train.seed} conflicts with seed={self.seed}; a run is "
                              "seeded by its top-level 'seed'")
        self.train = dataclasses.replace(self.train, seed=self.seed)
        if self.eval.nll_samples is None:  # written out, so a saved config says what was used
            self.eval = dataclasses.replace(self.eval, nll_samples=default_nll_samples(self.model))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return from_dict(cls, data, where="config")

    @classmethod
    def from_file(cls, path: str | Path, overrides: list[str] | None = None) -> RunConfig:
        """Load a YAML/JSON run config, applying ``key.sub=value`` overrides."""
        data = load_config_file(path)
        return cls.from_dict(apply_overrides(data, overrides or []))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def save(self, path: str | Path) -> None:
        save_config_file(self, path)


@dataclass
class RunResult:
    """The trained model (best validation loss), its test metrics and its training history."""

    config: RunConfig
    model: LatentVariableModel
    metrics: dict[str, float]
    history: list[dict[str, Any]]
    data: DataSplits
    out_dir: Path | None = None


def evaluate_run(model: LatentVariableModel, data: DataSplits, ev: EvalConfig, *, seed: int,
                 progress: bool = False) -> dict[str, Any]:
    """The test measures of a trained model: :func:`~torchmim.evaluation.evaluate` on the test
    split, the k-NN fit on ``train_eval`` (kept for callers; ``evaluate`` takes the splits)."""
    return evaluate(model, data, ev, seed=seed, progress=progress)


def run(
    config: RunConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    progress: bool | None = None,
    progress_desc: str | None = None,
) -> RunResult:
    """Train and evaluate one model as ``config`` says; write the save folder if ``out_dir`` is given.

    ``resume=True`` continues from ``out_dir/checkpoint.pt`` when it exists.
    """
    out = Path(out_dir) if out_dir is not None else None
    seed_everything(derive_seed(config.seed, "data"))
    data = config.data.load(seed=config.seed)
    seed_everything(derive_seed(config.seed, "init"))
    model = config.model.build()
    if tuple(model.x_shape) != tuple(data.x_shape):
        raise ConfigError(f"the model expects observations of shape {model.x_shape} but data "
                          f"{to_dict(config.data)['name']!r} has shape {data.x_shape}; set the "
                          "model's input size (e.g. model.x_dim) to match")
    train_cfg = config.train if progress is None else dataclasses.replace(config.train, progress=progress)
    cbs = list(callbacks or []) + config.log.callbacks(out, config)  # TensorBoard, MLflow
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.yaml")
        (out / "environment.json").write_text(json.dumps(environment_info(), indent=2) + "\n")
        cbs.append(CSVLogger(out / "history.csv"))
    init_seconds = 0.0
    if config.init is not None:  # first stage (its own checkpoint folder, so it resumes too)
        stage = Trainer(model, config.init.objective,
                        dataclasses.replace(train_cfg, epochs=config.init.epochs),
                        out_dir=None if out is None else out / "init")
        stage.fit(data.train, data.val[0], resume=resume)
        init_seconds = stage.elapsed_seconds
        if out is not None:
            save_model(stage.model, out / "init" / "model.pt")
        # the main stage starts from the first stage's model: its data initialisation is done
        train_cfg = dataclasses.replace(train_cfg, init_from_data=False)
    trainer = Trainer(model, config.objective, train_cfg, callbacks=cbs, out_dir=out,
                      progress_desc=progress_desc)
    history = trainer.fit(data.train, data.val[0], resume=resume)
    # from the histories' epoch times, so that a resumed run counts the epochs before the resume too
    train_seconds = init_seconds + trainer.elapsed_seconds
    start = time.perf_counter()
    metrics = evaluate(trainer.model, data, config.eval, seed=derive_seed(config.seed, "eval"))
    metrics.update({
        "eval_seconds": time.perf_counter() - start,
        "epochs": trainer.epoch,
        "best_epoch": trainer.best_epoch if trainer.best_epoch is not None else trainer.epoch,
        "best_val_loss": trainer.best_val,
        "train_seconds": train_seconds,
    })
    metrics.update({f"data.{k}": v for k, v in data.info.items()})
    if out is not None:
        save_model(trainer.model, out / "model.pt")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return RunResult(config, trainer.model, metrics, history, data, out)
