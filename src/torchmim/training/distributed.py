"""Data-parallel training of one model with PyTorch DistributedDataParallel (``torchrun``).

``torchrun --nproc-per-node N -m torchmim train CONFIG --out DIR`` starts N processes; each finds
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in its environment (:func:`torchrun_env`) and the ``train``
command hands the run to :func:`run_distributed`:

* the process group uses gloo on CPU and nccl on GPU (each process on ``cuda:LOCAL_RANK``);
* ``train.batch_size`` is the *global* batch: every process takes ``batch_size / N`` examples
  of it (a size that N does not divide is a one-line :class:`~torchmim.errors.ConfigError` before
  any work). The batches are those of a single-process run: one permutation of the training set
  per epoch, seeded as :class:`~torchmim.training.trainer.Trainer` seeds it, cut into global
  batches of ``batch_size``; process r takes the examples r, r + N, r + 2N, ... of each global
  batch (:class:`GlobalBatchSampler`, a ``DistributedSampler`` whose ``set_epoch`` the trainer
  calls every epoch). The objectives are per-example means, so the average of the N processes'
  gradients (what DDP computes) is the gradient of the global batch; a last, smaller global batch
  weights each process's loss by its share of the examples, so that holds there too;
* the epoch's training logs and the validation loss (over shards of the validation set) are
  all-reduced, so every process takes the same early-stopping decisions;
* rank 0 alone writes the run folder (config, checkpoints, history, model, metrics) and evaluates
  the model; the other processes read the checkpoint to resume, and wait at a barrier at the end
  of every epoch (after rank 0's checkpoint);
* a resumed run continues exactly: the epochs are seeded from (seed, epoch) as in one process.

The run folder is the same as a single-process run's. What is not the same: the objective's own
noise (z ∼ q(z|x), the decoder path's samples) is drawn per process, so a stochastic objective
gives the single-process result within seed noise, not bit for bit; a deterministic one (``ae``)
gives it to float rounding (tests/test_distributed.py). Batch norm (PixelHVAE's PixelCNN) is made
``SyncBatchNorm`` on GPUs, so its statistics are the global batch's; on CPU (where torch has no
``SyncBatchNorm``) each process normalises over its own share.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from ..data.loading import as_dataloader
from ..errors import ConfigError
from .trainer import Trainer, TrainerConfig, resolve_device

__all__ = ["DistributedTrainer", "GlobalBatchSampler", "check_global_batch", "run_distributed",
           "torchrun_env"]


def torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` when this process was started by ``torchrun`` (its
    ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` variables are set), else ``None``."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    if not all(n in os.environ for n in names):
        return None
    try:
        rank, world, local = (int(os.environ[n]) for n in names)
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (as torchrun sets "
                          "them)") from None
    return rank, world, local


def check_global_batch(batch_size: int, world_size: int, *, where: str = "train.batch_size"
                       ) -> int:
    """The per-process batch of a global ``batch_size`` over ``world_size`` processes; a one-line
    :class:`~torchmim.errors.ConfigError` when it does not divide."""
    if batch_size % world_size:
        raise ConfigError(
            f"{where}={batch_size} is the global batch and must divide among the {world_size} "
            f"processes; use a multiple of {world_size} (e.g. "
            f"{max(world_size, batch_size - batch_size % world_size)})")
    return batch_size // world_size


class GlobalBatchSampler(DistributedSampler):
    """This process's share of the global batches of a single-process epoch.

    Each epoch draws ``torch.randperm(n, generator=generator)`` (the permutation a single-process
    ``RandomSampler`` draws from the same generator), cuts it into global batches of
    ``batch_size`` and yields, per global batch, the index list of examples ``rank, rank + N,
    ...`` of it (interleaved shards). A process whose share of a last, short global batch is empty
    gets the batch's first example, to be weighted zero (:meth:`share`), so that every process
    makes the same number of steps. ``shuffle=False``: the data's order (validation shards use
    :func:`_shard_batches` instead).
    """

    def __init__(self, n: int, batch_size: int, *, rank: int, world_size: int,
                 generator: torch.Generator | None, shuffle: bool = True) -> None:
        super().__init__(range(n), num_replicas=world_size, rank=rank, shuffle=shuffle,
                         drop_last=False)
        self.n, self.batch_size, self.generator = n, batch_size, generator

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def share(self, step: int) -> tuple[int, int]:
        """(this process's examples, the global batch's examples) at ``step`` of an epoch."""
        total = min(self.batch_size, self.n - step * self.batch_size)
        return len(range(self.rank, total, self.num_replicas)), total

    def __iter__(self) -> Iterator[list[int]]:  # type: ignore[override]
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).tolist()
        else:
            order = list(range(self.n))
        for start in range(0, self.n, self.batch_size):
            batch = order[start:start + self.batch_size]
            mine = batch[self.rank::self.num_replicas]
            yield mine or batch[:1]


def _shard_batches(n: int, batch_size: int, rank: int, world_size: int) -> list[list[int]]:
    """Contiguous shard ``rank`` of ``range(n)`` in batches of ``batch_size`` (validation)."""
    lo, hi = n * rank // world_size, n * (rank + 1) // world_size
    return list(BatchSampler(range(lo, hi), batch_size, drop_last=False))


def _loader_like(base: DataLoader, batches: Any) -> DataLoader:
    """A loader over ``base``'s dataset that fetches the index lists ``batches`` yields, the way
    ``base`` fetches (whole-batch indexing, or per example and collation)."""
    if base.batch_size is None:  # torchmim's whole-batch indexing (data.loading._batched_loader)
        return DataLoader(base.dataset, batch_size=None, sampler=batches,
                          collate_fn=base.collate_fn, num_workers=base.num_workers)
    return DataLoader(base.dataset, batch_sampler=batches, num_workers=base.num_workers)


class _ObjectiveModule(nn.Module):
    """The objective on the model as one ``forward``, so DDP sees the whole computation (the
    objectives call ``posterior``, ``likelihood`` and ``prior``, not ``model.forward``)."""

    def __init__(self, model: nn.Module, objective: Any) -> None:
        super().__init__()
        self.model, self.objective = model, objective
        self.output: Any = None

    def forward(self, x: Tensor, beta: float) -> Tensor:
        self.output = self.objective(self.model, x, beta)
        return self.output.loss


@dataclasses.dataclass
class _Share:
    """A process's part of a global batch: ``loss`` weighted for DDP's gradient averaging,
    ``scalars()`` the local batch's own values (zero for a padding example)."""

    loss: Tensor
    logs: dict[str, float]
    terms: dict[str, Any]  # the local batch's per-sample terms (the trainer checks their dtype)

    def scalars(self) -> dict[str, float]:
        return self.logs


class DistributedTrainer(Trainer):
    """A :class:`~torchmim.training.trainer.Trainer` for one process of a data-parallel run (the
    process group must be initialised). Rank 0 keeps its callbacks and ``out_dir`` and writes the
    checkpoints; other ranks get neither (pass ``checkpoint_dir`` so that they resume from rank
    0's checkpoint). Train data must be arrays, tensors or a Dataset (not a DataLoader: the
    trainer shards the batches itself)."""

    def __init__(self, model: Any, objective: Any, config: TrainerConfig | None = None, *,
                 checkpoint_dir: str | Path | None = None, **kwargs: Any) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise ConfigError("DistributedTrainer needs an initialised torch.distributed process "
                              "group (start the run with torchrun)")
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        config = config or TrainerConfig()
        self.local_batch = check_global_batch(config.batch_size, self.world_size)
        if self.rank != 0:  # no files, no progress bar, no loggers
            config = dataclasses.replace(config, progress=False)
            kwargs.update(callbacks=(), out_dir=None)
        super().__init__(model, objective, config, **kwargs)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else self.out_dir
        self._ddp: nn.Module | None = None
        self._sampler: GlobalBatchSampler | None = None
        self._step = 0
        self._examples = 0
        self._val_count = 0

    # ------------------------------------------------------------------ data
    def _loader(self, data: Any, *, train: bool, name: str) -> tuple[DataLoader, bool]:
        if isinstance(data, DataLoader):
            raise ConfigError(f"a data-parallel run shards the batches itself: pass the {name} as "
                              "an array, tensor or Dataset, not a DataLoader")
        base, checked = as_dataloader(data, batch_size=self.config.batch_size, shuffle=False,
                                      num_workers=self.config.num_workers, name=name)
        n = len(base.dataset)  # type: ignore[arg-type]
        if train:
            self._sampler = GlobalBatchSampler(n, self.config.batch_size, rank=self.rank,
                                               world_size=self.world_size,
                                               generator=self._generator)
            return _loader_like(base, self._sampler), checked
        batches = _shard_batches(n, self.config.eval_batch_size, self.rank, self.world_size)
        self._val_count = sum(len(b) for b in batches)
        return _loader_like(base, batches), checked

    # ------------------------------------------------------------------ reductions
    def _all_reduce(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self._reduce_device)
        dist.all_reduce(t)
        return t.tolist()

    @property
    def _reduce_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    @torch.no_grad()
    def evaluate_loss(self, data: Any, *, beta: float = 1.0, seed: int | None = None) -> float:
        """Mean objective over ``data``, each process taking a contiguous shard (all-reduced)."""
        local = super().evaluate_loss(data, beta=beta, seed=seed)
        total, count = self._all_reduce([local * self._val_count, float(self._val_count)])
        return total / max(count, 1.0)

    # ------------------------------------------------------------------ training hooks
    def _batch_loss(self, x: Tensor, beta: float) -> _Share:
        if self._ddp is None:  # after the data initialisation and any checkpoint load
            if self.device.type == "cuda":  # batch norm over the global batch (GPU only)
                nn.SyncBatchNorm.convert_sync_batchnorm(self.model)  # in place, same parameters
            module = _ObjectiveModule(self.model, self.objective)
            ids = [torch.cuda.current_device()] if self.device.type == "cuda" else None
            # an objective may leave parameters out (ae: the prior's), warm-ups change the graph
            self._ddp = nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                                            find_unused_parameters=True)
        assert self._sampler is not None
        mine, total = self._sampler.share(self._step)
        self._step += 1
        loss = self._ddp(x, beta)
        logs = self._ddp.module.output.scalars()
        if mine == 0:  # padding: a zero-weight example, so that every process steps
            logs = {k: 0.0 for k in logs}
        self._examples += mine
        # DDP averages the N gradients; weights N·n_r/n make that the global batch's mean
        return _Share(loss * (self.world_size * mine / total), logs,
                      self._ddp.module.output.terms)

    def _train_epoch(self, loader: DataLoader, checked: bool, epoch: int, beta: float
                     ) -> dict[str, float]:
        self._step, self._examples = 0, 0
        return super()._train_epoch(loader, checked, epoch, beta)

    def _epoch_means(self, sums: dict[str, float], count: int) -> dict[str, float]:
        keys = sorted(sums)
        reduced = self._all_reduce([sums[k] for k in keys] + [float(self._examples)])
        return super()._epoch_means(dict(zip(keys, reduced[:-1])), int(reduced[-1]))

    def _run_epoch(self, epoch: int, loader: DataLoader, checked: bool, val_data: Any) -> None:
        super()._run_epoch(epoch, loader, checked, val_data)
        # rank 0's epoch time for every process, so that train.max_seconds stops them together
        seconds = [float(self.history[-1]["seconds"]) if self.rank == 0 else 0.0]
        self.history[-1]["seconds"] = self._all_reduce(seconds)[0]
        dist.barrier()  # rank 0 has written the epoch's checkpoint

    # ------------------------------------------------------------------ fit
    def fit(self, train_data: Any, val_data: Any = None, *, resume: bool | str | Path = False
            ) -> list[dict[str, Any]]:
        """:meth:`Trainer.fit` on every process; ``resume=True`` on ranks other than 0 reads
        rank 0's ``checkpoint.pt`` in ``checkpoint_dir`` (when it exists)."""
        dist.barrier()  # rank 0 has prepared the run folder
        if self.rank != 0 and resume is True:
            path = self.checkpoint_dir / "checkpoint.pt" if self.checkpoint_dir else None
            resume = path if path is not None and path.is_file() else False
        try:
            return super().fit(train_data, val_data, resume=resume)
        finally:
            self._ddp = None  # a second stage wraps the model anew (the old wrapper's hooks
            gc.collect()  # stay idle without its forward; freed here with its buffers)


def _follow(config: Any, out: Path | None, resume: bool) -> None:
    """What a process other than rank 0 does in :func:`run_distributed`: the data and model of
    :func:`torchmim.runs.run` (same seeds), and the same training stages, writing nothing."""
    from ..runs import _prepare_run, _train_configs

    data, model = _prepare_run(config)
    model.data_transform = data.transform
    init_cfg, train_cfg = _train_configs(config, False)
    if config.init is not None:
        DistributedTrainer(model, config.init.objective, init_cfg,
                           checkpoint_dir=None if out is None else out / "init"
                           ).fit(data.train, data.val[0], resume=resume)
    DistributedTrainer(model, config.objective, train_cfg, checkpoint_dir=out
                       ).fit(data.train, data.val[0], resume=resume)


def run_distributed(config: Any, out_dir: str | Path | None, *, resume: bool = False,
                    overwrite: bool = False, progress: bool | None = None) -> Any:
    """:func:`torchmim.runs.run` as one process of a ``torchrun`` job: rank 0 runs it (writing
    the folder and evaluating) with a :class:`DistributedTrainer`; the other ranks train with it
    and return ``None``. Initialises the process group (gloo on CPU, nccl on GPU) and destroys it
    at the end. Checks the global batch first (a one-line ConfigError on every process)."""
    from ..runs import run

    env = torchrun_env()
    if env is None:
        raise ConfigError("run_distributed needs torchrun's RANK, WORLD_SIZE and LOCAL_RANK")
    rank, world, local = env
    check_global_batch(config.train.batch_size, world)
    device = resolve_device(config.train.device)
    if device.type == "cuda":
        if device.index is not None and world > 1:
            raise ConfigError(f"train.device={config.train.device!r} puts every process on one "
                              "GPU; use 'cuda' or 'auto' (process r runs on cuda:LOCAL_RANK)")
        torch.cuda.set_device(local)  # "cuda" now means this process's GPU
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    try:
        if rank == 0:
            return run(config, out_dir, resume=resume, overwrite=overwrite, progress=progress,
                       trainer_class=DistributedTrainer)
        _follow(config, None if out_dir is None else Path(out_dir), resume)
        return None
    finally:
        dist.destroy_process_group()
