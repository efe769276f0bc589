"""Many small models of one shape trained as one batched computation (issue 11).

The paper's low-dimensional sweeps train hundreds of tiny MLPs (Fig. 3: 8 widths × {MIM, VAE} × 10
seeds of a 2-50-4 network); one at a time, a step is a dozen tiny kernels and most of its time is
Python and per-op overhead. :class:`VectorizedTrainer` stacks the weights of M same-shape members on
a leading dimension and runs every layer of all members as one ``torch.baddbmm``, so one step costs
about as many kernel launches as one model's step.

Why hand-written stacked layers and not ``torch.func.vmap`` over the library's objectives: vmap with
independent noise per member cannot run them (``torch.distributions`` draws with ``empty().normal_()``
on an unbatched tensor, which ``vmap(randomness="different")`` refuses), and with shared noise it was
1.6× slower than the stacked ``baddbmm`` step (20 members, width 50; docs/benchmarks.md). Writing the
Gaussian terms out also lets every member draw its noise from its own generator in the single
trainer's order, so a member reproduces the run that :class:`~torchmim.training.Trainer` would make
with the same seed (see below).

What is per member, as in :class:`~torchmim.training.Trainer` with the member's seed:

* data: the member's own training and validation sets (each run's seed draws its own data); the
  training points of epoch e are shuffled by a generator seeded from (seed, "shuffle", e);
* noise: a generator seeded from (seed, "epoch", e) draws, per batch, the encoder sample, then (MIM's
  decoder path) the anchor sample and the decoder sample — the order and the streams of the single
  trainer, including the one number each DataLoader iterator takes from the global generator; the
  validation loss is seeded from (seed, "val", e);
* the objective (any of :data:`PER_SAMPLE` — MIM, A-MIM, VAE, CE and the Appendix D.1 variants
  VAE + H and MIM − H — may share a group) and hence β (Eq. 18);
* Adam: elementwise, so one update over the stacked tensors is M independent updates (its step
  counter is shared: members that train together have made the same number of steps);
* early stopping and best-model selection; a stopped member leaves the stack (its updates stop);
* checkpoints: each member's ``checkpoint.pt`` has the single trainer's format (a plain ``Trainer``
  can resume it), and ``history.csv`` is rewritten from the checkpoint's history.

Latent sizes may differ (Fig. 4 and 5 vary ``model.z_dim`` at one width): the stack has the
group's largest latent size and a smaller member is zero-padded into it — its weights are
initialised as its own run's (its own shapes) and padded with zeros in the encoder's output rows of
the padded means and log-variances and in the decoder's input columns of the padded coordinates.
Its noise over z is drawn with its own size from its own generator (the same stream as alone) and
padded with zeros, so z's padded coordinates are exactly 0, and every log-density over z sums its
real coordinates only (a mask). The padded weights then get exactly zero gradients, Adam (no
weight decay) leaves them at exactly zero, and the member trains as alone up to the summation order
of the wider products and sums. Its checkpoints and models are sliced back to its own shapes.

Members resumed from checkpoints of different epochs (a group interrupted while it wrote them) train
in cohorts of equal epoch until they meet. What differs from the single trainer: the stacked matrix
products and batch means may sum in another order (differences of float rounding, ~1e-7 relative),
and an epoch's ``seconds`` is the member's share (1/M) of the group's epoch.

Supported: the ``mlp`` model with Gaussian encoder and decoder, p(z) = N(0, I), the marginal q(x) of
Eq. (16) (the paper's toy set-up; any width, depth, activation, std floor and log-variance clamp),
the objectives of :data:`PER_SAMPLE`, without per-tensor gradient normalisation or clipping
(they would couple members) and without a time budget. :func:`unsupported_reason` says why a run
config is not.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.optim.adam import adam as _adam
from torch.utils.data import Dataset, TensorDataset

from ..allocator import keep_freed_memory
from ..config import to_dict
from ..data.loading import as_tensor, batch_x, check_finite
from ..data.toy import ResampledMixtureDataset
from ..errors import CheckpointError, ConfigError, DataError, TorchMIMError, TrainingDivergedError
from ..fast_paths import FAST_PATHS
from ..io import atomic_save, checkpoint_to_dict, read_checkpoint
from ..models.latent_variable_model import JointTerms, LatentVariableModel
from ..networks import ACTIVATIONS, affine, fold_tanh, native_group_mlp
from ..objectives.base import Objective
from ..objectives.cross_entropy import ce_per_sample
from ..objectives.mim import mim_per_sample
from ..schedules import beta_warmup, lr_warmup_factor
from ..seeding import derive_seed
from ..threads import SMALL_MODEL_PARAMETERS, default_threads, resolve_threads, torch_threads
from .trainer import FEW_STEPS, TrainerConfig, _has_data_init, resolve_device, select_and_stop

if TYPE_CHECKING:  # pragma: no cover
    from ..runs import RunConfig, RunResult

__all__ = ["VectorizedTrainer", "group_key", "run_group", "unsupported_reason"]


#: Narrowest hidden layer whose group MLPs train in torchmim.native's kernels: a fig3 group's
#: step (loss and gradients, 20 members) measured 1.20× at width 50 up to 1.66× at 500, but
#: 0.97–1.08× at widths 5–20, where the calls' own overhead matches torch's few small ops
#: (``bench/native_group_step.py``, docs/benchmarks.md).
NATIVE_MIN_WIDTH = 50


def _vae(t: JointTerms, beta: Tensor) -> Tensor:
    return -(t.log_px_z + beta * (t.log_pz - t.log_qz_x))  # VAE.__call__'s per-sample loss


#: Per-sample loss f(terms, β) of each objective a group can train: the library's functions where
#: it has them (``mim_per_sample``, ``ce_per_sample``), else the objective's expression as written
#: in its ``__call__``; the loss is mean f over D_enc, averaged with mean f over D_dec for the
#: objectives that take the decoder path (as ``two_path_loss`` does).
PER_SAMPLE: dict[str, Callable[[JointTerms, Tensor], Tensor]] = {
    "mim": mim_per_sample,
    "amim": mim_per_sample,
    "vae": _vae,
    "vae_plus_h": lambda t, beta: _vae(t, beta) - (t.log_qz_x + t.log_qx),
    "mim_minus_h": lambda t, beta: mim_per_sample(t, beta) - ce_per_sample(t),
    "ce": lambda t, beta: ce_per_sample(t),
}
SUPPORTED_OBJECTIVES = tuple(PER_SAMPLE)


def _takes_decoder_path(objective: Objective, beta: float) -> bool:
    """Whether ``objective`` samples D_dec at this β (MIM's rule, CE's ``symmetric``)."""
    name = objective.name
    if name in ("mim", "mim_minus_h"):
        return beta >= objective.decoder_path_min_beta
    return name == "ce" and objective.symmetric
_LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # the constant of torch's Normal.log_prob
_BETAS, _EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, which Trainer uses


# ---------------------------------------------------------------------------------- eligibility
def _model_reason(model_config: Any) -> str | None:
    from ..models.mlp import MLPModelConfig

    if not isinstance(model_config, MLPModelConfig):
        return "the model is not 'mlp'"
    c = model_config
    if (c.posterior, c.likelihood) != ("gaussian", "gaussian"):
        return "the encoder and decoder are not both Gaussian"
    if c.prior != "normal" or c.data_prior != "marginal" or c.latent_anchor is not None:
        return "p(z) is not N(0, I) or q(x) is not the marginal of Eq. (16)"
    if c.data_prior_options.get("decoder_estimate", "likelihood") != "likelihood":
        return "q(x) re-encodes the decoder's samples (data_prior_options.decoder_estimate)"
    return None


def unsupported_reason(model_config: Any, objective: Objective, train: TrainerConfig) -> str | None:
    """Why runs with these settings cannot be trained by :class:`VectorizedTrainer` (``None``: they can)."""
    reason = _model_reason(model_config)
    if reason is not None:
        return reason
    if objective.name not in SUPPORTED_OBJECTIVES:
        return f"objective {objective.name!r} is not one of {', '.join(SUPPORTED_OBJECTIVES)}"
    if train.normalize_grads or train.grad_clip is not None:
        return "per-tensor gradient normalisation or clipping would couple the members"
    if train.max_seconds is not None:
        return "train.max_seconds is a per-run time budget"
    if train.precision != "full":
        return f"train.precision={train.precision!r} (the stacked step runs in full precision)"
    return None


def _run_reason(config: RunConfig) -> str | None:
    if config.init is not None:
        return "a two-stage run (init:)"
    if config.log.tensorboard is not False or config.log.mlflow:
        return "TensorBoard/MLflow logging is per run"
    return unsupported_reason(config.model, config.objective, config.train)


def group_key(config: RunConfig) -> str | None:
    """Runs with equal keys can train as one group: equal run configs apart from the seed, the
    objective and the latent size ``model.z_dim`` (padded to the group's largest, exactly; see
    :class:`VectorizedTrainer`) (``None``: this run cannot be vectorised)."""
    if _run_reason(config) is not None:
        return None
    data = config.to_dict()
    data.pop("seed")
    data.pop("objective")
    data["train"].pop("seed")
    data["model"].pop("z_dim")  # only models the trainer supports get here (``mlp``)
    return json.dumps(data, sort_keys=True, default=str)


def _shape_free(model_config: Any) -> dict[str, Any]:
    """A model config without its latent size (what members of one group share)."""
    data = to_dict(model_config)
    data.pop("z_dim", None)
    return data


# ---------------------------------------------------------------------------------- members
@dataclass
class MemberState:
    """One member's training state: what :class:`~torchmim.training.Trainer` keeps for one run."""

    seed: int
    objective: Objective
    out_dir: Path | None = None
    epoch: int = 0
    steps: int = 0
    adam_steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int | None = None
    best_state: dict[str, Tensor] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    error: str | None = None
    lr: float = 0.0
    saved_epoch: int | None = None  # the epoch of its checkpoint on disk, if any

    @property
    def elapsed_seconds(self) -> float:
        return float(sum(h.get("seconds", 0.0) for h in self.history))

    def kept(self) -> str:
        """What a divergence leaves on disk, truthfully (as ``Trainer`` says it)."""
        if self.out_dir is None:
            return "no checkpoint is written (no out_dir)"
        if self.saved_epoch is None:
            return f"no checkpoint was written yet (none in {self.out_dir})"
        return f"the last good checkpoint (epoch {self.saved_epoch}) was left intact"


def _epoch_x(data: Any, epoch: int, name: str) -> Tensor:
    """All training points of ``epoch`` in data order (what the single trainer's loader shuffles)."""
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)  # ResampledMixtureDataset draws the epoch's points here
    if isinstance(data, TensorDataset):
        x = data.tensors[0]
    elif isinstance(data, ResampledMixtureDataset):
        # the epoch's points as drawn, without indexing them with a list of 10⁴ Python ints
        # (the batched-indexing protocol's slow path)
        x = data.x
    elif isinstance(data, Dataset):
        if getattr(data, "batched_indexing", False):
            x = batch_x(data[list(range(len(data)))])
        else:
            x = torch.stack([batch_x(data[i]) if not isinstance(data[i], Tensor) else data[i]
                             for i in range(len(data))])
    elif isinstance(data, tuple):
        x = as_tensor(data[0], name=name)
    else:
        x = as_tensor(data, name=name)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return check_finite(x, name=name)


class VectorizedTrainer:
    """Trains M models of one architecture as one stacked computation (see the module docstring).

    >>> import torchmim as tm
    >>> from torchmim.training.vectorized import VectorizedTrainer
    >>> models = [tm.MLPModelConfig(hidden=8).build() for _ in range(3)]
    >>> data = [tm.paper_2d_mixture().sample(512, seed=s)[0] for s in range(3)]
    >>> vt = VectorizedTrainer(models, [tm.MIM(), tm.VAE(), tm.MIM()], TrainerConfig(epochs=4),
    ...                        seeds=[0, 1, 2])
    >>> histories = vt.fit(data)
    >>> [len(h) for h in histories], vt.member_model(1).encoder.network[0].weight.shape
    ([4, 4, 4], torch.Size([8, 2]))

    Args:
        models: the members' initial models (same config; their weights are copied, not trained
            in place).
        objectives: one per member (see :data:`PER_SAMPLE`) or one for all.
        config: the training options shared by all members (its ``seed`` is ignored: ``seeds``).
        seeds: each member's seed (seeds its shuffling and noise as ``train.seed`` does).
        out_dirs: each member's folder for ``checkpoint.pt`` and ``history.csv`` (or ``None``).
        checkpoint_seconds: write checkpoints at most this often (a member's last epoch is always
            written); 0 writes every ``config.checkpoint_every`` epochs like the single trainer.
        fast: the CPU fast paths: a tanh network runs with sigmoid units, tanh(u) =
            2·sigmoid(2u) − 1 folded into its weights, and the affine maps whose products it
            speeds up with a backward laid out for the batched GEMM
            (:func:`~torchmim.networks.affine`); the same function and gradients up to float
            rounding, 1.1–2.4× faster than without at widths 20–500 (docs/benchmarks.md).
            ``None`` (default): as the switches ``FAST_PATHS.folded_tanh`` and
            ``affine_backward`` say (both on unless changed with
            :func:`~torchmim.fast_paths.fast_paths`); ``False`` runs ``torch.tanh`` and
            autograd's ``baddbmm`` and reproduces the single trainer run with the fast paths off
            (``fast_paths(folded_tanh=False, inference_blocks=False, affine_backward=False,
            inplace_log_prob=False, native_kernels=False)``) to the last bit where the stacked
            products allow.
    """

    def __init__(
        self,
        models: Sequence[LatentVariableModel],
        objectives: Sequence[Objective] | Objective,
        config: TrainerConfig | None = None,
        *,
        seeds: Sequence[int],
        out_dirs: Sequence[str | Path | None] | None = None,
        checkpoint_seconds: float = 0.0,
        fast: bool | None = None,
    ) -> None:
        self.config = config or TrainerConfig()
        m = len(models)
        if m < 1:
            raise ConfigError("a vectorised group needs at least one model")
        objs = [objectives] * m if isinstance(objectives, Objective) else list(objectives)
        dirs = [None] * m if out_dirs is None else [None if d is None else Path(d) for d in out_dirs]
        if not (len(objs) == len(seeds) == len(dirs) == m):
            raise ConfigError(f"a group of {m} models needs as many objectives, seeds and out_dirs "
                              f"(got {len(objs)}, {len(seeds)}, {len(dirs)})")
        first = models[0]
        for i, (model, obj) in enumerate(zip(models, objs)):
            if model.config is None or _shape_free(model.config) != _shape_free(first.config):
                raise ConfigError(f"group member {i} is not built from the same model config as "
                                  "member 0 (apart from model.z_dim)")
            reason = unsupported_reason(model.config, obj, self.config)
            if reason is not None:
                raise ConfigError(f"group member {i} cannot be vectorised: {reason}")
        if _has_data_init(first):
            raise ConfigError("models with a data-dependent initialisation cannot be vectorised")
        self.device = resolve_device(self.config.device)
        cfg = first.config
        self.depth, self.floor, self.clamp = cfg.depth, cfg.std_floor, cfg.logvar_clamp
        #: each member's latent size; the stack's is the largest (``z_dim``), the rest padded
        self.z_dims = [int(mod.config.z_dim) for mod in models]
        self.z_dim, self.x_dim = max(self.z_dims), cfg.x_dim
        self._templates: dict[int, LatentVariableModel] = {}  # one plain model per latent size
        for mod, z in zip(models, self.z_dims):
            if z not in self._templates:
                self._templates[z] = copy.deepcopy(mod).to(self.device)
        self.template = self._templates[self.z_dims[0]]  # member 0's (as before padding)
        self._enc_out = tuple(f"encoder.network.{2 * self.depth}.{k}" for k in ("weight", "bias"))
        self._dec_in = "decoder.network.0.weight"
        self.act = ACTIVATIONS.build(cfg.activation)
        fold = FAST_PATHS.folded_tanh if fast is None else fast
        #: tanh folded into sigmoid units (on the CPU, where torch's tanh is the slow op)
        self._fold = fold and cfg.activation == "tanh" and self.device.type == "cpu"
        #: networks.affine's backward, where it pays (it checks the device itself)
        self._affine = FAST_PATHS.affine_backward if fast is None else fast
        #: the training step's one-hidden-layer sigmoid (folded tanh) MLPs in torchmim.native's
        #: kernels, from NATIVE_MIN_WIDTH hidden units (networks.native_group_mlp checks the rest)
        native_on = self._fold and self.depth == 1 and (
            FAST_PATHS.native_kernels if fast is None else fast)
        self._native = native_on and cfg.hidden >= NATIVE_MIN_WIDTH
        #: ... and, at every width, its validation loss (no autograd: one forward call)
        self._native_eval = native_on
        self.names = [n for n, _ in first.named_parameters()]
        self.params = {n: torch.stack([self._pad(n, dict(mod.named_parameters())[n].detach(), z)
                                       for mod, z in zip(models, self.z_dims)])
                       .to(self.device).clone() for n in self.names}
        self.exp_avg = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.members = [MemberState(int(s), o, d) for s, o, d in zip(seeds, objs, dirs)]
        self.checkpoint_seconds = float(checkpoint_seconds)
        self._last_write = -math.inf
        self.epoch_seconds: list[float] = []  # wall-clock of each group epoch (all cohorts)

    # ------------------------------------------------------------------ padded latent sizes
    def _pad(self, name: str, t: Tensor, z: int) -> Tensor:
        """A member's tensor of its own shape (latent size ``z``) in the stack's shape: zeros for
        the padded units — the encoder's output rows of the padded means and log-variances (its
        rows are [means | log-variances], each padded at its end) and the decoder's input columns
        of the padded coordinates."""
        big = self.z_dim
        if z == big or (name not in self._enc_out and name != self._dec_in):
            return t
        if name in self._enc_out:
            out = t.new_zeros((2 * big, *t.shape[1:]))
            out[:z], out[big:big + z] = t[:z], t[z:]
            return out
        out = t.new_zeros((*t.shape[:-1], big))
        out[..., :z] = t
        return out

    def _unpad(self, name: str, t: Tensor, z: int) -> Tensor:
        """The inverse of :meth:`_pad`: a slice of the stack back in the member's own shape."""
        big = self.z_dim
        if z == big or (name not in self._enc_out and name != self._dec_in):
            return t
        if name in self._enc_out:
            return torch.cat([t[:z], t[big:big + z]])
        return t[..., :z]

    def _latents(self, idx: Sequence[int]) -> tuple[list[int], Tensor | None]:
        """The latent sizes of members ``idx`` and their mask (M, 1, z_dim) of real coordinates
        (``None`` when none is padded)."""
        sizes = [self.z_dims[i] for i in idx]
        if all(z == self.z_dim for z in sizes):
            return sizes, None
        mask = (torch.arange(self.z_dim, device=self.device)
                < torch.tensor(sizes, device=self.device).unsqueeze(1))
        return sizes, mask.unsqueeze(1)

    # ------------------------------------------------------------------ members as plain models
    def member_state(self, i: int) -> dict[str, Tensor]:
        """Member ``i``'s current weights as the ``state_dict`` of a plain model (of its own
        latent size)."""
        z = self.z_dims[i]
        state = self._templates[z].state_dict()
        return {k: (self._unpad(k, self.params[k][i].detach(), z).clone() if k in self.params
                    else v.clone()) for k, v in state.items()}

    def member_model(self, i: int, *, best: bool = True) -> LatentVariableModel:
        """Member ``i`` as a plain model: its best state (lowest validation loss at β = 1) once
        there is one, else its current weights."""
        model = copy.deepcopy(self._templates[self.z_dims[i]])
        s = self.members[i]
        model.load_state_dict(s.best_state if best and s.best_state is not None
                              else self.member_state(i))
        return model

    def _optimizer_state(self, i: int) -> dict[str, Any]:
        """Member ``i``'s Adam state in ``torch.optim.Adam.state_dict()`` form."""
        s, z = self.members[i], self.z_dims[i]
        groups = torch.optim.Adam(self._templates[z].parameters(), lr=self.config.lr).state_dict()
        groups = groups["param_groups"]
        groups[0]["lr"] = s.lr or self.config.lr
        state = {}
        if s.adam_steps:
            state = {k: {"step": torch.tensor(float(s.adam_steps)),
                         "exp_avg": self._unpad(n, self.exp_avg[n][i], z).clone(),
                         "exp_avg_sq": self._unpad(n, self.exp_avg_sq[n][i], z).clone()}
                     for k, n in enumerate(self.names)}
        return {"state": state, "param_groups": groups}

    def member_checkpoint(self, i: int) -> dict[str, Any]:
        """Member ``i``'s training checkpoint, in the single trainer's format."""
        s = self.members[i]
        model = copy.deepcopy(self._templates[self.z_dims[i]])
        model.load_state_dict(self.member_state(i))
        trainer = dataclasses.replace(self.config, seed=s.seed)
        return checkpoint_to_dict(
            model, epoch=s.epoch, optimizer=self._optimizer_state(i), best_state=s.best_state,
            best_val=s.best_val, best_epoch=s.best_epoch, bad_epochs=s.bad_epochs,
            stopped_early=s.stopped_early, history=s.history, objective=to_dict(s.objective),
            trainer=to_dict(trainer))

    def _write(self, i: int) -> None:
        s = self.members[i]
        if s.out_dir is None:
            return
        atomic_save(self.member_checkpoint(i), s.out_dir / "checkpoint.pt")
        s.saved_epoch = s.epoch
        write_history_csv(s.history, s.out_dir / "history.csv")

    def load_member(self, i: int, path: str | Path) -> None:
        """Restore member ``i`` from a checkpoint written by this class or by a plain Trainer (in
        the member's own shapes; padded here)."""
        s, z = self.members[i], self.z_dims[i]
        own = dict(self._templates[z].named_parameters())
        ckpt = read_checkpoint(path, map_location=self.device)
        if ckpt["objective"] != to_dict(s.objective):
            raise CheckpointError(f"{path} was written by objective {ckpt['objective']}, but this "
                                  f"member runs {to_dict(s.objective)}")
        state, opt = ckpt["model_state"], ckpt["optimizer"]
        try:
            new = {n: state[n].to(self.device, self.params[n].dtype) for n in self.names}
            if any(new[n].shape != own[n].shape for n in self.names):
                raise ValueError("parameter shapes differ")
            moments = opt["state"]
            steps = {int(moments[k]["step"]) for k in moments} or {0}
            if len(steps) != 1:
                raise ValueError("the Adam step counts of its parameters differ")
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path} does not match this model: {e}") from None
        for k, n in enumerate(self.names):
            self.params[n][i] = self._pad(n, new[n], z)
            if k in moments:
                self.exp_avg[n][i] = self._pad(n, moments[k]["exp_avg"].to(self.device), z)
                self.exp_avg_sq[n][i] = self._pad(n, moments[k]["exp_avg_sq"].to(self.device), z)
        s.adam_steps = steps.pop()
        s.lr = float(opt["param_groups"][0]["lr"])
        s.epoch, s.best_state = int(ckpt["epoch"]), ckpt["best_state"]
        s.best_val, s.best_epoch = float(ckpt["best_val"]), ckpt["best_epoch"]
        s.bad_epochs, s.stopped_early = int(ckpt["bad_epochs"]), bool(ckpt["stopped_early"])
        s.history = list(ckpt["history"])
        s.steps = int(s.history[-1].get("steps", 0)) if s.history else 0

    # ------------------------------------------------------------------ the stacked model
    def _mlp(self, p: dict[str, Tensor], prefix: str, h: Tensor) -> Tensor:
        """The MLP of ``networks.MLP`` for all members: (M, B, in) → (M, B, out). With the fold
        (``_fold``), a tanh network runs with sigmoid units (:func:`~torchmim.networks.fold_tanh`,
        as ``networks.MLP`` trains it), the fold a few differentiable ops on the (M, out, in)
        weights: a hidden activation costs one in-place sigmoid forward and one sigmoid backward
        instead of torch's tanh (~9.5× slower than sigmoid on a 128 × 500 batch here)."""
        params = [(p[f"{prefix}.network.{2 * k}.weight"], p[f"{prefix}.network.{2 * k}.bias"])
                  for k in range(self.depth + 1)]
        layers = fold_tanh(params) if self._fold else params
        if self._native if torch.is_grad_enabled() else self._native_eval:
            # the whole MLP in one native call forward (and one backward)
            out = native_group_mlp(h, *layers[0], *layers[1])
            if out is not None:
                return out
        for k, (w, b) in enumerate(layers):
            h = affine(h, w, b, fast=self._affine)
            if k < self.depth:
                # in place: the affine map's backward does not need its output
                h = h.sigmoid_() if self._fold else self.act(h)
        return h

    def _gaussian(self, out: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and σ as ``gaussian_from_mean_logvar`` makes them."""
        mean, logvar = out.chunk(2, dim=-1)
        if self.clamp is not None:
            logvar = logvar.clamp(*self.clamp)
        return mean, torch.exp(0.5 * logvar) + self.floor

    @staticmethod
    def _log_normal(v: Tensor, loc: Tensor, scale: Tensor, mask: Tensor | None = None) -> Tensor:
        """torch's ``Independent(Normal(loc, scale), 1).log_prob(v)``, written out op for op;
        with ``mask`` (M, 1, D), the sum over the real coordinates only (a padded coordinate's
        term is replaced by 0, never multiplied: no NaN · 0, and its gradient is exactly 0)."""
        t = -((v - loc) ** 2) / (2 * scale**2) - scale.log() - _LOG_SQRT_2PI
        return (t if mask is None else torch.where(mask, t, 0.0)).sum(-1)

    @staticmethod
    def _log_std_normal(v: Tensor, mask: Tensor | None = None) -> Tensor:
        """log N(v; 0, I), the same floats as ``_log_normal(v, 0, 1)`` (``mask`` as there)."""
        t = -(v**2) / 2 - _LOG_SQRT_2PI
        return (t if mask is None else torch.where(mask, t, 0.0)).sum(-1)

    @staticmethod
    def _noise(gens: Sequence[torch.Generator], shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Standard normal noise, member j's slice from ``gens[j]`` (as ``empty().normal_()``)."""
        out = torch.empty((len(gens), *shape), dtype=like.dtype, device=like.device)
        for j, g in enumerate(gens):
            out[j].normal_(generator=g)
        return out

    def _latent_noise(self, gens: Sequence[torch.Generator], b: int, sizes: Sequence[int],
                      like: Tensor) -> Tensor:
        """Standard normal noise (M, b, z_dim) over the latent space: member j's (b, sizes[j])
        drawn from ``gens[j]`` as the member's own run draws it, its padded coordinates 0."""
        if all(z == self.z_dim for z in sizes):
            return self._noise(gens, (b, self.z_dim), like)
        out = torch.zeros((len(gens), b, self.z_dim), dtype=like.dtype, device=like.device)
        for j, (g, z) in enumerate(zip(gens, sizes)):
            out[j, :, :z] = torch.empty((b, z), dtype=like.dtype, device=like.device).normal_(
                generator=g)
        return out

    def _loss(self, p: dict[str, Tensor], x: Tensor, beta: Tensor, kind: _Kinds,
              gens: Sequence[torch.Generator],
              latents: tuple[list[int], Tensor | None] | None = None,
              ) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-member loss (M,) and the per-sample terms (M, B) that the history logs.

        ``kind`` says which members use the MIM loss (``mim``) and which take the decoder path
        this epoch (``dec``: MIM members with β ≥ ``decoder_path_min_beta``); ``latents`` gives
        the members' latent sizes and mask (:meth:`_latents`; ``None``: none padded).

        Padded latent coordinates: the encoder's padded output rows are 0, so their mean is 0,
        and their noise is 0, so z's padded coordinates are exactly 0; the decoder's padded input
        columns are 0; every log-density over z sums the real coordinates only. So no padded
        unit reaches the loss, their gradients are exactly 0, and Adam leaves them at 0."""
        b = x.shape[1]
        sizes, mask = latents if latents is not None else ([self.z_dim] * x.shape[0], None)
        eps = self._latent_noise(gens, b, sizes, x)
        if kind.dec_idx is None:
            return self._loss_given(p, x, beta, kind, mask, eps)
        dgens = [gens[j] for j in kind.dec_list]
        zd = self._latent_noise(dgens, b, [sizes[j] for j in kind.dec_list], x)  # z ~ P(z)
        xd_eps = self._noise(dgens, (b, self.x_dim), x)
        return self._loss_given(p, x, beta, kind, mask, eps, zd, xd_eps)

    def _loss_given(self, p: dict[str, Tensor], x: Tensor, beta: Tensor, kind: _Kinds,
                    mask: Tensor | None, eps: Tensor, zd: Tensor | None = None,
                    xd_eps: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`_loss` given its noise, drawn there in the order of the member's own run:
        ``eps`` for z ~ q(z|x), and for the decoder-path members ``zd`` ~ p(z) and ``xd_eps`` for
        x ~ p(x|z). A function of tensors only (``bench/group_compile.py`` compiles it)."""
        beta = beta.unsqueeze(1)
        mu, sd = self._gaussian(self._mlp(p, "encoder", x))
        z = mu + eps * sd
        log_qz_x = self._log_normal(z, mu, sd, mask)
        mx, sx = self._gaussian(self._mlp(p, "decoder", z))
        log_px_z = self._log_normal(x, mx, sx)
        log_pz = self._log_std_normal(z, mask)
        log_qx = log_px_z + log_pz - log_qz_x  # Algorithm 2, encoder path
        enc = JointTerms(log_px_z, log_pz, log_qz_x, log_qx)
        terms = {"encoder/log_px_z": log_px_z, "encoder/log_pz": log_pz,
                 "encoder/log_qz_x": log_qz_x, "encoder/log_qx": log_qx}
        loss = kind.select(enc, beta).mean(1)
        if kind.dec_idx is not None:
            assert zd is not None and xd_eps is not None
            d = kind.dec_idx
            pd = p if kind.all_dec else {n: t.index_select(0, d) for n, t in p.items()}
            dmask = mask if mask is None or kind.all_dec else mask.index_select(0, d)
            mx2, sx2 = self._gaussian(self._mlp(pd, "decoder", zd))
            xd = mx2 + xd_eps * sx2
            mu2, sd2 = self._gaussian(self._mlp(pd, "encoder", xd))
            d_px_z = self._log_normal(xd, mx2, sx2)
            d_pz = self._log_std_normal(zd, dmask)
            d_qz_x = self._log_normal(zd, mu2, sd2, dmask)
            bd = beta if kind.all_dec else beta.index_select(0, d)
            dterms = JointTerms(d_px_z, d_pz, d_qz_x, d_px_z)  # log q(x) ≈ log p(x|z) on D_dec
            dec = kind.select(dterms, bd, decoder=True).mean(1)
            if kind.all_dec:
                loss = (loss + dec) / 2  # torch.stack([enc, dec]).mean()
            else:
                both = (loss.index_select(0, d) + dec) / 2
                loss = loss.index_copy(0, d, both)
            for k, v in {"log_px_z": d_px_z, "log_pz": d_pz, "log_qz_x": d_qz_x,
                         "log_qx": d_px_z}.items():
                terms[f"decoder/{k}"] = (v if kind.all_dec else torch.zeros_like(log_px_z)
                                         .index_copy(0, d, v.detach()))
        return loss, terms

    # ------------------------------------------------------------------ training
    def fit(self, train_data: Sequence[Any], val_data: Sequence[Any] | None = None, *,
            resume: bool = False) -> list[list[dict[str, Any]]]:
        """Train every member until its ``config.epochs`` or its early stop; returns the histories.

        Args:
            train_data: one training set per member (tensor/array, ``(x, y)``, TensorDataset, or a
                Dataset with ``batched_indexing``/``set_epoch`` such as the toy data).
            val_data: one validation set per member (or ``None``: the training loss at β = 1).
            resume: continue each member with an ``out_dir`` from its ``checkpoint.pt`` if it exists.
        """
        m = len(self.members)
        if len(train_data) != m or (val_data is not None and len(val_data) != m):
            raise ConfigError(f"a group of {m} members needs {m} training (and validation) sets")
        keep_freed_memory()  # as Trainer.fit: glibc keeps freed buffers for the next step
        if resume:
            for i, s in enumerate(self.members):
                path = s.out_dir / "checkpoint.pt" if s.out_dir is not None else None
                if path is not None and path.exists():
                    try:
                        self.load_member(i, path)
                        s.saved_epoch = s.epoch
                        write_history_csv(s.history, s.out_dir / "history.csv")  # = checkpoint's
                    except TorchMIMError as e:
                        s.error = f"{type(e).__name__}: {e}"
        vals = None
        if val_data is not None:
            vals = [_epoch_x(v, 0, "validation data") for v in val_data]
        nparams = sum(p.numel() for p in self.params.values())
        threads = (resolve_threads(self.config.threads, None, where="train.threads")
                   if self.config.threads is not None else
                   1 if nparams < SMALL_MODEL_PARAMETERS else default_threads(None))
        with torch_threads(threads):
            while True:
                todo = [i for i, s in enumerate(self.members) if not self._done(s)]
                if not todo:
                    break
                first = min(todo, key=lambda i: (self.members[i].epoch, self.members[i].adam_steps))
                key = (self.members[first].epoch, self.members[first].adam_steps)
                cohort = [i for i in todo
                          if (self.members[i].epoch, self.members[i].adam_steps) == key]
                self._run_epoch(key[0] + 1, cohort, train_data, vals)
        return [s.history for s in self.members]

    def _done(self, s: MemberState) -> bool:
        return s.error is not None or s.stopped_early or s.epoch >= self.config.epochs

    def _run_epoch(self, epoch: int, idx: list[int], train_data: Sequence[Any],
                   vals: list[Tensor] | None) -> None:
        cfg, dev = self.config, self.device
        start = time.perf_counter()
        members = [self.members[i] for i in idx]
        dtype = self.params[self.names[0]].dtype
        gens = self._generators(members, "epoch", epoch)
        x = torch.stack([_epoch_x(train_data[i], epoch, "training data") for i in idx])
        x = x.to(dev, dtype)
        n = x.shape[1]
        perms = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(
            derive_seed(s.seed, "shuffle", epoch))) for s in members])
        x = x[torch.arange(len(idx)).unsqueeze(1), perms.to(dev)]
        beta_list = [beta_warmup(epoch, cfg.warmup_epochs) if s.objective.uses_beta else 1.0
                     for s in members]
        beta = torch.tensor(beta_list, dtype=dtype, device=dev)
        lr = cfg.lr * (lr_warmup_factor(epoch, cfg.warmup_epochs)
                       if cfg.lr_schedule == "warmup" else 1.0)
        kind = _Kinds.of(members, beta_list, dev)
        sel = torch.tensor(idx, device=dev)
        latents = self._latents(idx)
        params = [self.params[nm].index_select(0, sel).requires_grad_() for nm in self.names]
        p = dict(zip(self.names, params))
        exp_avg = [self.exp_avg[nm].index_select(0, sel) for nm in self.names]
        exp_avg_sq = [self.exp_avg_sq[nm].index_select(0, sel) for nm in self.names]
        step_t = [torch.tensor(float(members[0].adam_steps)) for _ in self.names]
        if n == 0:
            raise DataError("the training data produced no batches")
        sums: Tensor | float = 0.0
        keys: list[str] = []
        failed = torch.zeros(len(idx), dtype=torch.bool)
        for step, s0 in enumerate(range(0, n, cfg.batch_size)):
            xb = x[:, s0:s0 + cfg.batch_size]
            loss, terms = self._loss(p, xb, beta, kind, gens, latents)
            bad = ~torch.isfinite(loss.detach())
            if bool(bad.any()):  # that member diverged; the others go on (their math is separate)
                for j in bad.nonzero().flatten().tolist():
                    if not failed[j]:
                        failed[j] = True
                        members[j].error = (
                            f"TrainingDivergedError: non-finite loss at epoch {epoch}, batch "
                            f"{step} (β={beta_list[j]:.3g}); {members[j].kept()}")
                loss = torch.where(bad, torch.zeros_like(loss), loss)
            grads = torch.autograd.grad(loss.sum(), params)
            with torch.no_grad():
                # foreach: one dispatch per Adam op for all tensors; the same floats as Trainer's
                # single-tensor Adam (the group-of-one test checks it bit for bit)
                _adam(params, list(grads), exp_avg, exp_avg_sq, [], step_t, foreach=True,
                      amsgrad=False, beta1=_BETAS[0], beta2=_BETAS[1], lr=lr, weight_decay=0.0,
                      eps=_EPS, maximize=False)
            # batch means in float32, then summed × batch size in float64: Trainer's arithmetic,
            # with one stack and one mean for all terms instead of a mean per term
            keys = ["loss", *terms]
            means = torch.cat([loss.detach().unsqueeze(0),
                               torch.stack([t.detach() for t in terms.values()]).mean(-1)])
            sums = sums + means.double() * xb.shape[1]
        batches = step + 1
        with torch.no_grad():
            val = (self._val_loss(p, [vals[i] for i in idx], members, epoch, latents)
                   if vals else None)
            for nm, t in zip(self.names, params):
                self.params[nm][sel] = t.detach()
            for nm, a, b in zip(self.names, exp_avg, exp_avg_sq):
                self.exp_avg[nm][sel], self.exp_avg_sq[nm][sel] = a, b
        seconds = (time.perf_counter() - start) / len(idx)
        self.epoch_seconds.append(time.perf_counter() - start)
        train = dict(zip(keys, (sums / n).tolist()))
        write = []
        for j, (i, s) in enumerate(zip(idx, members)):
            s.adam_steps += batches
            s.steps += batches
            s.lr = lr
            if s.error is None:
                logs = {k: v[j] for k, v in train.items() if k in kind.keys(j)}
                self._end_epoch(i, s, epoch, beta_list[j], lr, logs,
                                None if val is None else float(val[j]), seconds)
                if s.error is None and s.out_dir is not None and (
                        epoch % cfg.checkpoint_every == 0 or self._done(s)):
                    write.append(i)
        now = time.perf_counter()
        if write and now - self._last_write >= self.checkpoint_seconds:
            for i in write:
                self._write(i)
            self._last_write = now
        else:  # a member's last epoch is always written
            for i in write:
                if self._done(self.members[i]):
                    self._write(i)

    def _end_epoch(self, i: int, s: MemberState, epoch: int, beta: float, lr: float,
                   train: dict[str, float], val_loss: float | None, seconds: float) -> None:
        """The single trainer's end of epoch (early stopping, best model, history) for one member."""
        cfg = self.config
        validated = val_loss is not None  # a NaN validation loss is divergence in warm-up too
        if val_loss is None:
            val_loss = train["loss"] if beta >= 1.0 else math.nan
        if not math.isfinite(val_loss) and (beta >= 1.0 or validated):
            s.error = (f"TrainingDivergedError: non-finite validation loss at epoch {epoch}; "
                       f"{s.kept()}")
            return
        improved, stopped = select_and_stop(
            s, val_loss, epoch, cfg, selecting=beta >= 1.0 or not s.objective.uses_beta,
            snapshot=lambda: self.member_state(i))
        if stopped and s.steps < FEW_STEPS:
            warnings.warn(
                f"early stopping ended member {i} (seed {s.seed}) at epoch {epoch} after "
                f"only {s.steps} gradient steps; raise train.min_steps or train.patience "
                "if it is under-trained", UserWarning, stacklevel=3)
        s.epoch = epoch
        logs = {"epoch": epoch, "beta": beta, "lr": lr, "train_loss": train.pop("loss"),
                "val_loss": val_loss, "best": improved, "steps": s.steps, "seconds": seconds}
        logs.update({f"train/{k}": v for k, v in train.items()})
        s.history.append(logs)

    def _generators(self, members: list[MemberState], what: str, epoch: int
                    ) -> list[torch.Generator]:
        """One generator per member seeded as the single trainer seeds the global one; on the CPU
        the DataLoader iterator of the single trainer then takes one number from it (its base
        seed), so the first draw is skipped here too."""
        gens = []
        for s in members:
            g = torch.Generator(device=self.device)
            g.manual_seed(derive_seed(s.seed, what, epoch))
            if self.device.type == "cpu":
                torch.empty((), dtype=torch.int64).random_(generator=g)
            gens.append(g)
        return gens

    def _val_loss(self, p: dict[str, Tensor], vals: list[Tensor], members: list[MemberState],
                  epoch: int, latents: tuple[list[int], Tensor | None]) -> Tensor:
        """Each member's mean loss on its validation set at β = 1 (``Trainer.evaluate_loss``)."""
        cfg = self.config
        gens = self._generators(members, "val", epoch)
        dtype = next(iter(p.values())).dtype
        v = torch.stack(vals).to(self.device, dtype)
        ones = [1.0] * len(members)
        vkind = _Kinds.of(members, ones, self.device)
        beta = torch.ones(len(members), dtype=dtype, device=self.device)
        total = torch.zeros(len(members), dtype=torch.float64, device=self.device)
        for s0 in range(0, v.shape[1], cfg.eval_batch_size):
            xb = v[:, s0:s0 + cfg.eval_batch_size]
            loss, _ = self._loss(p, xb, beta, vkind, gens, latents)
            total += loss.double() * xb.shape[1]
        return (total / max(v.shape[1], 1)).cpu()


@dataclass
class _Kinds:
    """Which objective each stacked member uses and which members take the decoder path this
    epoch; ``select`` evaluates each objective present once and picks every member's row."""

    names: list[str]
    masks: dict[str, Tensor]
    dec_list: list[int]
    dec_idx: Tensor | None
    all_dec: bool
    _keys: list[tuple[str, ...]]

    @classmethod
    def of(cls, members: list[MemberState], betas: list[float], device: torch.device) -> _Kinds:
        names = [s.objective.name for s in members]
        dec = [j for j, s in enumerate(members) if _takes_decoder_path(s.objective, betas[j])]
        masks = {n: torch.tensor([m == n for m in names], device=device).unsqueeze(1)
                 for n in dict.fromkeys(names)}
        keys = []
        for j, name in enumerate(names):  # the keys of ObjectiveOutput.scalars() for each member
            k = ["loss", "encoder/log_px_z", "encoder/log_pz", "encoder/log_qz_x"]
            k += [] if name == "vae" else ["encoder/log_qx"]  # the VAE has no q(x)
            k += [f"decoder/{t}" for t in ("log_px_z", "log_pz", "log_qz_x", "log_qx")
                  if j in dec]
            keys.append(tuple(k))
        return cls(names, masks, dec,
                   torch.tensor(dec, device=device, dtype=torch.long) if dec else None,
                   len(dec) == len(members), keys)

    def select(self, terms: JointTerms, beta: Tensor, *, decoder: bool = False) -> Tensor:
        """Every member's per-sample loss (rows: all members, or the decoder-path members)."""
        names = [self.names[j] for j in self.dec_list] if decoder else self.names
        present = list(dict.fromkeys(names))
        out = PER_SAMPLE[present[0]](terms, beta)
        for name in present[1:]:
            mask = self.masks[name]
            if decoder:
                mask = mask.index_select(0, self.dec_idx)
            out = torch.where(mask, PER_SAMPLE[name](terms, beta), out)
        return out

    def keys(self, j: int) -> tuple[str, ...]:
        return self._keys[j]


def write_history_csv(history: list[dict[str, Any]], path: Path) -> None:
    """``history.csv`` as :class:`~torchmim.training.CSVLogger` writes it (the first row's columns),
    rewritten whole so that it always matches the checkpoint's history."""
    buf = io.StringIO()
    if history:
        fields = list(history[0])
        writer = csv.DictWriter(buf, fields, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(history)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as f:
        f.write(buf.getvalue())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------- runs
def run_group(
    configs: Sequence[RunConfig],
    out_dirs: Sequence[str | Path | None] | None = None,
    *,
    resume: bool = False,
    checkpoint_seconds: float = 0.0,
) -> list[RunResult | TorchMIMError]:
    """``run(config, out_dir)`` for runs that differ only in seed, objective and latent size,
    trained as one group.

    Each member's folder gets what :func:`~torchmim.runs.run` writes (config.yaml,
    environment.json, checkpoint.pt, history.csv, model.pt, metrics.json); its data, initial
    weights and evaluation are seeded from its own seed exactly as ``run`` seeds them. Returns one
    :class:`~torchmim.runs.RunResult` per config, or the error that ended that member (a diverged
    member does not stop the others).
    """
    import yaml

    from ..environment import environment_info
    from ..io import atomic_write_json, atomic_write_text
    from ..runs import RunResult, _finish_run, _prepare_run

    configs = list(configs)
    outs = [None if d is None else Path(d) for d in (out_dirs or [None] * len(configs))]
    if not configs or len(outs) != len(configs):
        raise ConfigError("run_group needs one or more configs and one out_dir per config")
    keys = {group_key(c) for c in configs}
    if None in keys:
        raise ConfigError(f"run_group: {_run_reason(next(c for c in configs if group_key(c) is None))}")
    if len(keys) != 1:
        raise ConfigError("run_group: the configs differ in more than the seed, the objective "
                          "and model.z_dim")
    datas, models = [], []
    for config, out in zip(configs, outs):
        # no data transform on the members while they train: the group's checkpoints would all
        # carry member 0's (its template's); each member's final model gets its own below
        data, model = _prepare_run(config)
        datas.append(data)
        models.append(model)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
            atomic_write_json(out / "environment.json", environment_info())
    train_cfg = dataclasses.replace(configs[0].train, seed=0, progress=False)
    trainer = VectorizedTrainer(models, [c.objective for c in configs], train_cfg,
                                seeds=[c.seed for c in configs], out_dirs=outs,
                                checkpoint_seconds=checkpoint_seconds)
    trainer.fit([d.train for d in datas], [d.val[0] for d in datas], resume=resume)
    results: list[RunResult | TorchMIMError] = []
    for i, (config, out, data) in enumerate(zip(configs, outs, datas)):
        s = trainer.members[i]
        if s.error is not None:
            results.append(TrainingDivergedError(s.error) if "Diverged" in s.error
                           else CheckpointError(s.error))
            continue
        model = trainer.member_model(i)
        try:
            metrics = _finish_run(config, model, data, out, epoch=s.epoch, best_epoch=s.best_epoch,
                                  best_val=s.best_val, train_seconds=s.elapsed_seconds)
        except TorchMIMError as e:
            results.append(e)
            continue
        results.append(RunResult(config, model, metrics, s.history, data, out))
    return results
