"""Evaluation measures of the paper: mutual information (KSG), test NLL, reconstruction, k-NN accuracy,
and posterior-collapse diagnostics. Which of them a run reports, on how many points, is the protocol
of :mod:`torchmim.evaluation` (``evaluate`` and ``EvalConfig``; ``metrics.evaluate`` still works).

Protocol of the paper (Section 6.2 and the reference code): KSG with k = 5 on pairs (x, z ∼ q(z|x)) of
up to 10,000 test points; 5-NN classifier fit on the z of the training set and scored on the test
set's z; reconstruction through samples z ∼ q(z|x), x̃ ∼ p(x|z). KSG grows like log N for a
near-deterministic encoder, so compare MI values only at equal N and k — every function that samples
reports what it used through its arguments, and ``evaluate`` returns N and k with the numbers.

All functions take NumPy arrays or tensors, check them (shape, NaN/Inf) and raise
:class:`~torchmim.errors.DataError` with a clear message.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma
from torch import Tensor

from .errors import DataError
from .models.latent_variable_model import LatentVariableModel

__all__ = [
    "active_units",
    "embed",
    "importance_sampled_nll",
    "knn_accuracy",
    "ksg_mutual_information",
    "latent_activity",
    "mutual_information",
    "posterior_variance",
    "reconstruction_error",
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


def _model_input(model: LatentVariableModel, x: Any, name: str = "x") -> Tensor:
    return model.prepare_x(x, name)


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
    """Latent codes of ``x``: posterior means (default) or samples z ∼ q(z|x), flattened to (N, D).

    :meth:`~torchmim.models.LatentVariableModel.encode` (eval mode, no gradients, batches) under a
    forked RNG seeded with ``seed``, so that the caller's random stream is left as it was.
    """
    xt = _model_input(model, x)
    with _seeded(seed, xt.device):
        z = model.encode(xt, sample=sample, batch_size=batch_size)
    return z.reshape(xt.shape[0], -1)


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
def _squared_errors(model: LatentVariableModel, x: Any, sample: bool, batch_size: int,
                    seed: int | None) -> Tensor:
    """‖x − x̃‖² per point (float64), x̃ reconstructed through samples or through the means."""
    xt = _model_input(model, x)
    with _seeded(seed, xt.device):
        x_rec = model.reconstruct(xt, sample=sample, batch_size=batch_size)
    return (xt - x_rec).reshape(xt.shape[0], -1).double().pow(2).sum(1)


def reconstruction_error(
    model: LatentVariableModel, x: Any, *, sample: bool = True, batch_size: int = 4096,
    seed: int | None = 0,
) -> float:
    """The paper's reconstruction measure: the mean Euclidean norm  mean_i ‖x_i − x̃_i‖  with
    z ∼ q(z|x_i), x̃_i ∼ p(x|z) (``sample=False``: through the means).

    The paper and its reference code call this "RMSE", but it is neither a root of a mean square
    nor per coordinate: it grows like √D with the dimension and includes the decoder's sampling
    noise, so it can be many times the :func:`reconstruction_rmse` of the mean reconstruction
    (issue 10 reports 6.94 against 0.97 on sklearn's 64-pixel digits). Kept, under this honest
    name, to compare with the paper's figures.
    """
    return float(_squared_errors(model, x, sample, batch_size, seed).sqrt().mean())


def reconstruction_rmse(
    model: LatentVariableModel, x: Any, *, sample: bool = False, batch_size: int = 4096,
    seed: int | None = 0,
) -> float:
    """Root-mean-square reconstruction error over points and coordinates,

        √( mean_{i, d} (x_id − x̃_id)² ),

    of the mean reconstruction x̃ = E[x | z = E[z|x]] (``sample=True``: through samples
    z ∼ q(z|x), x̃ ∼ p(x|z)). In the units of x, comparable across dimensions; for the paper's
    measure see :func:`reconstruction_error`.
    """
    sq = _squared_errors(model, x, sample, batch_size, seed)
    return float((sq.mean() / math.prod(model.x_shape)).sqrt())


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


def __getattr__(name: str) -> Any:
    """``metrics.evaluate`` is :func:`torchmim.evaluation.evaluate` (it moved there with its
    :class:`~torchmim.evaluation.EvalConfig`); resolved lazily, as evaluation imports this module."""
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
