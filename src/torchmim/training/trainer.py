"""The trainer: Adam, β and learning-rate warm-up, early stopping, atomic checkpoints and resume.

Protocol (Section 6, and the reference code described in ``specs/toy-data.md``):

* Adam with lr 1e-3 and batches of 128 by default;
* β warm-up (Eq. 18) and learning-rate warm-up ([37]) over ``warmup_epochs``, both stepped per epoch;
* the validation loss is always taken at β = 1; the best model is the one with the lowest validation
  loss once β = 1, and training stops when it has not improved for more than ``patience`` epochs
  (default: the warm-up length, the paper's rule) — but not before ``min_steps`` gradient steps, so
  that a small data set (one batch per epoch) still trains; the best model is restored at the end;
* a fresh fit first calls ``model.initialize_from_data`` on the first training examples (VampPrior
  pseudo-inputs); a resumed fit does not;
* every epoch is seeded from (seed, epoch), so a run resumed from a checkpoint reproduces the
  uninterrupted run exactly.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..allocator import keep_freed_memory
from ..config import from_dict, to_dict
from ..data.loading import as_dataloader, batch_x, check_finite
from ..distributions.priors import Prior
from ..errors import CheckpointError, ConfigError, DataError, TrainingDivergedError
from ..io import (
    CHECKPOINT_FORMAT,
    atomic_save,
    checkpoint_to_dict,
    clean_temporaries,
    read_checkpoint,
)
from ..locking import FolderLock
from ..models.latent_variable_model import LatentVariableModel
from ..objectives import get_objective
from ..objectives.base import Objective
from ..precision import Precision, autocast, check_precision, check_terms
from ..schedules import beta_warmup, lr_warmup_factor
from ..seeding import derive_seed, seed_everything
from ..threads import resolve_threads, torch_threads
from .callbacks import Callback, ProgressBar

__all__ = ["CHECKPOINT_FORMAT", "INIT_EXAMPLES", "RESUME_SAFE_TRAIN_KEYS", "Trainer",
           "TrainerConfig", "changed_keys", "check_resume_trainer", "fit"]

#: How many training examples a fresh fit passes to ``model.initialize_from_data``.
INIT_EXAMPLES = 1000
#: A run that early stopping ends before this many gradient steps gets a warning saying so. Below
#: the paper's toy protocol on purpose (10,000 points per epoch at batch 128 are 79 steps, and with
#: warm-up 3 and patience 3 the earliest stop is epoch 7, 553 steps), so that its runs stay quiet
#: and only small data sets (a few thousand rows or fewer) are told.
FEW_STEPS = 500
#: Trainer options that a resume may change: they cannot change what the resumed epochs compute
#: (``epochs`` only upwards of the checkpoint's epoch; the other options only say where, how fast
#: and how visibly it runs, or how often it is checkpointed). Any other change is refused.
RESUME_SAFE_TRAIN_KEYS = ("epochs", "max_seconds", "device", "progress", "threads",
                          "checkpoint_every")


@dataclass
class TrainerConfig:
    """Options of :class:`Trainer` (defaults: the paper's Section 6 set-up).

    Attributes:
        epochs: maximum number of epochs.
        batch_size: training batch size (the paper: 128).
        eval_batch_size: batch size for the validation loss.
        lr: Adam learning rate (the paper: 1e-3).
        warmup_epochs: length W of the β and learning-rate warm-ups (the toy experiments: 3).
        lr_schedule: ``"warmup"`` ([37]) or ``"constant"``.
        patience: stop after more than this many epochs without improvement at β = 1
            (``None``: ``warmup_epochs``, the paper's rule).
        early_stopping: turn early stopping off to train all ``epochs`` (the best model is still kept).
        min_steps: early stopping may not end a run before it has made this many gradient steps
            (over all epochs, warm-up included); the run continues, still keeping the best model.
            ``patience`` counts epochs, so without this floor a data set of 124 rows (one batch per
            epoch) would stop after a dozen steps. The default, 200, cannot change a run of the
            paper's protocol: with warm-up 3 and patience 3 the earliest stop is after 7 epochs,
            which is ≥ 200 steps from 29 batches per epoch on (3,700 points at batch 128; the toy
            sweeps use 4,000-10,000, 32-79 batches). When early stopping ends a run before 500
            steps, a warning says so (raise ``min_steps`` or ``patience`` if it was too soon).
        max_seconds: optional wall-clock budget for training: no new epoch starts once the epochs so
            far (their ``seconds`` in the history, epochs before a resume included) add up to this
            many seconds. The epoch that crosses it finishes and is checkpointed, so a resume with a
            larger budget continues where it stopped. Like Lightning's ``max_time``; meant for runs
            that must fit a lease (a GPU machine, a queue slot).
        normalize_grads: L2-normalise each parameter's gradient before the Adam update (the image
            models' reference set-up).
        grad_clip: optional global gradient-norm clip.
        seed: seeds every epoch's randomness (batches, samples, binarisation).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
        checkpoint_every: write ``checkpoint.pt`` every this many epochs (needs an output folder).
        num_workers: DataLoader workers for array/Dataset inputs.
        progress: show a progress bar.
        init_from_data: a fresh fit (no checkpoint loaded) first calls
            ``model.initialize_from_data`` with the first up-to-1000 training examples, under a seed
            derived from ``seed`` (VampPrior pseudo-inputs start as training images, Appendix C);
            a resumed fit never does. Off: the model is trained as it is given.
        threads: torch CPU threads during ``fit`` (set with ``torch.set_num_threads`` and restored
            afterwards). ``None``: one thread for models under 100k parameters or on a busy
            machine, else up to 4 (the idle cores, at most ``torch.get_num_threads()``) — the toy
            models run up to 10× slower with 2 threads than with 1 on a shared 2-core machine
            (measurements and the rule in :mod:`torchmim.threads`).
        precision: ``"full"`` (the model's dtype throughout) or ``"bf16-mixed"``: each training
            step and the validation loss run under ``torch.autocast`` with bfloat16 — the networks'
            convolutions and matrix products in bfloat16, every log-density, the loss, the
            parameters and Adam's state in float32 (:mod:`torchmim.precision`). 1.7-2.0× faster
            image-model steps on a CPU with AVX512-BF16 (docs/benchmarks.md), with the rounding
            that bfloat16 brings. The validation loss (early stopping, the best model) runs in
            this precision; the metrics do not (the NLL has its own ``eval.nll_precision``).
            Toy MLPs gain nothing, and a sweep trains their bf16-mixed cells one by one (the
            vectorised groups are full precision).
    """

    epochs: int = 200
    batch_size: int = 128
    eval_batch_size: int = 1024
    lr: float = 1e-3
    warmup_epochs: int = 3
    lr_schedule: Literal["warmup", "constant"] = "warmup"
    patience: int | None = None
    early_stopping: bool = True
    min_steps: int = 200
    max_seconds: float | None = None
    normalize_grads: bool = False
    grad_clip: float | None = None
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 1
    num_workers: int = 0
    progress: bool = True
    init_from_data: bool = True
    threads: int | None = None
    precision: Precision = "full"

    def __post_init__(self) -> None:
        """Every option checked when the config is made (from YAML, ``-s`` or Python), with a
        one-line :class:`~torchmim.errors.ConfigError`: types (``epochs: '3'`` or ``2.5``), NaN
        and infinities, ranges and the device's spelling (not its presence: a config written
        for a GPU still loads on a CPU machine, to evaluate). ``epochs < warmup_epochs`` is
        allowed, a run that ends during the warm-up (a smoke test): no epoch reaches β = 1, so
        no model is selected and the last one is kept (``best_epoch`` is ``None``)."""
        from ..config import check_fields, check_number

        check_fields(self, "train")
        for name in ("epochs", "batch_size", "eval_batch_size", "checkpoint_every"):
            check_number(getattr(self, name), f"train.{name}", low=1, integer=True)
        check_number(self.lr, "train.lr", low=0, low_open=True)
        check_number(self.warmup_epochs, "train.warmup_epochs", low=0, integer=True)
        check_number(self.patience, "train.patience", low=0, integer=True, none=True)
        check_number(self.min_steps, "train.min_steps", low=0, integer=True)
        check_number(self.max_seconds, "train.max_seconds", low=0, low_open=True, none=True)
        check_number(self.grad_clip, "train.grad_clip", low=0, low_open=True, none=True)
        check_number(self.num_workers, "train.num_workers", low=0, integer=True)
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"train.seed must be an integer in [0, 2**32), got {self.seed} (a "
                              "run is seeded by its top-level 'seed')")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError):
                raise ConfigError(f"train.device must be 'cpu', 'cuda', 'cuda:N', 'mps' or "
                                  f"'auto', got {self.device!r}") from None
        if self.threads is not None:
            resolve_threads(self.threads, None, where="train.threads")

    @property
    def effective_patience(self) -> int:
        return self.warmup_epochs if self.patience is None else self.patience


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA if available, else CPU; other names are checked for availability."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"train.device: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available; use 'cpu' or 'auto'")
    return device


class Trainer:
    """Fits a :class:`~torchmim.models.LatentVariableModel` with an :class:`~torchmim.objectives.Objective`.

    >>> import torchmim as tm
    >>> x_train, _ = tm.paper_2d_mixture().sample(1024, seed=0)
    >>> model = tm.MLPModelConfig(hidden=8).build()
    >>> trainer = Trainer(model, tm.MIM(), TrainerConfig(epochs=4, warmup_epochs=3, progress=False))
    >>> history = trainer.fit(x_train)       # arrays, tensors, (x, y) tuples, Datasets, DataLoaders
    >>> [round(row["beta"], 2) for row in history]   # β warm-up (Eq. 18), then β = 1
    [0.33, 0.67, 1.0, 1.0]
    >>> trainer.best_epoch in (3, 4)                  # the best model is chosen once β = 1
    True

    With ``out_dir``, every epoch is checkpointed and ``fit(..., resume=True)`` continues from
    ``out_dir/checkpoint.pt``.

    Args:
        model: the model; moved to ``config.device``.
        objective: the loss.
        config: training options.
        callbacks: extra :class:`~torchmim.training.callbacks.Callback` objects (a progress bar is
            added when ``config.progress``).
        out_dir: folder for ``checkpoint.pt``; ``None`` writes no checkpoints.
        progress_desc: the progress bar's label (default: the objective's name).
    """

    def __init__(
        self,
        model: LatentVariableModel,
        objective: Objective,
        config: TrainerConfig | None = None,
        *,
        callbacks: Sequence[Callback] = (),
        out_dir: str | Path | None = None,
        progress_desc: str | None = None,
    ) -> None:
        if not isinstance(model, LatentVariableModel):
            raise ConfigError(f"Trainer: model must be a torchmim LatentVariableModel (e.g. "
                              f"MLPModelConfig().build()), got {type(model).__name__}")
        # a registry name or dict is accepted for the objective and a dict for the config, as in
        # RunConfig; anything else is refused here, not deep inside fit
        objective = get_objective(objective)
        if isinstance(config, Mapping):
            config = from_dict(TrainerConfig, config, where="train")
        if config is not None and not isinstance(config, TrainerConfig):
            raise ConfigError(f"Trainer: config must be a TrainerConfig or a dict of its options, "
                              f"got {type(config).__name__}")
        self.config = config or TrainerConfig()
        check_precision(model, self.config.precision)
        self.device = resolve_device(self.config.device)
        self.model = model.to(self.device)
        self.objective = objective
        self.callbacks = list(callbacks)
        if self.config.progress and not any(isinstance(c, ProgressBar) for c in self.callbacks):
            self.callbacks.insert(0, ProgressBar(desc=progress_desc or objective.name))
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self.epoch = 0  # last finished epoch
        self.history: list[dict[str, Any]] = []
        self.best_val = math.inf
        self.best_epoch: int | None = None
        self.best_state: dict[str, Tensor] | None = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.steps = 0  # gradient steps so far (resumed epochs included)
        self.initialized_from_data = False
        self.batches_per_epoch: int | None = None
        self.saved_epoch: int | None = None  # the epoch of the checkpoint on disk, if any
        self._generator = torch.Generator()

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / "checkpoint.pt" if self.out_dir is not None else None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: weights, optimiser, best model, counters, history."""
        return checkpoint_to_dict(
            self.model, epoch=self.epoch, optimizer=self.optimizer.state_dict(),
            best_state=self.best_state, best_val=self.best_val, best_epoch=self.best_epoch,
            bad_epochs=self.bad_epochs, stopped_early=self.stopped_early, history=self.history,
            objective=to_dict(self.objective), trainer=to_dict(self.config))

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write the checkpoint atomically (to ``out_dir/checkpoint.pt`` by default)."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ConfigError("no checkpoint path: pass one or give the Trainer an out_dir")
        atomic_save(self.state_dict(), path)
        if path == self.checkpoint_path:
            self.saved_epoch = self.epoch
        return path

    def _kept(self) -> str:
        """What a divergence leaves on disk, truthfully."""
        if self.checkpoint_path is None:
            return "no checkpoint is written (the trainer has no out_dir)"
        if self.saved_epoch is None:
            return f"no checkpoint was written yet (none in {self.out_dir})"
        return (f"the last good checkpoint (epoch {self.saved_epoch}) was left intact at "
                f"{self.checkpoint_path}")

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore the state written by :meth:`save_checkpoint`."""
        ckpt = read_checkpoint(path, map_location=self.device)
        saved_objective = ckpt["objective"]
        if saved_objective != to_dict(self.objective):
            raise CheckpointError(f"{path} was written by objective {saved_objective}, but this "
                                  f"trainer runs {to_dict(self.objective)}")
        check_resume_trainer(ckpt["trainer"], to_dict(self.config), int(ckpt["epoch"]),
                             source=str(path))
        if (ckpt["model_config"] is not None and self.model.config is not None
                and ckpt["model_config"] != to_dict(self.model.config)):
            keys = changed_keys(ckpt["model_config"], to_dict(self.model.config))
            raise CheckpointError(f"{path} was written by another model (changed: "
                                  f"{', '.join(keys)}); resume it with the model it was run with")
        try:
            self.model.load_state_dict(ckpt["model_state"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{path} does not match this model: {str(e).splitlines()[0]}") from None
        self.epoch = int(ckpt["epoch"])
        self.best_state = ckpt["best_state"]
        self.best_val = float(ckpt["best_val"])
        self.best_epoch = ckpt["best_epoch"]
        self.bad_epochs = int(ckpt["bad_epochs"])
        self.stopped_early = bool(ckpt["stopped_early"])
        self.history = list(ckpt["history"])
        self.steps = int(self.history[-1].get("steps", 0)) if self.history else 0
        if Path(path) == self.checkpoint_path:
            self.saved_epoch = self.epoch

    # ------------------------------------------------------------------ data
    def _loader(self, data: Any, *, train: bool, name: str) -> tuple[DataLoader, bool]:
        cfg = self.config
        return as_dataloader(
            data, batch_size=cfg.batch_size if train else cfg.eval_batch_size, shuffle=train,
            generator=self._generator if train else None, num_workers=cfg.num_workers, name=name,
        )

    def _prepare(self, batch: Any, checked: bool, name: str, step: int) -> Tensor:
        x = batch_x(batch)
        if not isinstance(x, Tensor):
            raise DataError(f"{name} batch {step} is a {type(x).__name__}, not a tensor")
        dtype = next(self.model.parameters()).dtype
        x = x.to(self.device, dtype=dtype, non_blocking=True)
        self.model.check_x(x, name=f"{name} batch {step}")
        if not checked:
            check_finite(x, name=f"{name} batch {step}")
        return x

    @staticmethod
    def _set_epoch(loader: DataLoader, epoch: int) -> None:
        for obj in (loader.dataset, loader.sampler, getattr(loader, "batch_sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)

    # ------------------------------------------------------------------ loss evaluation
    @torch.no_grad()
    def evaluate_loss(self, data: Any, *, beta: float = 1.0, seed: int | None = None) -> float:
        """Mean objective over ``data`` at ``beta`` (the validation loss uses β = 1)."""
        loader, checked = self._loader(data, train=False, name="validation data")
        if seed is not None:
            seed_everything(seed)
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        for step, batch in enumerate(loader):
            x = self._prepare(batch, checked, "validation data", step)
            with autocast(self.config.precision, self.device):
                loss = self.objective(self.model, x, beta).loss
            total += float(loss) * x.shape[0]
            count += x.shape[0]
        self.model.train(was_training)
        return total / max(count, 1)

    # ------------------------------------------------------------------ training
    def _train_epoch(self, loader: DataLoader, checked: bool, epoch: int, beta: float) -> dict[str, float]:
        cfg = self.config
        self.model.train()
        sums: dict[str, float] = {}
        count = 0
        for step, batch in enumerate(loader):
            x = self._prepare(batch, checked, "training data", step)
            with autocast(cfg.precision, self.device):
                out = self._batch_loss(x, beta)
            if step == 0 and cfg.precision != "full":
                check_terms(out.terms, cfg.precision)
            if not torch.isfinite(out.loss):
                bad = {k: v for k, v in out.scalars().items() if not math.isfinite(v)}
                raise TrainingDivergedError(
                    f"non-finite loss at epoch {epoch}, batch {step} (β={beta:.3g}): {bad}; "
                    f"{self._kept()}; try a lower learning rate, a larger std_floor or a "
                    "logvar_clamp")
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if cfg.normalize_grads:
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad.div_(p.grad.norm().clamp_min(1e-12))
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.steps += 1
            logs = out.scalars()
            n = x.shape[0]
            count += n
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v * n
            for cb in self.callbacks:
                cb.on_batch_end(self, step, logs)
        return self._epoch_means(sums, count)

    # Hooks of a data-parallel trainer (torchmim.training.distributed), plain here.
    def _batch_loss(self, x: Tensor, beta: float) -> Any:
        """The objective on one training batch (``.loss`` to backpropagate, ``.scalars()``)."""
        return self.objective(self.model, x, beta)

    def _epoch_means(self, sums: dict[str, float], count: int) -> dict[str, float]:
        """An epoch's logs: the example-weighted ``sums`` of the batches' scalars over ``count``."""
        if count == 0:
            raise DataError("the training data produced no batches")
        return {k: v / count for k, v in sums.items()}

    def fit(
        self, train_data: Any, val_data: Any = None, *, resume: bool | str | Path = False
    ) -> list[dict[str, Any]]:
        """Train until ``config.epochs`` or early stopping; returns the per-epoch history.

        Args:
            train_data: array/tensor ``(N, *x_shape)``, tuple ``(x, y)``, Dataset or DataLoader.
            val_data: the same kinds; without it, early stopping watches the training loss at β = 1.
            resume: ``True`` continues from ``out_dir/checkpoint.pt`` if it exists; a path continues
                from that checkpoint (which must exist).
        """
        lock = FolderLock(self.out_dir, what="run folder") if self.out_dir is not None else None
        if lock is not None:
            lock.acquire()  # one writer per folder (re-entrant: run() already holds it)
        try:
            return self._fit(train_data, val_data, resume)
        finally:
            if lock is not None:
                lock.release()

    def _fit(self, train_data: Any, val_data: Any, resume: bool | str | Path
             ) -> list[dict[str, Any]]:
        cfg = self.config
        keep_freed_memory()  # glibc: keep freed activation buffers for the next step (issue 11)
        threads = resolve_threads(cfg.threads, self.model, where="train.threads")
        if self.out_dir is not None:
            clean_temporaries(self.out_dir)  # of atomic writes a crash interrupted (we hold the lock)
        loaded = False
        if resume:
            path = self.checkpoint_path if resume is True else Path(resume)
            if path is None:
                raise ConfigError("resume=True needs the Trainer's out_dir")
            if resume is not True or path.exists():
                self.load_checkpoint(path)
                loaded = True
        train_loader, train_checked = self._loader(train_data, train=True, name="training data")
        try:
            self.batches_per_epoch = len(train_loader)
        except TypeError:
            self.batches_per_epoch = None
        if loaded and self.history and "steps" not in self.history[-1]:  # an older checkpoint
            self.steps = self.epoch * (self.batches_per_epoch or 0)
        with torch_threads(threads):
            if (cfg.init_from_data and not loaded and self.epoch == 0
                    and not self.initialized_from_data):
                self.initialize_from_data(train_data)
            for cb in self.callbacks:
                cb.on_fit_start(self)
            try:
                while self.epoch < cfg.epochs and not self.stopped_early and not self.out_of_time:
                    self._run_epoch(self.epoch + 1, train_loader, train_checked, val_data)
            finally:
                for cb in self.callbacks:
                    cb.on_fit_end(self)
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.history

    def initialize_from_data(self, train_data: Any) -> None:
        """``model.initialize_from_data`` with the first up-to-:data:`INIT_EXAMPLES` training
        examples (in data order, not shuffled), seeded from ``config.seed``; called once by a fresh
        :meth:`fit`. Nothing is read when no part of the model defines the hook."""
        self.initialized_from_data = True
        if not _has_data_init(self.model):
            return
        if isinstance(train_data, DataLoader):
            loader, checked = train_data, False
        else:  # a data set may serve other values for initialisation (grey levels of images)
            train_data = getattr(train_data, "initialization_data", lambda: train_data)()
            loader, checked = as_dataloader(train_data, batch_size=INIT_EXAMPLES, shuffle=False,
                                            name="training data")
        seed_everything(derive_seed(self.config.seed, "init_examples"))  # a shuffling loader
        parts, count = [], 0
        for step, batch in enumerate(loader):
            x = self._prepare(batch, checked, "training data", step)
            parts.append(x[: INIT_EXAMPLES - count])
            count += parts[-1].shape[0]
            if count >= INIT_EXAMPLES:
                break
        if not parts:
            raise DataError("the training data produced no batches")
        seed_everything(derive_seed(self.config.seed, "init_from_data"))
        self.model.initialize_from_data(torch.cat(parts))

    @property
    def elapsed_seconds(self) -> float:
        """Training time so far: the sum of the history's epoch times (resumed epochs included)."""
        return float(sum(h.get("seconds", 0.0) for h in self.history))

    @property
    def out_of_time(self) -> bool:
        """Whether ``config.max_seconds`` is set and spent (no further epoch will start)."""
        return self.config.max_seconds is not None and self.elapsed_seconds >= self.config.max_seconds

    def _run_epoch(self, epoch: int, loader: DataLoader, checked: bool, val_data: Any) -> None:
        cfg = self.config
        seed_everything(derive_seed(cfg.seed, "epoch", epoch))
        self._generator.manual_seed(derive_seed(cfg.seed, "shuffle", epoch))
        self._set_epoch(loader, epoch)
        beta = beta_warmup(epoch, cfg.warmup_epochs) if self.objective.uses_beta else 1.0
        lr = cfg.lr * (lr_warmup_factor(epoch, cfg.warmup_epochs) if cfg.lr_schedule == "warmup" else 1.0)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
        start = time.perf_counter()
        train_logs = self._train_epoch(loader, checked, epoch, beta)
        if val_data is not None:
            val_loss = self.evaluate_loss(val_data, beta=1.0, seed=derive_seed(cfg.seed, "val", epoch))
        else:
            val_loss = train_logs["loss"] if beta >= 1.0 else math.nan
        # A non-finite validation loss is divergence in warm-up too (it must never become a
        # checkpoint); without validation data the warm-up's placeholder is NaN by design.
        if not math.isfinite(val_loss) and (beta >= 1.0 or val_data is not None):
            raise TrainingDivergedError(f"non-finite validation loss {val_loss} at epoch {epoch} "
                                        f"(β={beta:.3g}); {self._kept()}")
        # Early stopping and best-model selection only once β = 1 (the counter is idle in warm-up).
        improved, stopped = select_and_stop(
            self, val_loss, epoch, cfg, selecting=beta >= 1.0 or not self.objective.uses_beta,
            snapshot=lambda: copy.deepcopy(self.model.state_dict()))
        if stopped and self.steps < FEW_STEPS:
            warnings.warn(
                f"early stopping ended training at epoch {epoch} after only {self.steps} "
                f"gradient steps ({self.steps // epoch} per epoch): the validation loss at "
                f"β = 1 did not improve for {self.bad_epochs} epochs (patience "
                f"{cfg.effective_patience}); if the model is under-trained, raise "
                "train.min_steps or train.patience, or set train.early_stopping=false",
                UserWarning, stacklevel=2)
        self.epoch = epoch
        logs = {"epoch": epoch, "beta": beta, "lr": lr, "train_loss": train_logs.pop("loss"),
                "val_loss": val_loss, "best": improved, "steps": self.steps,
                "seconds": time.perf_counter() - start}
        logs.update({f"train/{k}": v for k, v in train_logs.items()})
        self.history.append(logs)
        if self.checkpoint_path is not None and (epoch % cfg.checkpoint_every == 0 or
                                                 self.stopped_early or epoch == cfg.epochs or
                                                 self.out_of_time):
            self.save_checkpoint()
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, logs)



def select_and_stop(state: Any, val_loss: float, epoch: int, cfg: TrainerConfig, *, selecting: bool,
                    snapshot: Callable[[], dict[str, Tensor]]) -> tuple[bool, bool]:
    """One epoch of best-model selection and early stopping, the rule shared by :class:`Trainer` and
    the vectorised trainer's members (``state`` has ``best_val``, ``best_epoch``, ``best_state``,
    ``bad_epochs``, ``steps`` and ``stopped_early``).

    Only while ``selecting`` (β = 1, or an objective without β): a lower ``val_loss`` becomes the
    best (its weights taken by ``snapshot()``), otherwise the patience counter grows; training stops
    once it exceeds the patience and at least ``cfg.min_steps`` gradient steps were made. Returns
    (whether this epoch is the new best, whether it stopped training).
    """
    if not selecting:
        return False, False
    improved = val_loss < state.best_val
    if improved:
        state.best_val, state.best_epoch, state.bad_epochs = val_loss, epoch, 0
        state.best_state = snapshot()
    else:
        state.bad_epochs += 1
    stopped = (cfg.early_stopping and state.bad_epochs > cfg.effective_patience
               and state.steps >= cfg.min_steps)
    if stopped:
        state.stopped_early = True
    return improved, stopped

def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested dicts (added and removed ones too)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix.rstrip(".") or "(value)"]
    keys = []
    for k in list(old) + [k for k in new if k not in old]:
        if k not in old or k not in new:
            keys.append(f"{prefix}{k}")
        else:
            keys += changed_keys(old[k], new[k], f"{prefix}{k}.")
    return keys


def check_resume_trainer(saved: dict[str, Any], new: dict[str, Any], epoch: int, *,
                         source: str, prefix: str = "") -> list[str]:
    """Refuse (:class:`~torchmim.errors.CheckpointError`, one line naming the keys) a resume whose
    trainer options differ from the checkpoint's ``saved`` ones in anything but
    :data:`RESUME_SAFE_TRAIN_KEYS`, or whose ``epochs`` is below the checkpoint's ``epoch``.
    Returns the changed safe keys."""
    defaults = to_dict(TrainerConfig())  # an option newer than the checkpoint: its default is safe
    changed = [k for k in changed_keys(saved, new)
               if not (k not in saved and k in defaults and new.get(k) == defaults[k])]
    unsafe = [k for k in changed if k not in RESUME_SAFE_TRAIN_KEYS]
    if unsafe:
        raise CheckpointError(
            f"{source} was trained with other options: "
            + ", ".join(f"{prefix}{k} {saved.get(k)!r} -> {new.get(k)!r}" for k in unsafe)
            + "; a resume may only change " + ", ".join(prefix + k for k in RESUME_SAFE_TRAIN_KEYS)
            + " (start a new run for the others)")
    if "epochs" in new and new["epochs"] < epoch:
        raise CheckpointError(f"{source} has already trained {epoch} epochs, more than "
                              f"{prefix}epochs={new['epochs']}; a resume may raise the epoch "
                              "budget, not cut it below what was trained")
    return changed


def _has_data_init(model: LatentVariableModel) -> bool:
    """Whether ``model.initialize_from_data`` would do anything: the model or one of its modules
    has a hook other than the do-nothing defaults (so that a model without one reads no data)."""
    no_ops = {LatentVariableModel.initialize_from_data, Prior.initialize_from_data}
    return any(getattr(type(m), "initialize_from_data", None) not in (None, *no_ops)
               for m in model.modules())


def fit(
    model: LatentVariableModel,
    objective: Objective,
    train_data: Any,
    val_data: Any = None,
    *,
    config: TrainerConfig | None = None,
    callbacks: Iterable[Callback] = (),
    out_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    progress_desc: str | None = None,
) -> list[dict[str, Any]]:
    """Functional shortcut for ``Trainer(model, objective, config, ...).fit(train_data, val_data)``."""
    trainer = Trainer(model, objective, config, callbacks=list(callbacks), out_dir=out_dir,
                      progress_desc=progress_desc)
    return trainer.fit(train_data, val_data, resume=resume)
