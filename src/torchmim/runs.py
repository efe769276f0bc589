"""One run: build a model, train it with an objective on a data set, evaluate it, save everything.

This is the unit of work of the library — what ``torchmim train`` executes, what the demo runs for
each objective and width, and what a sweep runs for each cell. The save folder holds

    config.yaml        the full RunConfig (loadable with ``RunConfig.from_file``)
    model.pt           the best-validation model (registry name + config + weights)
    checkpoint.pt      the trainer state, for ``resume``
    history.csv        one row per epoch
    metrics.json       the test measures, with N and k (strict JSON: a missing value is null)
    environment.json   versions, machine, git commit
    resume_log.json    one entry per resume: from which epoch, which options changed, where
    .lock              the folder's lock (see torchmim.locking): one writer at a time

and, when asked for, ``tensorboard/`` (``log.tensorboard=true``), ``latent/`` (the default output
of ``torchmim latent``) and ``export-onnx/``, ``export-torchscript/``, ``export-pt2/`` (that of
``torchmim export``). ``--overwrite`` deletes all of these (:data:`RUN_FILES`,
:data:`RUN_FOLDERS`) and nothing else.

Every file is written atomically (a temporary file, fsync, rename), so ``kill -9`` at any moment
leaves each file whole: the old version or the new one. ``history.csv`` is rewritten from the
checkpoint's history when a run resumes, so it holds exactly the epochs the checkpoint holds.

A folder that holds a run is continued with ``resume=True`` (``--resume``) or started again with
``overwrite=True`` (``--overwrite``); anything else is refused. A resume first checks the new
config against the folder's ``config.yaml`` and checkpoint and refuses, before writing anything,
a change of anything but :data:`RESUME_SAFE_KEYS` (docs/reliability.md).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import apply_overrides, from_dict, load_config_file, save_config_file, to_dict
from .data.base import DataConfig, DataSplits
from .data.toy import GMM2DConfig
from .environment import environment_info
from .errors import CheckpointError, ConfigError, TorchMIMError
from .evaluation import (
    POINTS_FILE,
    EvalConfig,
    default_nll_samples,
    evaluate,
    evaluate_points,
    write_points,
)
from .io import (
    atomic_write_json,
    atomic_write_text,
    clean_temporaries,
    read_checkpoint,
    read_json,
    save_model,
)
from .locking import FolderLock
from .models.configs import ModelConfig
from .models.latent_variable_model import LatentVariableModel
from .models.mlp import MLPModelConfig
from .objectives.base import Objective
from .objectives.mim import MIM
from .seeding import derive_seed, seed_everything
from .training.callbacks import Callback, CSVLogger, LogConfig
from .training.trainer import (
    RESUME_SAFE_TRAIN_KEYS,
    Trainer,
    TrainerConfig,
    changed_keys,
    check_resume_trainer,
)

__all__ = ["RESUME_SAFE_KEYS", "RUN_FILES", "RUN_FOLDERS", "EvalConfig", "InitConfig", "RunConfig",
           "RunResult",
           "check_run_folder", "evaluate_run", "evaluate_trained", "load_run_data", "run",
           "start_run_folder"]

#: The files of a run folder (``init/`` holds the first stage's checkpoint and model).
RUN_FILES = ("config.yaml", "environment.json", "checkpoint.pt", "history.csv", "model.pt",
             "metrics.json", "points.npz", "resume_log.json", "traceback.txt",
             "init/checkpoint.pt", "init/model.pt")
#: The folders the library writes into a run folder, all derived from the run's model: TensorBoard
#: scalars, and the default outputs of ``torchmim latent`` and ``torchmim export``. A fresh start
#: (``--overwrite``) deletes them with :data:`RUN_FILES`, so none describes an older model.
RUN_FOLDERS = ("tensorboard", "latent", "export-onnx", "export-torchscript", "export-pt2")
#: The config keys a resume may change (dotted; a trailing dot: the whole section): they say how
#: long, where, how fast or how visibly the run goes on, never what its epochs compute. The epoch
#: budget may grow, not fall below the epochs already trained. Any other change is refused.
RESUME_SAFE_KEYS = tuple(f"train.{k}" for k in RESUME_SAFE_TRAIN_KEYS) + (
    "eval.threads", "eval.save_points", "log.")


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
        self.model = self.data.configure_model(self.model)  # e.g. x_dim from the user's file
        if self.eval.nll_samples is None:  # written out, so a saved config says what was used
            self.eval = dataclasses.replace(self.eval, nll_samples=default_nll_samples(self.model))
        from .validation import check_run_config

        check_run_config(self)  # options of different sections that contradict each other

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


def _safe_resume_key(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in RESUME_SAFE_KEYS)


def _get(data: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return "(unset)"
        data = data[part]
    return data


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _train_configs(config: RunConfig, progress: bool | None) -> tuple[TrainerConfig, TrainerConfig]:
    """The trainer options of the first stage (if any) and of the main stage, as ``run`` uses
    them."""
    train = (config.train if progress is None
             else dataclasses.replace(config.train, progress=progress))
    if config.init is None:
        return train, train
    # the main stage starts from the first stage's model: its data initialisation is done
    return (dataclasses.replace(train, epochs=config.init.epochs),
            dataclasses.replace(train, init_from_data=False))


def check_run_folder(config: RunConfig, out: Path, *, resume: bool = False,
                     overwrite: bool = False, progress: bool | None = None
                     ) -> dict[str, Any] | None:
    """Check that ``config`` may be run into ``out`` as asked, reading files only.

    Returns ``None`` for a fresh start (the folder holds no run, or ``overwrite``), or, for a
    resume from a checkpoint, ``{"from_epoch", "changes"}`` (the safe keys changed: old and new
    values). Raises a one-line :class:`~torchmim.errors.ConfigError` for a used folder without
    ``resume``/``overwrite`` and for a resume that changes the run's meaning (naming the keys), and
    a :class:`~torchmim.errors.CheckpointError` for a checkpoint that cannot be checked.
    """
    if resume and overwrite:
        raise ConfigError("resume and overwrite exclude each other: --resume continues the run "
                          "in the folder, --overwrite deletes it and starts again")
    present = [name for name in RUN_FILES + RUN_FOLDERS if (out / name).exists()]
    if not present or overwrite:
        return None
    if not resume:
        raise ConfigError(f"{out} already holds a run ({', '.join(present)}); pass --resume to "
                          "continue it, --overwrite to delete it and start again, or use another "
                          "--out folder")
    checkpoints = {stage: out / stage / "checkpoint.pt" for stage in ("", "init")
                   if (out / stage / "checkpoint.pt").is_file()}
    if not checkpoints:
        finished = [n for n in ("model.pt", "metrics.json") if n in present]
        if finished:
            raise ConfigError(f"{out} holds a run's {' and '.join(finished)} but no checkpoint.pt "
                              "to resume from; use --overwrite to start it again")
        return None  # interrupted before its first checkpoint: nothing trained to keep
    saved_file = out / "config.yaml"
    if not saved_file.is_file():
        raise CheckpointError(f"{out} has a checkpoint but no config.yaml, so a resume cannot "
                              "check that it continues the same run; use --overwrite to start again")
    try:
        saved = RunConfig.from_file(saved_file).to_dict()
    except TorchMIMError as e:
        raise CheckpointError(f"cannot read the saved config {saved_file} to check the resume "
                              f"({e}); use --overwrite to start again") from None
    new = config.to_dict()
    changed = changed_keys(saved, new)
    unsafe = [k for k in changed if not _safe_resume_key(k)]
    if unsafe:
        raise ConfigError(
            f"--resume would change the run in {out}: "
            + ", ".join(f"{k} {_short(_get(saved, k))} -> {_short(_get(new, k))}" for k in unsafe)
            + "; a resume may only change "
            + ", ".join(k + "*" if k.endswith(".") else k for k in RESUME_SAFE_KEYS)
            + " (use another --out folder, or --overwrite to start again)")
    stages = dict(zip(("init", ""), _train_configs(config, progress)))
    objectives = {"": config.objective, "init": config.init.objective if config.init else None}
    from_epoch = 0
    for stage, path in checkpoints.items():
        if stage == "init" and config.init is None:
            continue
        ckpt = read_checkpoint(path)
        if ckpt["objective"] != to_dict(objectives[stage]):
            raise ConfigError(f"{path} was written by objective {ckpt['objective'].get('name')!r}, "
                              f"not {to_dict(objectives[stage])['name']!r}; use --overwrite to "
                              "start again")
        if ckpt["model_config"] is not None and ckpt["model_config"] != to_dict(config.model):
            keys = changed_keys(ckpt["model_config"], to_dict(config.model))
            raise ConfigError(f"{path} was written by another model (changed: model."
                              f"{', model.'.join(keys)}); use --overwrite to start again")
        check_resume_trainer(ckpt["trainer"], to_dict(stages[stage]), int(ckpt["epoch"]),
                             source=str(path), prefix="train.")
        if stage == "":
            from_epoch = int(ckpt["epoch"])
    return {"from_epoch": from_epoch,
            "changes": {k: [_get(saved, k), _get(new, k)] for k in changed}}


def start_run_folder(config: RunConfig, out: Path, resumed: dict[str, Any] | None) -> None:
    """Write the run's definition into ``out`` (whose lock the caller holds), after
    :func:`check_run_folder` returned ``resumed``: a fresh start (``None``) clears the folder's run
    files and folders (:data:`RUN_FILES`, :data:`RUN_FOLDERS`) first; a resume records what changed
    in ``resume_log.json``. Both remove the temporary files of writes a crash interrupted."""
    import shutil

    import yaml

    from .io import strict_json

    if resumed is None:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        for name in RUN_FOLDERS:
            if (out / name).is_dir() and not (out / name).is_symlink():
                shutil.rmtree(out / name)
            elif (out / name).is_symlink():
                (out / name).unlink()
    for folder in (out, out / "init"):
        clean_temporaries(folder)  # of writes a crash interrupted; we hold the folder's lock
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    if resumed is None:
        atomic_write_json(out / "environment.json", environment_info())
    else:
        log = read_json(out / "resume_log.json")
        log = log if isinstance(log, list) else []
        log.append(strict_json({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **resumed,
                                "environment": environment_info()}))
        atomic_write_json(out / "resume_log.json", log)


def run(
    config: RunConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: list[Callback] | None = None,
    progress: bool | None = None,
    progress_desc: str | None = None,
    trainer_class: type[Trainer] = Trainer,
) -> RunResult:
    """Train and evaluate one model as ``config`` says; write the save folder if ``out_dir`` is given.

    The folder is locked while the run writes it (a second writer gets a
    :class:`~torchmim.locking.FolderLockedError`). A folder that already holds a run needs
    ``resume=True`` (continue from ``out_dir/checkpoint.pt``, when it exists, after checking that
    the config changes only :data:`RESUME_SAFE_KEYS`) or ``overwrite=True`` (delete its run files
    and start again); see :func:`check_run_folder`. ``trainer_class``: a :class:`Trainer` subclass
    (rank 0 of a data-parallel run, :mod:`torchmim.training.distributed`).
    """
    if isinstance(config, dict):  # the dict form of a config file
        config = RunConfig.from_dict(config)
    if not isinstance(config, RunConfig):
        raise ConfigError(f"run: config must be a RunConfig or a dict of its sections, got "
                          f"{type(config).__name__}")
    if out_dir is None:
        if resume or overwrite:
            raise ConfigError("resume and overwrite need an output folder")
        return _run(config, None, None, callbacks, progress, progress_desc, trainer_class)
    out = Path(out_dir)
    with FolderLock(out, what="run folder"):
        resumed = check_run_folder(config, out, resume=resume, overwrite=overwrite,
                                   progress=progress)
        return _run(config, out, resumed, callbacks, progress, progress_desc, trainer_class)


def _run(config: RunConfig, out: Path | None, resumed: dict[str, Any] | None,
         callbacks: list[Callback] | None, progress: bool | None,
         progress_desc: str | None, trainer_class: type[Trainer] = Trainer) -> RunResult:
    resume = resumed is not None
    data, model = _prepare_run(config)
    model.data_transform = data.transform  # saved with the model and checkpoints
    init_cfg, train_cfg = _train_configs(config, progress)
    if out is not None:
        start_run_folder(config, out, resumed)
    cbs = list(callbacks or []) + config.log.callbacks(out, config)  # TensorBoard, MLflow
    if out is not None:
        cbs.append(CSVLogger(out / "history.csv"))
    init_seconds = 0.0
    if config.init is not None:  # first stage (its own checkpoint folder, so it resumes too)
        stage = trainer_class(model, config.init.objective, init_cfg,
                              out_dir=None if out is None else out / "init")
        stage.fit(data.train, data.val[0], resume=resume)
        init_seconds = stage.elapsed_seconds
        if out is not None:
            save_model(stage.model, out / "init" / "model.pt")
    trainer = trainer_class(model, config.objective, train_cfg, callbacks=cbs, out_dir=out,
                            progress_desc=progress_desc)
    history = trainer.fit(data.train, data.val[0], resume=resume)
    # from the histories' epoch times, so that a resumed run counts the epochs before the resume too
    train_seconds = init_seconds + trainer.elapsed_seconds
    metrics = _finish_run(config, trainer.model, data, out, epoch=trainer.epoch,
                          best_epoch=trainer.best_epoch, best_val=trainer.best_val,
                          train_seconds=train_seconds)
    return RunResult(config, trainer.model, metrics, history, data, out)


def load_run_data(config: RunConfig) -> DataSplits:
    """The data splits a run of ``config`` trains and is evaluated on, loaded as every run loads
    them: under the seed derived from ``config.seed`` for "data" (a loader that draws, e.g. a
    subset or a split, draws the same). Used by the runs themselves, ``torchmim evaluate`` and the
    backfill of per-test-point values, so that all three see the same test split."""
    seed_everything(derive_seed(config.seed, "data"))
    return config.data.load(seed=config.seed)


def evaluate_trained(config: RunConfig, model: LatentVariableModel, data: DataSplits, *,
                     progress: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics, points)`` of a trained model of a run of ``config`` as the run evaluates it:
    :func:`~torchmim.evaluation.evaluate_points` with ``config.eval`` on ``data``'s test split
    (from :func:`load_run_data`), every estimate seeded from the seed derived for "eval"."""
    return evaluate_points(model, data, config.eval, seed=derive_seed(config.seed, "eval"),
                           progress=progress)


def _prepare_run(config: RunConfig) -> tuple[DataSplits, LatentVariableModel]:
    """The data splits and the initial model of a run, seeded from ``config.seed`` as every run
    is (:func:`run`, a member of :func:`~torchmim.training.run_group`, each process of
    :func:`~torchmim.training.distributed.run_distributed`): the data under the seed derived for
    "data", the model's initialisation under the one for "init". A one-line
    :class:`~torchmim.errors.ConfigError` when the model's input shape is not the data's. The
    caller attaches ``data.transform`` to the model when its checkpoints are to carry it."""
    data = load_run_data(config)
    seed_everything(derive_seed(config.seed, "init"))
    model = config.model.build()
    if tuple(model.x_shape) != tuple(data.x_shape):
        raise ConfigError(f"the model expects observations of shape {model.x_shape} but data "
                          f"{to_dict(config.data)['name']!r} has shape {data.x_shape}; set the "
                          "model's input size (e.g. model.x_dim) to match")
    return data, model


def _finish_run(config: RunConfig, model: LatentVariableModel, data: DataSplits,
                out: Path | None, *, epoch: int, best_epoch: int | None, best_val: float,
                train_seconds: float) -> dict[str, Any]:
    """The end of every run (:func:`run`, a member of :func:`~torchmim.training.run_group`): the
    trained ``model`` (its best state) gets ``data.transform``, is evaluated on the test split
    under the seed derived for "eval", and its metrics (the measures, the epochs, the selected
    epoch and its validation loss, the training time and the data's facts) are returned and,
    with ``out``, written with the model (``model.pt``, ``metrics.json``, and with
    ``eval.save_points`` the per-test-point values ``points.npz`` of the same evaluation).
    The data come from :func:`load_run_data` and the evaluation is :func:`evaluate_trained`."""
    model.data_transform = data.transform  # saved with the model (e.g. a standardisation)
    start = time.perf_counter()
    metrics, points = evaluate_trained(config, model, data)
    metrics.update({
        "eval_seconds": time.perf_counter() - start,
        "epochs": epoch,
        "best_epoch": best_epoch if best_epoch is not None else epoch,
        # None (JSON null) when no epoch was selected (all of them in warm-up): never Infinity
        "best_val_loss": best_val if best_epoch is not None else None,
        "train_seconds": train_seconds,
    })
    metrics.update({f"data.{k}": v for k, v in data.info.items()})
    if out is not None:
        save_model(model, out / "model.pt")
        if config.eval.save_points:  # before metrics.json: a finished run has both
            write_points(out / POINTS_FILE, points)
        else:  # an earlier finish of this folder (resumed for more epochs) saved another model's
            (out / POINTS_FILE).unlink(missing_ok=True)
        atomic_write_json(out / "metrics.json", metrics)
    return metrics
