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
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist
from scipy.special import digamma
from torch import Tensor

from .allocator import keep_freed_memory
from .errors import ConfigError, DataError
from .layers import eval_mode
from .models.latent_variable_model import LatentVariableModel
from .networks import frozen_folds
from .precision import autocast, check_precision
from .threads import available_cores, torch_threads

__all__ = [
    "active_units",
    "embed",
    "energy_distance",
    "has_learned_data_prior",
    "importance_sampled_nll",
    "knn_accuracy",
    "knn_correct",
    "ksg_method",
    "ksg_mutual_information",
    "ksg_rank_mutual_information",
    "latent_activity",
    "mutual_information",
    "posterior_variance",
    "prior_consistency",
    "reconstruction_error",
    "reconstruction_rmse",
]


# ---------------------------------------------------------------------------- helpers
def _as_2d_array(a: Any, name: str) -> np.ndarray:
    try:
        arr = a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
    except (TypeError, ValueError):
        raise DataError(f"{name} is not a regular numeric array (rows of different lengths?)"
                        ) from None
    if arr.dtype.kind not in "fiu":
        raise DataError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise DataError(f"{name} must be an array of samples, one per row, got a scalar")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        arr = arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:])))
    if arr.shape[1] == 0:
        raise DataError(f"{name} has samples of no coordinates (shape {arr.shape})")
    if not np.isfinite(arr).all():
        raise DataError(f"{name} contains NaN or Inf")
    return arr.astype(np.float64)


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Fork torch's RNG (so the caller's stream is untouched) and seed it, if ``seed`` is given."""
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise DataError(f"seed must be an integer in [0, 2**64) or None, got {seed!r}")
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _model_input(model: LatentVariableModel, x: Any, name: str = "x") -> Tensor:
    xt = model.prepare_x(x, name)
    if xt.shape[0] == 0:
        raise DataError(f"{name} is empty (shape {tuple(xt.shape)}): a measure needs data")
    return xt


def _check_count(value: Any, name: str, low: int = 1) -> int:
    """A positive (>= ``low``) Python or NumPy integer, or a one-line DataError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _labels_array(y: Any, name: str) -> np.ndarray:
    """Class labels as a 1-D array: integers, booleans, strings, or integer-valued floats."""
    try:
        arr = np.asarray(y.cpu() if isinstance(y, Tensor) else y)
    except (TypeError, ValueError):
        raise DataError(f"{name} is not a regular array of labels") from None
    arr = arr.reshape(-1)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise DataError(f"{name} contains NaN or Inf; labels must be classes")
        if not np.array_equal(arr, np.round(arr)):
            raise DataError(f"{name} are continuous values (e.g. {float(arr[arr != np.round(arr)][0])}); "
                            "k-NN accuracy needs class labels (integers or strings)")
    elif arr.dtype.kind not in "biuUS":
        raise DataError(f"{name} must be class labels (integers or strings), got dtype {arr.dtype}")
    return arr


def _batches(x: Tensor, batch_size: int) -> Iterator[Tensor]:
    for i in range(0, x.shape[0], batch_size):
        yield x[i : i + batch_size]


# ---------------------------------------------------------------------------- mutual information
#: ``method="auto"`` uses brute force when N < N₀ · exp((d − d₀) / s), d = d_x + d_z, and the
#: KD-tree otherwise: a KD-tree query costs ~ a^d (the cells it must open grow exponentially with
#: the dimension) against N for all pairs, so the crossover dimension grows like log N. Fitted to
#: the crossovers measured on correlated Gaussians on the 2-core benchmark machine (bench/ksg.py,
#: docs/benchmarks.md "KSG and k-NN"): d ≈ 4.1, 5.3, 7.1 and 9.6 at N = 1k, 3k, 10k and 30k.
#: So 2+2 dims use the tree from N = 1000 on, 5+3 use brute force up to N ≈ 12k, 6+6 up to
#: N ≈ 150k, 10+10 and 20+20 at any practical N.
KSG_AUTO_CROSSOVER = (1000.0, 4.0, 1.6)  # N₀, d₀, s
#: Distance-matrix entries (float64) per row block of the brute-force path: 2^20 entries are 8 MiB
#: per matrix, 25 MiB per worker with the three matrices and the mask; large enough that the
#: per-block Python overhead (~50 µs) is about 1% of the block's work or less, small enough to bound
#: memory at any N (a block is at least one row: 800 KB per matrix at N = 100,000).
_KSG_BLOCK_ENTRIES = 1 << 20

_KSG_METHODS = ("auto", "kdtree", "brute")
_KSG_TREE_PARALLEL_MIN_N = 5000


def ksg_mutual_information(x: Any, z: Any, k: int = 5, *, standardize: bool = False,
                           method: str = "auto", workers: int | None = None) -> float:
    """KSG estimate of I(x; z) in nats (Kraskov, Stögbauer & Grassberger 2004, algorithm 1):

        Î = ψ(k) + ψ(N) − ⟨ψ(n_x + 1) + ψ(n_z + 1)⟩,

    where ε_i is the max-norm distance from (x_i, z_i) to its k-th nearest neighbour in the joint
    space and n_x(i), n_z(i) count the points strictly closer than ε_i in each marginal space.

    Two exact implementations, which give the same ε_i, the same counts and hence the same float,
    and a rule to choose between them:

    * ``"kdtree"``: KD-trees (``scipy.spatial.cKDTree``), O(N log N) in low dimension. The
      reference implementation.
    * ``"brute"``: all pairs, in row blocks of bounded memory, on ``workers`` threads. O(N² d),
      but a KD-tree degrades towards all pairs in high dimension (a query's ε-box overlaps ever
      more cells, so they no longer prune) and pays its tree walk on top, so brute force is an
      order of magnitude faster there (10,000 pairs in 20+20 dims: 10.6× in
      docs/benchmarks.md).
    * ``"auto"`` (default): whichever of the two is faster for N and d_x + d_z by a rule fitted
      to measurements (:func:`ksg_method`, :data:`KSG_AUTO_CROSSOVER`): the KD-tree for 2+2 dims
      from N = 1000 on, brute force for 20+20 dims at any N.

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
        method: ``"auto"``, ``"kdtree"`` or ``"brute"`` (above); the estimate does not depend on it.
        workers: threads (``None``: torch's intra-op thread count, which ``eval.threads`` sets;
            -1: every core available to the process).

    If x or z is constant (every sample the same), the result is exactly 0, the mutual information
    of anything with a constant; the KSG formula would give ψ(k) − ψ(N) there. Data with many exact
    duplicates (discrete values) is outside KSG's assumptions and biased, but computed as is.
    Raises :class:`~torchmim.errors.DataError` for scalars, ragged or non-numeric arrays, NaN/Inf,
    different numbers of samples and a ``k`` that is not an integer in [1, N − 1].
    """
    if method not in _KSG_METHODS:
        raise DataError(f"method must be one of {_KSG_METHODS}, got {method!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DataError(f"k must be an integer, got {k!r}")
    k = int(k)
    threads = _ksg_workers(workers)
    xa, za = _as_2d_array(x, "x"), _as_2d_array(z, "z")
    n = xa.shape[0]
    if za.shape[0] != n:
        raise DataError(f"x and z must have the same number of samples, got {n} and {za.shape[0]}")
    if n < 2:
        raise DataError(f"KSG needs paired samples, at least k + 1; got {n}")
    if not 1 <= k < n:
        raise DataError(f"k must be between 1 and N - 1 = {n - 1}, got {k}")
    if (xa == xa[0]).all() or (za == za[0]).all():
        # a constant carries no information: I = 0 exactly. KSG itself would return
        # ψ(k) − ψ(N) (−3.09 nats at k = 5, N = 100): every ε_i is 0 and every point "closer"
        return 0.0
    if standardize:
        xa, za = _unit_scale(xa), _unit_scale(za)
    if method == "auto":
        method = ksg_method(n, xa.shape[1], za.shape[1])
    if method == "brute":
        n_x, n_z = _ksg_counts_brute(xa, za, k, threads)
    else:
        # cKDTree starts its threads at every query: below a few thousand points that costs more
        # than it saves (1,000 pairs in 2+2 dims: 5.4 ms on one thread, 5.7 ms on two)
        n_x, n_z = _ksg_counts_kdtree(xa, za, k, threads if n >= _KSG_TREE_PARALLEL_MIN_N else 1)
    return float(digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_z + 1)))


def ksg_method(n: int, d_x: int, d_z: int) -> str:
    """The implementation ``ksg_mutual_information(method="auto")`` uses for N pairs of d_x + d_z
    dimensions: ``"brute"`` below the measured crossover N₀ · exp((d_x + d_z − d₀) / s)
    (:data:`KSG_AUTO_CROSSOVER`), ``"kdtree"`` from it on."""
    n0, d0, scale = KSG_AUTO_CROSSOVER
    return "brute" if n < n0 * math.exp((d_x + d_z - d0) / scale) else "kdtree"


def _ksg_workers(workers: int | None) -> int:
    if workers is None:
        return torch.get_num_threads()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers == 0 or workers < -1:
        raise DataError(f"workers must be a positive integer, -1 or None, got {workers!r}")
    return available_cores() if workers == -1 else workers


def _ksg_counts_kdtree(xa: np.ndarray, za: np.ndarray, k: int,
                       workers: int) -> tuple[np.ndarray, np.ndarray]:
    """n_x, n_z with KD-trees: the (k+1)-th joint distance (the point itself is the first) and
    the marginal points within the next float below it, i.e. strictly closer, less the point."""
    joint = np.hstack([xa, za])
    dist, _ = cKDTree(joint).query(joint, k=k + 1, p=np.inf, workers=workers)
    radius = np.nextafter(dist[:, k], 0)  # strictly closer than ε_i
    n_x = cKDTree(xa).query_ball_point(xa, radius, p=np.inf, return_length=True, workers=workers) - 1
    n_z = cKDTree(za).query_ball_point(za, radius, p=np.inf, return_length=True, workers=workers) - 1
    return n_x, n_z


def _ksg_counts_brute(xa: np.ndarray, za: np.ndarray, k: int,
                      workers: int) -> tuple[np.ndarray, np.ndarray]:
    """n_x, n_z from all pairs, row block by row block, with the KD-tree's exact semantics.

    The marginal distances are scipy's ``cdist(metric="chebyshev")``: max_c |a_c − b_c| in float64,
    the very operations of cKDTree's max-norm, so every ε_i and every comparison is bit-identical
    (integer data, duplicates and ties included: the point itself is at distance 0 and is one of
    the k + 1 smallest, as in the tree's query; the counts compare against the next float below
    ε_i, as the tree's ``query_ball_point`` does). It is also the fastest exact kernel measured
    here (half the time of ``torch.cdist(p=inf)``), and it releases the GIL, so the row blocks run
    on plain threads: each takes the next block when it is done, which keeps both cores busy on a
    shared machine where a static split (OpenMP) waits for a descheduled thread at every op.
    """
    n = xa.shape[0]
    rows = max(1, min(n, _KSG_BLOCK_ENTRIES // n))
    starts = iter(range(0, n, rows))
    lock = threading.Lock()
    n_x = np.empty(n, dtype=np.intp)
    n_z = np.empty(n, dtype=np.intp)

    def work() -> None:
        dx, dz, dj = (np.empty((rows, n)) for _ in range(3))
        below = np.empty((rows, n), dtype=bool)
        while True:
            with lock:
                lo = next(starts, None)
            if lo is None:
                return
            hi = min(lo + rows, n)
            b = hi - lo
            cdist(xa[lo:hi], xa, "chebyshev", out=dx[:b])
            cdist(za[lo:hi], za, "chebyshev", out=dz[:b])
            np.maximum(dx[:b], dz[:b], out=dj[:b])
            # (k+1)-th smallest joint distance, the point itself (0) included; torch's top-k is
            # 5× faster than np.partition here (8.9 against 45 ms per 256 × 10,000 block)
            eps = torch.topk(torch.from_numpy(dj[:b]), k + 1, dim=1, largest=False).values[:, k]
            radius = np.nextafter(eps.numpy(), 0)[:, None]  # strictly closer than ε_i
            n_x[lo:hi] = np.count_nonzero(np.less_equal(dx[:b], radius, out=below[:b]), axis=1) - 1
            n_z[lo:hi] = np.count_nonzero(np.less_equal(dz[:b], radius, out=below[:b]), axis=1) - 1

    workers = max(1, min(workers, -(-n // rows)))
    # one torch thread per worker: the workers are the parallelism (torch's own threads would
    # oversubscribe the cores, 2 × 2 on two cores)
    with torch_threads(1):
        if workers == 1:
            work()
        else:
            with ThreadPoolExecutor(workers) as pool:
                for f in [pool.submit(work) for _ in range(workers)]:
                    f.result()
    return n_x, n_z


def ksg_rank_mutual_information(x: Any, z: Any, k: int = 5, *, method: str = "auto",
                                workers: int | None = None) -> float:
    """KSG estimate of I(x; z) in nats on the per-coordinate ranks of x and z (the empirical copula):
    each column is replaced by its ranks divided by N (ties get their average rank), then
    :func:`ksg_mutual_information` is applied.

    I(x; z) is invariant to strictly monotone maps of single coordinates, and so is this estimate,
    exactly: the ranks, hence the float, do not change under such a map. The raw estimate is not
    (its max-norm neighbourhoods depend on each coordinate's scale, which is what ``standardize``
    only partly fixes), so this is a second, scale-free estimate to check a conclusion against
    (docs/experiments.md, Fig. 5). On data whose coordinates are already uniform it agrees with the
    raw KSG up to the estimator's noise. Arguments and errors as :func:`ksg_mutual_information`.
    """
    from scipy.stats import rankdata

    xa, za = _as_2d_array(x, "x"), _as_2d_array(z, "z")
    if xa.shape[0] != za.shape[0]:
        raise DataError(f"x and z must have the same number of samples, got {xa.shape[0]} and "
                        f"{za.shape[0]}")
    n = xa.shape[0]
    xr = rankdata(xa, axis=0) / n
    zr = rankdata(za, axis=0) / n
    return ksg_mutual_information(xr, zr, k=k, method=method, workers=workers)


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
    rank: bool = False,
) -> float:
    """KSG estimate of I(x; z) for pairs (x, z ∼ q(z|x)) of the first ``max_points`` rows of ``x``
    (``standardize``: see :func:`ksg_mutual_information`; ``rank``: on the ranks of every
    coordinate, :func:`ksg_rank_mutual_information`, which makes ``standardize`` moot). The same
    ``seed`` draws the same codes z, so estimates that differ only in these options share pairs."""
    max_points = _check_count(max_points, "max_points")
    xt = _model_input(model, x)[:max_points]
    z = embed(model, xt, sample=True, seed=seed)
    if rank:
        return ksg_rank_mutual_information(xt, z, k=k)
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
    reduction: str = "mean",
    precision: str = "full",
) -> float | np.ndarray:
    """Test negative log-likelihood in nats of x under the model's marginal p(x) = ∫ p(x|z) p(z) dz:

        NLL = −mean_x [ logsumexp_s (log p(x|z_s) + log p(z_s) − log q(z_s|x)) − log S ],  z_s ∼ q(z|x).

    Batched over test points (``batch_size``) and over samples (at most ``max_pairs`` pairs drawn at
    once, combined by a running logsumexp; the decoder runs on cache-sized blocks of them, see
    :meth:`~torchmim.models.LatentVariableModel.log_marginal_likelihood`); no Python loop over
    points or samples. The encoder runs once per test point and p(z) once per call. With the same
    ``seed``, ``batch_size`` and ``max_pairs`` the draws are those of torchmim 0.1's implementation.
    Returns the NLL (positive), not the log-likelihood: with ``reduction="mean"`` (the default) its
    mean over the points (a float); with ``reduction="none"`` the NLL of each point, in order (a
    float64 array; the same draws, so its mean equals the ``"mean"`` value up to float32 rounding of
    the per-batch sums). ``precision="bf16-mixed"``: the networks in bfloat16, every log-density
    and the logsumexp in float32 (:mod:`torchmim.precision`; the same draws).
    """
    if reduction not in ("mean", "none"):
        raise ConfigError(f"importance_sampled_nll: reduction must be 'mean' or 'none', got "
                          f"{reduction!r}")
    check_precision(model, precision, "precision")  # evaluate_points checks eval.nll_precision
    mean, points = _importance_sampled_nll(model, x, num_samples, batch_size=batch_size,
                                           max_pairs=max_pairs, seed=seed, progress=progress,
                                           precision=precision)
    return mean if reduction == "mean" else points


def _importance_sampled_nll(model: LatentVariableModel, x: Any, num_samples: int, *,
                            batch_size: int, max_pairs: int, seed: int | None,
                            progress: bool, precision: str = "full") -> tuple[float, np.ndarray]:
    """One pass of :func:`importance_sampled_nll`: the mean NLL (the arithmetic of torchmim 0.1:
    float per-batch sums) and the per-point NLL (float64) of the same draws."""
    num_samples = _check_count(num_samples, "num_samples")
    batch_size = _check_count(batch_size, "batch_size")
    max_pairs = _check_count(max_pairs, "max_pairs")
    xt = _model_input(model, x)
    # glibc: keep the freed (chunk × batch) buffers for the next chunk instead of page-faulting
    # them in again (Trainer.fit sets it too; here for a model evaluated without training; a
    # process-wide malloc setting, see torchmim.allocator)
    keep_freed_memory()
    total = 0.0
    per_point: list[np.ndarray] = []
    batches = list(_batches(xt, batch_size))
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"NLL (S={num_samples})", unit="batch", leave=False)
    # inference mode (not only no_grad): no version counters or autograd metadata on the S·N
    # decoder activations; p(z) is built once for all batches (a VampPrior encodes its K
    # pseudo-inputs to build it); a tanh MLP folds its weights once for all the decoder blocks
    with (eval_mode(model), torch.inference_mode(), _seeded(seed, xt.device),
          frozen_folds(model), autocast(precision, xt.device)):
        pz = model.prior()
        for b in batches:
            log_px = model.log_marginal_likelihood(b, num_samples, max_pairs=max_pairs, pz=pz)
            total += float(log_px.sum())
            per_point.append(-log_px.detach().cpu().double().numpy())
    points = np.concatenate(per_point) if per_point else np.zeros(0, dtype=np.float64)
    return -total / xt.shape[0], points


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


def energy_distance(a: Any, b: Any, *, block: int = 2048) -> float:
    """The energy distance between two samples (rows), √(2 E‖A − B‖ − E‖A − A′‖ − E‖B − B′‖).

    A metric between distributions (zero only for equal ones) for samples in any dimension, the
    V-statistic over all pairs, as :func:`scipy.stats.energy_distance` computes it in 1-D (which
    it equals there). Float64; pairwise distances in blocks of ``block`` rows (memory
    ``block × n``), so a few thousand points per side take well under a second.
    """
    xa, xb = _as_2d_array(a, "a"), _as_2d_array(b, "b")
    if len(xa) == 0 or len(xb) == 0:
        raise DataError(f"energy_distance needs samples on both sides, got {len(xa)} and "
                        f"{len(xb)} rows")
    if xa.shape[1] != xb.shape[1]:
        raise DataError(f"energy_distance: the samples have {xa.shape[1]} and {xb.shape[1]} "
                        "coordinates; they must have the same")
    block = _check_count(block, "block")
    ta, tb = torch.from_numpy(xa), torch.from_numpy(xb)

    def mean_dist(u: Tensor, v: Tensor) -> float:
        # the direct differences, not cdist's ‖u‖² + ‖v‖² − 2u·v (which loses digits to cancellation)
        total = sum(float(torch.cdist(u[i:i + block], v,
                                      compute_mode="donot_use_mm_for_euclid_dist").sum())
                    for i in range(0, len(u), block))
        return total / (len(u) * len(v))

    d2 = 2 * mean_dist(ta, tb) - mean_dist(ta, ta) - mean_dist(tb, tb)
    return math.sqrt(max(d2, 0.0))  # rounding can leave -1e-17 for equal samples


def has_learned_data_prior(model: LatentVariableModel) -> bool:
    """Whether q(x) is a density of its own, not one defined through the model's decoder (the
    marginal of Eq. 16, whose samples are decoded samples of p(z)): what consistency needs."""
    return not getattr(getattr(model, "data_prior", None), "needs_model", False)


def prior_consistency(model: LatentVariableModel, n: int = 5000, *,
                      seed: int | None = 0) -> dict[str, float]:
    """How far the model is from consistent (Appendix D.2–D.4): energy distances between

    * ``consistency_x``: samples of the learned data prior q(x) and the decoding of the latent
      prior, x ∼ p(x|z), z ∼ p(z) (the green histogram against the red line of Fig. 13 e–f), and
    * ``consistency_z``: samples of the latent prior p(z) and the encoding of the data prior,
      z ∼ q(z|x), x ∼ q(x) (yellow against blue).

    Both are zero in the limit of a consistent joint, q(x)q(z|x) = p(z)p(x|z), and grow as the
    two factorisations drift apart; :func:`energy_distance` on ``n`` samples per side (a sample
    estimate: it is not exactly zero for two independent samples of one distribution, and shrinks
    like 1/√n). Needs a learned data prior q(x) that can be sampled (not the marginal of Eq. 16,
    whose samples are the decoder's by construction).
    """
    n = _check_count(n, "n", low=2)
    if not has_learned_data_prior(model):
        raise DataError("prior_consistency needs a learned data prior q(x): this model's q(x) is "
                        "defined through its decoder (e.g. the marginal of Eq. 16), so its samples "
                        "are decoded samples of p(z) and consistency_x would measure nothing")
    qx = model.data_distribution()
    with torch.no_grad(), eval_mode(model), _seeded(seed, next(model.parameters()).device):
        try:
            x_q = qx.sample((n,))
        except NotImplementedError as e:
            raise DataError(f"prior_consistency: the model's data prior q(x) "
                            f"({type(qx).__name__}) cannot be sampled") from e
        pz = model.latent_prior()
        z_p = pz.sample((n,))
        x_dec = model.decode(pz.sample((n,)), sample=True)
        z_enc = model.encode(x_q, sample=True)
    flat = (lambda t: t.reshape(t.shape[0], -1).double().cpu().numpy())
    return {"consistency_x": energy_distance(flat(x_q), flat(x_dec)),
            "consistency_z": energy_distance(flat(z_p), flat(z_enc))}


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
def knn_correct(z_train: Any, y_train: Any, z_test: Any, y_test: Any, k: int = 5) -> np.ndarray:
    """Per test code, whether a k-nearest-neighbour classifier (scikit-learn) fit on
    (z_train, y_train) predicts its label y_test: a bool array, one entry per test code, in order.
    Its mean is :func:`knn_accuracy`; paired over the same test points it compares two models
    (:func:`torchmim.experiments.statistics.compare_points`)."""
    from sklearn.neighbors import KNeighborsClassifier

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise DataError(f"k must be an integer, got {k!r}")
    zt, zs = _as_2d_array(z_train, "z_train"), _as_2d_array(z_test, "z_test")
    yt, ys = _labels_array(y_train, "y_train"), _labels_array(y_test, "y_test")
    if len(zs) == 0:
        raise DataError("the test set is empty: k-NN accuracy needs at least one test code")
    if len(yt) != len(zt) or len(ys) != len(zs):
        raise DataError(f"labels and codes differ in length: {len(zt)} codes / {len(yt)} labels "
                        f"(train), {len(zs)} / {len(ys)} (test)")
    if zt.shape[1] != zs.shape[1]:
        raise DataError(f"z_train and z_test have different widths {zt.shape[1]} and {zs.shape[1]}")
    if not 1 <= k <= len(zt):
        raise DataError(f"k must be between 1 and the number of training codes {len(zt)}, got {k}")
    # sklearn's "auto" is already the fastest of its algorithms at the paper's sizes (issue 11,
    # docs/benchmarks.md "KSG and k-NN": 10k/50k training codes, 10k test, d = 2, 20, 80): it takes
    # the KD-tree below 16 dims (brute force is 10-20× slower at d = 2) and brute force above
    # (OpenMP-parallel distance blocks; the KD-tree is 7-10× slower at d = 80, the ball tree worse),
    # and n_jobs=-1 gained nothing. Every algorithm gave the same predictions on that data.
    clf = KNeighborsClassifier(n_neighbors=k, algorithm="auto")
    return np.asarray(clf.fit(zt, yt).predict(zs) == ys, dtype=bool)


def knn_accuracy(z_train: Any, y_train: Any, z_test: Any, y_test: Any, k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour classifier (scikit-learn) fit on (z_train, y_train) and
    scored on (z_test, y_test); the paper's auxiliary task (k = 5). The mean of
    :func:`knn_correct` (scikit-learn's ``score`` is the same mean)."""
    return float(knn_correct(z_train, y_train, z_test, y_test, k=k).mean())


def posterior_variance(model: LatentVariableModel, x: Any, *, batch_size: int = 4096) -> Tensor:
    """Mean posterior variance per latent dimension, E_x[Var_{q(z|x)}[z_d]] (shape ``(D,)``).

    Near the prior's variance (1) in a dimension means that dimension has collapsed; MIM drives it
    towards the floor.
    """
    batch_size = _check_count(batch_size, "batch_size")
    xt = _model_input(model, x)
    with eval_mode(model), torch.no_grad():
        var = torch.cat([model.posterior(b).variance.reshape(b.shape[0], -1)
                         for b in _batches(xt, batch_size)])
    return var.mean(0).cpu()


def latent_activity(model: LatentVariableModel, x: Any, *, batch_size: int = 4096) -> Tensor:
    """A_d = Cov_x(E_{q(z|x)}[z_d]) per latent dimension (Burda et al., 2016), shape ``(D,)``."""
    means = embed(model, x, sample=False, batch_size=batch_size)
    if means.shape[0] < 2:
        raise DataError(f"latent activity is a variance over points: it needs at least 2, got "
                        f"{means.shape[0]}")
    return means.double().var(0, unbiased=True).float().cpu()


def active_units(model: LatentVariableModel, x: Any, *, threshold: float = 0.01) -> int:
    """Number of latent dimensions with activity A_d > ``threshold`` (Burda et al.: 0.01)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            math.isfinite(threshold) and threshold >= 0):
        raise DataError(f"threshold must be a finite number >= 0, got {threshold!r}")
    return int((latent_activity(model, x) > threshold).sum())


def __getattr__(name: str) -> Any:
    """``metrics.evaluate`` is :func:`torchmim.evaluation.evaluate` (it moved there with its
    :class:`~torchmim.evaluation.EvalConfig`); resolved lazily, as evaluation imports this module."""
    if name == "evaluate":
        from .evaluation import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
