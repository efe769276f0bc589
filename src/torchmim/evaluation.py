"""The evaluation protocol: :class:`EvalConfig` and :func:`evaluate`, the one place that says how a
trained model is measured.

The estimators themselves (KSG, importance-sampled NLL, reconstruction errors, k-NN accuracy, the
collapse diagnostics) are in :mod:`torchmim.metrics`; this module decides which of them run, on how
many points, with which k and S, and with which seeds — the paper's protocol by default (Section 6.2
and the reference code). ``run()``, the CLI's ``evaluate`` command and the sweeps all call
:func:`evaluate` with the run config's ``eval:`` section, so a protocol change is made here once.
"""

from __future__ import annotations

import dataclasses
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .data.base import DataSplits
from .errors import ConfigError, DataError
from .metrics import (  # _importance_sampled_nll: one NLL pass gives the mean and the points
    _importance_sampled_nll,
    active_units,
    embed,
    has_learned_data_prior,
    knn_correct,
    ksg_mutual_information,
    ksg_rank_mutual_information,
    posterior_variance,
    prior_consistency,
    reconstruction_error,
    reconstruction_rmse,
)
from .models.latent_variable_model import LatentVariableModel
from .precision import Precision, check_precision
from .threads import resolve_threads, torch_threads

__all__ = ["DEFAULT_NLL_SAMPLES", "POINTS_FILE", "EvalConfig", "default_nll_samples", "evaluate",
           "evaluate_points", "read_points", "write_points", "x_fingerprint"]

#: Importance samples per test point when neither the config nor the model says (Section 6.2).
DEFAULT_NLL_SAMPLES = 1000
#: The per-test-point values of a run (``eval.save_points``), in its run folder.
POINTS_FILE = "points.npz"


@dataclass
class EvalConfig:
    """How a trained model is measured (the paper's protocol by default); a run config's ``eval:``.

    Attributes:
        max_points: test points used.
        mi: estimate the mutual information with KSG (the paper does not for images).
        ksg_k: neighbours of the KSG estimator.
        ksg_standardize: KSG on x and z rescaled to unit variance per coordinate (see
            ``metrics.ksg_mutual_information``; off, as in the reference code).
        mi_rank: also report ``mi_rank``, KSG on the per-coordinate ranks of x and z (invariant to
            monotone rescaling of coordinates; ``metrics.ksg_rank_mutual_information``), on the
            same pairs (x, z) as ``mi``.
        mi_standardized: also report ``mi_standardized``, KSG on x and z rescaled to unit variance per
            coordinate, on the same pairs as ``mi`` (``mi`` stays the reference's raw estimate, so
            both can be compared on one run; Fig. 5's codes and data are on different scales).
        consistency: also report ``consistency_x`` and ``consistency_z``
            (:func:`~torchmim.metrics.prior_consistency` on ``max_points`` samples per side): how far
            the learned q(x) and p(z) are from the decoder's and the encoder's marginals (Appendix
            D.2–D.4; needs a data prior that can be sampled).
        knn_k: neighbours of the k-NN classifier reported as ``knn_acc``.
        extra_knn_k: further k reported as ``knn_acc_k<k>`` (the image tables: 1, 3, 10).
        nll_samples: importance samples per test point for the NLL (S; default: the model config's
            ``default_nll_samples``, 1000 for the MLP models of Section 6.2, 5000 for image models;
            see :func:`default_nll_samples`).
        nll_points: test points of the NLL (default: all ``max_points``).
        recon_points: test points of the reconstruction errors (default: all ``max_points``;
            PixelHVAE reconstructs autoregressively, 784 decoder passes per batch, twice: once
            through samples for ``recon_error``, once through the means for ``recon_mean_rmse``).
        nll_batch_size, nll_max_pairs: memory bounds of the NLL (test points per batch, decoder
            evaluations at once).
        nll_precision: ``"full"`` (the default) or ``"bf16-mixed"``: the NLL's networks in
            bfloat16 under ``torch.autocast``, its log-densities and logsumexp in float32
            (:mod:`torchmim.precision`); the other metrics stay in full precision. About 1.8×
            faster for convHVAE on a CPU with AVX512-BF16 (measured interleaved); on five trained
            MNIST convHVAE/PixelHVAE models it moved the mean NLL by at most 0.14 nats (1.3 on
            one image; docs/benchmarks.md). The run's config records it, and the per-point
            values (``points.npz``) carry it, so two NLLs of different precisions are not
            compared. Models with a flow density are refused (even a flow ``data_prior``, which
            the NLL does not evaluate: the check is the training one).
        knn_latent: classify sampled codes z ∼ q(z|x) (the reference) or posterior means.
        knn_train_points: training codes the k-NN classifier is fit on: the first this many of
            the data's ``train_eval`` split; ``None`` (the default, the reference): all of it
            (for the image data sets ``data.n_train_eval`` says how many training images that
            split holds; the image tables set it to the whole training set). Reported as
            ``n_train``.
        threads: torch CPU threads while evaluating (restored afterwards); ``None``: the default of
            :mod:`torchmim.threads` (one thread for small models).
        save_points: a run also writes the per-test-point values behind ``nll`` and the k-NN
            accuracies to ``points.npz`` in its folder (see :func:`evaluate_points`), so that two
            runs evaluated on the same test points can be compared point by point
            (:func:`torchmim.experiments.statistics.compare_points`). Changes no metric.
    """

    max_points: int = 10_000
    mi: bool = True
    ksg_k: int = 5
    ksg_standardize: bool = False
    mi_rank: bool = False
    mi_standardized: bool = False
    consistency: bool = False
    knn_k: int = 5
    extra_knn_k: list[int] = field(default_factory=list)
    nll_samples: int | None = None
    nll_points: int | None = None
    recon_points: int | None = None
    nll_batch_size: int = 256
    nll_max_pairs: int = 65536
    nll_precision: Precision = "full"
    knn_latent: Literal["sample", "mean"] = "sample"
    knn_train_points: int | None = None
    threads: int | None = None
    save_points: bool = False

    def __post_init__(self) -> None:
        """Every option checked when the config is read (types, ranges, k below the number of
        points), so that no evaluation error can surface only after training."""
        from .config import check_fields, check_number

        check_fields(self, "eval")
        for name in ("max_points", "ksg_k", "knn_k", "nll_batch_size", "nll_max_pairs"):
            check_number(getattr(self, name), f"eval.{name}", low=1, integer=True)
        for name in ("nll_samples", "nll_points", "recon_points"):
            check_number(getattr(self, name), f"eval.{name}", low=1, integer=True, none=True)
        for i, k in enumerate(self.extra_knn_k):
            check_number(k, f"eval.extra_knn_k[{i}]", low=1, integer=True)
        if (self.mi or self.mi_rank or self.mi_standardized) and self.ksg_k >= self.max_points:
            raise ConfigError(f"eval.ksg_k={self.ksg_k} must be below eval.max_points="
                              f"{self.max_points}: KSG needs k + 1 points")
        for name, k in [("knn_k", self.knn_k)] + [(f"extra_knn_k[{i}]", k)
                                                   for i, k in enumerate(self.extra_knn_k)]:
            if k > self.max_points:
                raise ConfigError(f"eval.{name}={k} must be at most eval.max_points="
                                  f"{self.max_points}: the k-NN classifier is fit on that many "
                                  "training codes")
        if self.consistency and self.max_points < 2:
            raise ConfigError(f"eval.consistency compares samples of eval.max_points="
                              f"{self.max_points} points per side: it needs at least 2")
        if self.knn_latent not in ("sample", "mean"):
            raise ConfigError(f"eval.knn_latent must be 'sample' or 'mean', got {self.knn_latent!r}")
        if self.threads is not None:
            resolve_threads(self.threads, None, where="eval.threads")

def default_nll_samples(model_or_config: Any) -> int:
    """S when ``eval.nll_samples`` is not set: the model config's ``default_nll_samples`` (a model
    or a :class:`~torchmim.models.ModelConfig` may be given), else :data:`DEFAULT_NLL_SAMPLES`."""
    config = getattr(model_or_config, "config", model_or_config)
    return int(getattr(config, "default_nll_samples", DEFAULT_NLL_SAMPLES))


def _labels(y: Any, n: int) -> np.ndarray:
    return np.asarray(y.cpu() if isinstance(y, Tensor) else y)[:n]


def evaluate(
    model: LatentVariableModel,
    data: DataSplits | Any,
    config: EvalConfig | Any = None,
    *,
    y_test: Any = None,
    x_train: Any = None,
    y_train: Any = None,
    seed: int = 0,
    progress: bool = False,
    **options: Any,
) -> dict[str, float]:
    """The paper's four measures and the collapse diagnostics (the first item of
    :func:`evaluate_points`, which see for the arguments and the values returned)."""
    return evaluate_points(model, data, config, y_test=y_test, x_train=x_train, y_train=y_train,
                           seed=seed, progress=progress, **options)[0]


def evaluate_points(
    model: LatentVariableModel,
    data: DataSplits | Any,
    config: EvalConfig | Any = None,
    *,
    y_test: Any = None,
    x_train: Any = None,
    y_train: Any = None,
    seed: int = 0,
    progress: bool = False,
    **options: Any,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The paper's four measures and the collapse diagnostics, with N, k and S reported.

    Args:
        model: the trained model.
        data: a :class:`~torchmim.data.DataSplits` (its ``test`` split is measured and its
            ``train_eval`` split fits the k-NN classifier), or the test observations ``x_test``
            (array or tensor, or a tuple ``(x_test, y_test)``) with ``y_test``, ``x_train``,
            ``y_train`` as keywords.
        config: the protocol (default ``EvalConfig()``). For the keyword form of earlier versions,
            ``evaluate(model, x_test, y_test, x_train=..., nll_samples=...)``, a third positional
            argument that is not an EvalConfig is taken as ``y_test``.
        seed: seeds every sampling estimate (each with its own derived stream).
        progress: a progress bar over the NLL batches.
        options: :class:`EvalConfig` fields overriding ``config`` (``evaluate(model, x, mi=False)``).

    Returns a dict with ``mi`` (KSG nats; skipped with ``mi=False``, e.g. for images, where the paper
    does not estimate it), ``mi_rank`` (with ``mi_rank=True``: KSG on ranks, the same pairs),
    ``mi_standardized`` (with ``mi_standardized=True``: KSG on standardised coordinates, the same
    pairs),
    ``nll`` (IS nats, on the first ``nll_points`` test points),
    ``recon_error`` (the paper's reconstruction measure — its "RMSE" — the mean ‖x − x̃‖ with
    sampled z and x̃; see :func:`~torchmim.metrics.reconstruction_error`) and ``recon_rmse`` (the
    same value under the name older results use), ``recon_mean_rmse`` (a true root-mean-square
    error per coordinate of the mean reconstruction), all on the first ``recon_points`` test points,
    ``knn_acc`` (k = ``knn_k``, if labels and training data are given) and ``knn_acc_k<k>`` for
    every ``extra_knn_k``, ``posterior_var`` (mean over dimensions), ``active_units``, and
    ``n_test``, ``n_train``, ``ksg_k``, ``knn_k``, ``nll_samples``, ``nll_points``,
    ``recon_points``.

    Returns ``(metrics, points)``: ``metrics`` the dict above (:func:`evaluate` returns it alone)
    and ``points`` the per-test-point values behind it, from the same computation (no second
    pass, the same draws): ``test_index`` (int64, ``0 … n_test − 1``: the test points measured,
    the first ``n_test`` of the test split, in order), ``nll`` (float64, the NLL of each of the
    first ``nll_points`` of them; its mean is ``metrics["nll"]`` up to float32 rounding) and, with
    labels, ``knn_correct_k<k>`` (bool, one per test point: the k-NN classifier predicted its
    label) for ``knn_k`` and every ``extra_knn_k`` (the mean of ``knn_correct_k<knn_k>`` is
    ``knn_acc``) and ``knn_k`` (a 0-d int64 array); ``x_sha256`` (0-d str: :func:`x_fingerprint`
    of the ``n_test`` prepared test images), ``nll_samples`` and ``nll_points`` (0-d int64) say
    what was measured, so that :func:`~torchmim.experiments.statistics.compare_points` refuses
    points of other images or another NLL estimate. Two models evaluated on the same test split
    have the same points in the same order, so these pair over test points — a comparison of them
    measures test-sample noise, not the spread over training seeds.
    """
    if config is not None and not isinstance(config, EvalConfig):
        if y_test is not None:
            raise ConfigError("evaluate: y_test given twice (third positional argument and keyword)")
        config, y_test = None, config
    cfg = config or EvalConfig()
    unknown = set(options) - {f.name for f in dataclasses.fields(EvalConfig)}
    if unknown:
        raise ConfigError(f"evaluate: unknown options {sorted(unknown)}; the options are the "
                          "fields of EvalConfig")
    if options:
        cfg = dataclasses.replace(cfg, **options)
    if isinstance(data, DataSplits):
        (x_test, y_test), (x_train, y_train) = data.test, data.train_eval
    elif isinstance(data, tuple):
        if len(data) != 2:
            raise DataError(f"evaluate: a tuple of data must be (x_test, y_test), got {len(data)} "
                            "items")
        x_test, y_test = data
    else:
        x_test = data
    if cfg.consistency and not has_learned_data_prior(model):
        raise ConfigError("eval.consistency needs a learned data prior q(x) (model.data_prior, "
                          "e.g. gmm): this model's q(x) is defined through its decoder, so "
                          "consistency_x would compare the decoder's samples with themselves")
    check_precision(model, cfg.nll_precision, "eval.nll_precision")  # before any estimate runs
    threads = resolve_threads(cfg.threads, model, where="eval.threads")
    with torch_threads(threads):
        return _evaluate(model, cfg, x_test, y_test, x_train, y_train, seed, progress)


def _evaluate(model: LatentVariableModel, cfg: EvalConfig, x_test: Any, y_test: Any, x_train: Any,
              y_train: Any, seed: int, progress: bool
              ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    nll_samples = cfg.nll_samples if cfg.nll_samples is not None else default_nll_samples(model)
    xt = model.prepare_x(x_test, "x_test")[: cfg.max_points]
    x_nll = xt if cfg.nll_points is None else xt[: cfg.nll_points]
    x_rec = xt if cfg.recon_points is None else xt[: cfg.recon_points]
    out: dict[str, float] = {}
    if cfg.mi or cfg.mi_rank or cfg.mi_standardized:
        # one draw of codes z ∼ q(z|x) for every KSG estimate: they share their pairs (x, z)
        z = embed(model, xt, sample=True, seed=seed)
        if cfg.mi:
            out["mi"] = ksg_mutual_information(xt, z, k=cfg.ksg_k, standardize=cfg.ksg_standardize)
        out["ksg_k"] = cfg.ksg_k
        if cfg.mi and cfg.ksg_standardize:
            out["ksg_standardize"] = True
        if cfg.mi_rank:
            out["mi_rank"] = ksg_rank_mutual_information(xt, z, k=cfg.ksg_k)
        if cfg.mi_standardized:
            out["mi_standardized"] = ksg_mutual_information(xt, z, k=cfg.ksg_k, standardize=True)
    if cfg.consistency:
        out.update(prior_consistency(model, cfg.max_points, seed=seed + 3))
    recon_error = reconstruction_error(model, x_rec, seed=seed)
    nll, nll_points = _importance_sampled_nll(model, x_nll, nll_samples,
                                              batch_size=cfg.nll_batch_size,
                                              max_pairs=cfg.nll_max_pairs, seed=seed,
                                              progress=progress, precision=cfg.nll_precision)
    points: dict[str, np.ndarray] = {"test_index": np.arange(xt.shape[0], dtype=np.int64),
                                     "nll": nll_points,
                                     "x_sha256": np.asarray(x_fingerprint(xt)),
                                     "nll_samples": np.asarray(nll_samples, dtype=np.int64),
                                     "nll_points": np.asarray(x_nll.shape[0], dtype=np.int64),
                                     "nll_precision": np.asarray(cfg.nll_precision)}
    out.update({
        "nll": nll,
        "recon_rmse": recon_error,  # the name of results written before recon_error existed
        "recon_error": recon_error,
        "recon_mean_rmse": reconstruction_rmse(model, x_rec, sample=False, seed=seed),
        "posterior_var": float(posterior_variance(model, xt).mean()),
        "active_units": active_units(model, xt),
        "n_test": int(xt.shape[0]),
        "nll_samples": nll_samples,
        "nll_points": int(x_nll.shape[0]),
        "recon_points": int(x_rec.shape[0]),
    })
    if y_test is not None and x_train is not None and y_train is not None:
        n_fit = cfg.knn_train_points  # None: the whole train_eval split
        xtr = model.prepare_x(x_train, "x_train")[:n_fit]
        sample = cfg.knn_latent == "sample"
        z_train = embed(model, xtr, sample=sample, seed=seed + 1)
        z_test = embed(model, xt, sample=sample, seed=seed + 2)
        y_test_arr = _labels(y_test, cfg.max_points)
        y_train_arr = _labels(y_train, xtr.shape[0])
        for k in dict.fromkeys([cfg.knn_k, *cfg.extra_knn_k]):  # each k fit once
            correct = knn_correct(z_train, y_train_arr, z_test, y_test_arr, k=k)
            points[f"knn_correct_k{k}"] = correct
            accuracy = float(correct.mean())  # = knn_accuracy(...), without a second fit
            if k == cfg.knn_k:
                out["knn_acc"] = accuracy
            if k in cfg.extra_knn_k:
                out[f"knn_acc_k{k}"] = accuracy
        points["knn_k"] = np.asarray(cfg.knn_k, dtype=np.int64)
        out["n_train"] = int(xtr.shape[0])
        out["knn_k"] = cfg.knn_k
    if not all(math.isfinite(v) for v in out.values()):
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        raise DataError(f"evaluation produced non-finite values for {bad}")
    return out, points


def x_fingerprint(x: Tensor) -> str:
    """The sha256 (hex) of the prepared test images ``x`` as float32 bytes (contiguous, on the
    CPU): two evaluations with the same fingerprint measured the same images in the same order."""
    import hashlib

    data = x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()
    return hashlib.sha256(data.tobytes()).hexdigest()


def write_points(path: str | Path, points: dict[str, np.ndarray]) -> None:
    """Write the ``points`` of :func:`evaluate_points` to ``path`` (``points.npz``) atomically:
    a reader or a crash sees the old file or the new one, never a part."""
    import io

    from .io import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez(buffer, **points)
    atomic_write_bytes(path, buffer.getvalue())


def read_points(path: str | Path) -> dict[str, np.ndarray]:
    """The per-test-point values :func:`write_points` wrote (a one-line
    :class:`~torchmim.errors.DataError` for a missing or unreadable file)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            points = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read the test points {path}: {reason}") from None
    if "nll" not in points or "test_index" not in points:
        raise DataError(f"{path} is not a points file of torchmim's evaluation (no nll/test_index)")
    return points
