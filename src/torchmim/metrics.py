"""Evaluation measures of the paper: mutual information (KSG), test NLL, reconstruction, k-NN accuracy,
and posterior-collapse diagnostics.

Protocol of the paper (Section 6.2 and the reference code): KSG with k = 5 on pairs (x, z ∼ q(z|x)) of
up to 10,000 test points; 5-NN classifier fit on the z of the training set and scored on the test
set's z; reconstruction through samples z ∼ q(z|x), x̃ ∼ p(x|z). KSG grows like log N for a
near-deterministic encoder, so compare MI values only at equal N and k — every function that samples
reports what it used through its arguments, and :func:`evaluate` returns N and k with the numbers.

All functions take NumPy arrays or tensors, check them (shape, NaN/Inf) and raise
:class:`~torchmim.errors.DataError` with a clear message.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma
from torch import Tensor

from .data.loading import as_tensor, check_finite
from .errors import DataError
from .models.latent_variable_model import LatentVariableModel

__all__ = [
    "active_units",
    "embed",
    "evaluate",
    "importance_sampled_nll",
    "knn_accuracy",
    "ksg_mutual_information",
    "latent_activity",
    "mutual_information",
    "posterior_variance",
    "reconstruction_rmse",
]


# ---------------------------------------------------------------------------- helpers
def _as_2d_array(a: Any, name: str) -> np.ndarray:
    arr = a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        arr = arr.reshape(arr.shape[0], -1)
    if not np.isfinite(arr).all():
        raise DataError(f"{name} contains NaN or Inf")
    return arr.astype(np.float64)


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Fork torch's RNG (so the caller's stream is untouched) and seed it, if ``seed`` is given."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _device(model: LatentVariableModel) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


def _model_input(model: LatentVariableModel, x: Any, name: str = "x") -> Tensor:
    x = as_tensor(x, name=name)
    x = x.to(_device(model), dtype=next(model.parameters()).dtype)
    model.check_x(x, name=name)
    return check_finite(x, name=name)


def _batches(x: Tensor, batch_size: int) -> Iterator[Tensor]:
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size]


@contextlib.contextmanager
def _eval_mode(model: LatentVariableModel) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------- mutual information
def ksg_mutual_information(x: Any, z: Any, k: int = 5, *, standardize: bool = False,
                           workers: int = 1) -> float:
    """KSG estimate of I(x; z) in nats (Kraskov, Stögbauer & Grassberger 2004, algorithm 1):

        Î = ψ(k) + ψ(N) − ⟨ψ(n_x + 1) + ψ(n_z + 1)⟩,

    where ε_i is the max-norm distance from (x_i, z_i) to its k-th nearest neighbour in the joint
    space and n_x(i), n_z(i) count the points strictly closer than ε_i in each marginal space.
    Neighbour searches use KD-trees (``scipy.spatial.cKDTree``), O(N log N), not all pairs.

    Args:
        x, z: paired samples, shapes ``(N, d_x)`` and ``(N, d_z)`` (1-D arrays are one column;
            images are flattened).
        k: number of neighbours (the paper: 5).
        standardize: first rescale every coordinate of x and of z to unit variance. I(x; z) is
            invariant to such invertible per-coordinate maps but the max-norm estimate is not: when
            the codes live on a smaller scale than x, ε_i is set by x, n_z is inflated and the
            estimate biased low (docs/experiments.md, Fig. 5: MIM's codes have half the VAE's
            scale and the ordering of the two flips). The reference code does not standardise,
            hence the default.
        workers: threads for the KD-tree queries (-1: all cores).
    """
    xa, za = _as_2d_array(x, "x"), _as_2d_array(z, "z")
    n = xa.shape[0]
    if za.shape[0] != n:
        raise DataError(f"x and z must have the same number of samples, got {n} and {za.shape[0]}")
    if not 1 <= k < n:
        raise DataError(f"k must be between 1 and N - 1 = {n - 1}, got {k}")
    if standardize:
        xa, za = _unit_scale(xa), _unit_scale(za)
    joint = np.hstack([xa, za])
    dist, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf, workers=workers)
    radius = np.nextafter(dist[:, k], 0)  # strictly closer than ε_i
    n_x = cKDTree(xa).query_ball_point(xa, radius, p=np.inf, return_length=True, workers=workers) - 1
    n_z = cKDTree(za).query_ball_point(za, radius, p=np.inf, return_length=True, workers=workers) - 1
    return float(digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_z + 1)))


def _unit_scale(a: np.ndarray) -> np.ndarray:
    """Each column divided by its standard deviation (constant columns left as they are)."""
    std = a.std(axis=0)
    return a / np.where(std > 0, std, 1.0)


def embed(
    model: LatentVariableModel,
    x: Any,
    *,
    sample: bool = False,
    batch_size: int = 4096,
    seed: int | None = None,
) -> Tensor:
    """Latent codes of ``x``: posterior means (default) or samples z ∼ q(z|x), flattened to (N, D)."""
    xt = _model_input(model, x)
    with _eval_mode(model), _seeded(seed, xt.device):
        out = [model.encode(b, sample=sample) for b in _batches(xt, batch_size)]
    return torch.cat(out).reshape(xt.shape[0], -1)


def mutual_information(
    model: LatentVariableModel,
    x: Any,
    *,
    k: int = 5,
    max_points: int = 10_000,
    seed: int | None = 0,
    standardize: bool = False,
) -> float:
    """KSG estimate of I(x; z) for pairs (x, z ∼ q(z|x)) of the first ``max_points`` rows of ``x``
    (``standardize``: see :func:`ksg_mutual_information`)."""
    xt = _model_input(model, x)[:max_points]
    z = embed(model, xt, sample=True, seed=seed)
    return ksg_mutual_information(xt, z, k=k, standardize=standardize)


# ---------------------------------------------------------------------------- likelihood
def importance_sampled_nll(
    model: LatentVariableModel,
    x: Any,
    num_samples: int = 1000,
    *,
    batch_size: int = 256,
    max_pairs: int = 65536,
    seed: int | None = 0,
    progress: bool = False,
) -> float:
    """Test negative log-likelihood in nats of x under the model's marginal p(x) = ∫ p(x|z) p(z) dz:

        NLL = −mean_x [ logsumexp_s (log p(x|z_s) + log p(z_s) − log q(z_s|x)) − log S ],  z_s ∼ q(z|x).

    Batched over test points (``batch_size``) and over samples (at most ``max_pairs`` decoder
    evaluations at once, combined by a running logsumexp); no Python loop over points or samples.
    Returns the NLL (positive), not the log-likelihood.
    """
    xt = _model_input(model, x)
    total = 0.0
    batches = list(_batches(xt, batch_size))
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"NLL (S={num_samples})", unit="batch", leave=False)
    with _eval_mode(model), _seeded(seed, xt.device):
        for b in batches:
            total += float(model.log_marginal_likelihood(b, num_samples, max_pairs=max_pairs).sum())
    return -total / xt.shape[0]


# ---------------------------------------------------------------------------- reconstruction
def reconstruction_rmse(
    model: LatentVariableModel,
    x: Any,
    *,
    sample: bool = True,
    reduction: Literal["mean_norm", "rms"] = "mean_norm",
    batch_size: int = 4096,
    seed: int | None = 0,
) -> float:
    """Reconstruction error of x → z → x̃.

    With the defaults this is the paper's measure (its "RMSE", as computed by the reference code):
    the mean Euclidean norm ‖x − x̃‖ with z ∼ q(z|x) and x̃ ∼ p(x|z). ``sample=False`` reconstructs
    through the means; ``reduction="rms"`` returns √(mean ‖x − x̃‖²) instead.
    """
    xt = _model_input(model, x)
    sq = []
    with _eval_mode(model), _seeded(seed, xt.device):
        for b in _batches(xt, batch_size):
            x_rec = model.reconstruct(b, sample=sample)
            sq.append((b - x_rec).reshape(b.shape[0], -1).pow(2).sum(1))
    sq_t = torch.cat(sq).double()
    return float(sq_t.sqrt().mean() if reduction == "mean_norm" else sq_t.mean().sqrt())


# ---------------------------------------------------------------------------- representation
def knn_accuracy(z_train: Any, y_train: Any, z_test: Any, y_test: Any, k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour classifier (scikit-learn) fit on (z_train, y_train) and
    scored on (z_test, y_test); the paper's auxiliary task (k = 5)."""
    from sklearn.neighbors import KNeighborsClassifier

    zt, zs = _as_2d_array(z_train, "z_train"), _as_2d_array(z_test, "z_test")
    yt = np.asarray(y_train.cpu() if isinstance(y_train, Tensor) else y_train).reshape(-1)
    ys = np.asarray(y_test.cpu() if isinstance(y_test, Tensor) else y_test).reshape(-1)
    if len(yt) != len(zt) or len(ys) != len(zs):
        raise DataError(f"labels and codes differ in length: {len(zt)} codes / {len(yt)} labels "
                        f"(train), {len(zs)} / {len(ys)} (test)")
    if zt.shape[1] != zs.shape[1]:
        raise DataError(f"z_train and z_test have different widths {zt.shape[1]} and {zs.shape[1]}")
    if not 1 <= k <= len(zt):
        raise DataError(f"k must be between 1 and the number of training codes {len(zt)}, got {k}")
    return float(KNeighborsClassifier(n_neighbors=k).fit(zt, yt).score(zs, ys))


def posterior_variance(model: LatentVariableModel, x: Any, *, batch_size: int = 4096) -> Tensor:
    """Mean posterior variance per latent dimension, E_x[Var_{q(z|x)}[z_d]] (shape ``(D,)``).

    Near the prior's variance (1) in a dimension means that dimension has collapsed; MIM drives it
    towards the floor.
    """
    xt = _model_input(model, x)
    with _eval_mode(model):
        var = torch.cat([model.posterior(b).variance.reshape(b.shape[0], -1)
                         for b in _batches(xt, batch_size)])
    return var.mean(0).cpu()


def latent_activity(model: LatentVariableModel, x: Any, *, batch_size: int = 4096) -> Tensor:
    """A_d = Cov_x(E_{q(z|x)}[z_d]) per latent dimension (Burda et al., 2016), shape ``(D,)``."""
    means = embed(model, x, sample=False, batch_size=batch_size)
    return means.double().var(0, unbiased=True).float().cpu()


def active_units(model: LatentVariableModel, x: Any, *, threshold: float = 0.01) -> int:
    """Number of latent dimensions with activity A_d > ``threshold`` (Burda et al.: 0.01)."""
    return int((latent_activity(model, x) > threshold).sum())


# ---------------------------------------------------------------------------- all together
def evaluate(
    model: LatentVariableModel,
    x_test: Any,
    y_test: Any = None,
    *,
    x_train: Any = None,
    y_train: Any = None,
    ksg_k: int = 5,
    knn_k: int = 5,
    extra_knn_k: tuple[int, ...] | list[int] = (),
    max_points: int = 10_000,
    nll_samples: int | None = None,
    nll_points: int | None = None,
    recon_points: int | None = None,
    nll_batch_size: int = 256,
    nll_max_pairs: int = 65536,
    mi: bool = True,
    ksg_standardize: bool = False,
    knn_latent: Literal["sample", "mean"] = "sample",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """The paper's four measures and the collapse diagnostics, with N and k reported.

    Returns a dict with ``mi`` (KSG nats; skipped with ``mi=False``, e.g. for images, where the paper
    does not estimate it), ``nll`` (IS nats, on the first ``nll_points`` test points, default all),
    ``recon_rmse`` (mean ‖x − x̃‖, on the first ``recon_points`` test points, default all: an
    autoregressive decoder reconstructs pixel by pixel), ``knn_acc`` (k = ``knn_k``, if labels and training data are
    given) and ``knn_acc_k<k>`` for every ``extra_knn_k``, ``posterior_var`` (mean over dimensions),
    ``active_units``, and ``n_test``, ``n_train``, ``ksg_k``, ``knn_k``, ``nll_samples``,
    ``nll_points``, ``recon_points``. ``nll_batch_size`` and ``nll_max_pairs`` bound the memory of the NLL (test
    points per batch, decoder evaluations at once).
    """
    if nll_samples is None:  # the model's default: 1000 (Section 6.2), 5000 for image models
        nll_samples = getattr(getattr(model, "config", None), "default_nll_samples", 1000)
    xt = _model_input(model, x_test, "x_test")[:max_points]
    x_nll = xt if nll_points is None else xt[:nll_points]
    x_rec = xt if recon_points is None else xt[:recon_points]
    out: dict[str, float] = {}
    if mi:
        out["mi"] = mutual_information(model, xt, k=ksg_k, max_points=max_points, seed=seed,
                                       standardize=ksg_standardize)
        out["ksg_k"] = ksg_k
        if ksg_standardize:
            out["ksg_standardize"] = True
    out.update({
        "nll": importance_sampled_nll(model, x_nll, nll_samples, batch_size=nll_batch_size,
                                      max_pairs=nll_max_pairs, seed=seed, progress=progress),
        "recon_rmse": reconstruction_rmse(model, x_rec, seed=seed),
        "posterior_var": float(posterior_variance(model, xt).mean()),
        "active_units": active_units(model, xt),
        "n_test": int(xt.shape[0]),
        "nll_samples": nll_samples,
        "nll_points": int(x_nll.shape[0]),
        "recon_points": int(x_rec.shape[0]),
    })
    if y_test is not None and x_train is not None and y_train is not None:
        xtr = _model_input(model, x_train, "x_train")[:max_points]
        sample = knn_latent == "sample"
        z_train = embed(model, xtr, sample=sample, seed=seed + 1)
        z_test = embed(model, xt, sample=sample, seed=seed + 2)
        y_test_arr = np.asarray(y_test.cpu() if isinstance(y_test, Tensor) else y_test)[:max_points]
        y_train_arr = np.asarray(y_train.cpu() if isinstance(y_train, Tensor) else y_train)[:max_points]
        out["knn_acc"] = knn_accuracy(z_train, y_train_arr, z_test, y_test_arr, k=knn_k)
        for k in extra_knn_k:
            out[f"knn_acc_k{k}"] = knn_accuracy(z_train, y_train_arr, z_test, y_test_arr, k=k)
        out["n_train"] = int(xtr.shape[0])
        out["knn_k"] = knn_k
    if not all(math.isfinite(v) for v in out.values()):
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        raise DataError(f"evaluation produced non-finite values for {bad}")
    return out
