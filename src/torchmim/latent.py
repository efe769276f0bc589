"""Latent-space tools for any trained model: encode, decode, interpolate, nearest neighbours and
sampling around a point's code — batched, in the user's own units.

Inputs are raw rows (``(N, D)`` features, or images ``(N, *x_shape)``): when the model was
trained on standardised data, its stored :class:`~torchmim.data.transform.DataTransform` maps
them to the model's inputs before the encoder and maps decoded means back after the decoder, so
what comes out is in the units of the training file. Codes are posterior means E[z|x] unless
``sample=True``. Every function also takes codes instead of rows (``codes=True``).

Interpolation follows the prior's geometry on request: ``linear`` (a straight line in z),
``spherical`` (slerp, White 2016, in coordinates whitened by the prior's mean and standard
deviation: the path stays in the prior's typical set of a Gaussian, where a straight line between
two codes passes through the low-norm, rarely sampled centre) or ``quantile`` (straight in the
prior's per-coordinate CDF, then back through its inverse: the exact marginal CDF of a factorised
Gaussian prior, the empirical CDF of prior samples for any other prior).

The command line is ``torchmim latent ...`` (:mod:`torchmim.latent_cli`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Independent, Normal

from .errors import DataError
from .layers import eval_mode
from .models.latent_variable_model import LatentVariableModel

__all__ = ["INTERPOLATIONS", "Interpolation", "Neighbors", "RadiusSamples", "decode", "encode",
           "image_shape", "interpolate", "nearest_neighbors", "sample_around", "save_image_grid",
           "to_images", "to_model_inputs"]

#: The interpolation paths of :func:`interpolate`.
INTERPOLATIONS = ("linear", "spherical", "quantile")


# ------------------------------------------------------------------------------ raw ↔ model
def _transform(model: LatentVariableModel) -> Any:
    return getattr(model, "data_transform", None)


def to_model_inputs(model: LatentVariableModel, x: Any, *, name: str = "x") -> Tensor:
    """Raw rows → the model's input batch: the stored transform (e.g. standardisation) applied,
    flat rows reshaped to the model's ``x_shape``; a one-line :class:`DataError` otherwise."""
    if isinstance(x, Tensor):
        t = x.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise DataError(f"{name} is not a numeric array ({str(e).splitlines()[0]})") from None
    if not t.is_floating_point():
        t = t.double()
    if t.dim() < 1 or t.shape[0] == 0:
        raise DataError(f"{name} is empty (shape {tuple(t.shape)})")
    size = math.prod(model.x_shape)
    if t[0].numel() != size:
        raise DataError(f"{name} has rows of shape {tuple(t.shape[1:])} ({t[0].numel()} values) "
                        f"but the model takes {size} values per row (x_shape {model.x_shape})")
    if not torch.isfinite(t).all():
        rows = (~torch.isfinite(t)).reshape(t.shape[0], -1).any(1).nonzero().flatten()
        raise DataError(f"{name} contains NaN or Inf in {len(rows)} row(s), first at row "
                        f"{int(rows[0])}")
    tr = _transform(model)
    t = t.reshape(t.shape[0], -1).double()
    if tr is not None:
        t = tr.forward(t)
    return model.prepare_x(t.reshape(t.shape[0], *model.x_shape), name)


def _codes(model: LatentVariableModel, z: Any, name: str = "z") -> Tensor:
    return model.prepare_z(z.detach().cpu() if isinstance(z, Tensor) else np.asarray(z), name)


def encode(model: LatentVariableModel, x: Any, *, sample: bool = False,
           seed: int | None = None) -> Tensor:
    """Codes of raw rows ``x``: posterior means (default) or one sample each (``sample=True``,
    seeded by ``seed``), shape ``(N, *z_shape)``."""
    xt = to_model_inputs(model, x)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return model.encode(xt, sample=sample)


def decode(model: LatentVariableModel, z: Any, *, sample: bool = False,
           seed: int | None = None) -> Tensor:
    """Decoder means (default) or samples of codes ``z``, in the raw units of the training data
    (the stored transform inverted), shape ``(N, *x_shape)``."""
    zt = _codes(model, z)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        x = model.decode(zt, sample=sample)
    tr = _transform(model)
    if tr is None:
        return x
    return tr.inverse(x.reshape(x.shape[0], -1).double()).to(x.dtype).reshape(x.shape)


def _as_codes(model: LatentVariableModel, points: Any, codes: bool, name: str) -> Tensor:
    return _codes(model, points, name) if codes else encode(model, points)


# ------------------------------------------------------------------------------ prior geometry
def _prior_samples(model: LatentVariableModel, n: int, seed: int) -> Tensor:
    with eval_mode(model), torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.latent_prior().sample((n,)).reshape(n, -1)


def _factorized_normal(model: LatentVariableModel) -> tuple[Tensor, Tensor] | None:
    """(loc, scale) of a factorised Gaussian prior, else ``None``."""
    with eval_mode(model), torch.no_grad():
        pz = model.latent_prior()
    base = pz.base_dist if isinstance(pz, Independent) else pz
    if not isinstance(base, Normal):  # torchmim.distributions.normal.Normal too
        return None
    d = math.prod(model.z_shape)
    return base.loc.expand(model.z_shape).reshape(d), base.scale.expand(model.z_shape).reshape(d)


def _prior_moments(model: LatentVariableModel, seed: int) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation per coordinate of p(z): exact where the distribution gives
    them, else from 20,000 seeded prior samples."""
    normal = _factorized_normal(model)
    if normal is not None:
        return normal
    s = _prior_samples(model, 20_000, seed)
    return s.mean(0), s.std(0).clamp_min(1e-12)


def _slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation of rows a, b (B, d) at t (T,) → (B, T, d); linear where the two
    directions (nearly) coincide or a row is zero."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    cos = ((a / na.clamp_min(1e-30)) * (b / nb.clamp_min(1e-30))).sum(-1).clamp(-1, 1)
    omega = torch.arccos(cos)[:, None, None]  # (B, 1, 1)
    so = torch.sin(omega)
    tt = t[None, :, None]
    lin = (1 - tt) * a[:, None] + tt * b[:, None]
    safe = so.abs() > 1e-6
    so_safe = torch.where(safe, so, torch.ones_like(so))
    sph = (torch.sin((1 - tt) * omega) / so_safe) * a[:, None] + (torch.sin(tt * omega) / so_safe
                                                                  ) * b[:, None]
    return torch.where(safe, sph, lin)


def _quantile_path(model: LatentVariableModel, a: Tensor, b: Tensor, t: Tensor, seed: int
                   ) -> Tensor:
    normal = _factorized_normal(model)
    tt = t[None, :, None]
    if normal is not None:
        loc, scale = (v.double() for v in normal)
        std = Normal(torch.zeros((), dtype=torch.float64), torch.ones((), dtype=torch.float64))
        eps = 1e-12
        ua = std.cdf((a - loc) / scale).clamp(eps, 1 - eps)
        ub = std.cdf((b - loc) / scale).clamp(eps, 1 - eps)
        u = (1 - tt) * ua[:, None] + tt * ub[:, None]
        return loc + scale * std.icdf(u)
    # any other prior: per-coordinate empirical CDF of seeded prior samples (sorted), linear
    # between the order statistics
    s = np.sort(_prior_samples(model, 20_000, seed).double().numpy(), axis=0)
    ranks = (np.arange(len(s)) + 0.5) / len(s)
    a_np, b_np = a.numpy(), b.numpy()
    out = np.empty((a.shape[0], t.shape[0], a.shape[1]))
    for j in range(a.shape[1]):
        ua = np.interp(a_np[:, j], s[:, j], ranks)
        ub = np.interp(b_np[:, j], s[:, j], ranks)
        u = (1 - t.numpy())[None] * ua[:, None] + t.numpy()[None] * ub[:, None]
        out[:, :, j] = np.interp(u, ranks, s[:, j])
    return torch.from_numpy(out)


# ------------------------------------------------------------------------------ the tools
@dataclass
class Interpolation:
    """Paths between pairs of points: ``z`` (B, steps, *z_shape) codes, ``x`` (B, steps,
    *x_shape) decoded means in raw units, ``t`` (steps,) positions in [0, 1]."""

    z: Tensor
    x: Tensor
    t: Tensor


def interpolate(model: LatentVariableModel, start: Any, end: Any, steps: int = 8, *,
                method: str = "linear", codes: bool = False, seed: int = 0) -> Interpolation:
    """Interpolate between ``start[i]`` and ``end[i]`` (raw rows, or codes with ``codes=True``)
    in ``steps`` evenly spaced positions, endpoints included (the first and last codes are the
    endpoints' codes exactly), along ``method`` (:data:`INTERPOLATIONS`, see the module docs),
    and decode every code. ``seed`` seeds the prior samples that non-Gaussian priors need."""
    if method not in INTERPOLATIONS:
        raise DataError(f"unknown interpolation {method!r}; choose one of {list(INTERPOLATIONS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise DataError(f"steps must be an integer >= 2, got {steps!r}")
    za = _as_codes(model, start, codes, "start")
    zb = _as_codes(model, end, codes, "end")
    if za.shape != zb.shape:
        raise DataError(f"start and end hold {za.shape[0]} and {zb.shape[0]} points; give pairs")
    n, d = za.shape[0], math.prod(model.z_shape)
    a, b = za.reshape(n, d).double(), zb.reshape(n, d).double()
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    if method == "linear":
        path = (1 - t)[None, :, None] * a[:, None] + t[None, :, None] * b[:, None]
    elif method == "spherical":
        mean, std = (v.double() for v in _prior_moments(model, seed))
        path = mean + std * _slerp((a - mean) / std, (b - mean) / std, t)
    else:
        path = _quantile_path(model, a, b, t, seed)
    path = path.to(za.dtype)
    path[:, 0], path[:, -1] = za.reshape(n, d), zb.reshape(n, d)
    z = path.reshape(n, steps, *model.z_shape)
    x = decode(model, z.reshape(n * steps, *model.z_shape))
    return Interpolation(z=z, x=x.reshape(n, steps, *x.shape[1:]), t=t.to(za.dtype))


@dataclass
class Neighbors:
    """``indices`` (B, k) into the reference rows, nearest first, and their Euclidean
    ``distances`` (B, k) in latent space."""

    indices: np.ndarray
    distances: np.ndarray


def nearest_neighbors(model: LatentVariableModel, queries: Any, reference: Any = None, k: int = 5,
                      *, codes: bool = False) -> Neighbors:
    """The ``k`` reference points whose codes are nearest each query's code (posterior means,
    Euclidean; scikit-learn's ``NearestNeighbors``). ``reference=None``: the queries are their own
    reference and each point's own row is left out of its neighbours."""
    from sklearn.neighbors import NearestNeighbors

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DataError(f"k must be a positive integer, got {k!r}")
    zq = _as_codes(model, queries, codes, "queries")
    zq = zq.reshape(zq.shape[0], -1).double().cpu().numpy()
    self_ref = reference is None
    zr = zq if self_ref else _as_codes(model, reference, codes, "reference")
    zr = zr if self_ref else zr.reshape(zr.shape[0], -1).double().cpu().numpy()
    if k + self_ref > len(zr):
        raise DataError(f"k={k} neighbours asked of {len(zr) - self_ref} reference points")
    dist, idx = NearestNeighbors(n_neighbors=k + self_ref).fit(zr).kneighbors(zq)
    if self_ref:  # drop each query's own row (first unless it has exact duplicates)
        keep = idx != np.arange(len(zq))[:, None]
        keep[keep.sum(1) > k, -1] = False  # own row not among them: drop the farthest
        idx = idx[keep].reshape(len(zq), k)
        dist = dist[keep].reshape(len(zq), k)
    return Neighbors(indices=idx, distances=dist)


@dataclass
class RadiusSamples:
    """``n`` codes drawn around each of B centres: ``centers`` (B, *z_shape), ``z`` (B, n,
    *z_shape) and their decoded means ``x`` (B, n, *x_shape) in raw units."""

    centers: Tensor
    z: Tensor
    x: Tensor


def sample_around(model: LatentVariableModel, points: Any, radius: float, n: int = 8, *,
                  codes: bool = False, seed: int = 0) -> RadiusSamples:
    """Draw ``n`` codes uniformly from the Euclidean ball of ``radius`` around each point's code
    (posterior mean; or the given codes with ``codes=True``) and decode them: a look at what the
    model puts near a point. Seeded by ``seed``."""
    if not (isinstance(radius, (int, float)) and math.isfinite(radius) and radius > 0):
        raise DataError(f"radius must be a positive number, got {radius!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"n must be a positive integer, got {n!r}")
    c = _as_codes(model, points, codes, "points")
    b, d = c.shape[0], math.prod(model.z_shape)
    gen = torch.Generator().manual_seed(int(seed))
    direction = torch.randn(b, n, d, generator=gen, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    r = radius * torch.rand(b, n, 1, generator=gen, dtype=torch.float64) ** (1.0 / d)
    z = (c.reshape(b, 1, d).double() + r * direction).to(c.dtype).reshape(b, n, *model.z_shape)
    x = decode(model, z.reshape(b * n, *model.z_shape))
    return RadiusSamples(centers=c, z=z, x=x.reshape(b, n, *x.shape[1:]))


# ------------------------------------------------------------------------------ pictures
def image_shape(model: LatentVariableModel) -> tuple[int, ...] | None:
    """(C, H, W) of one observation as a picture: an image model's ``x_shape``, or the image shape
    stored with the data transform of a vector model; ``None`` if the data are not images."""
    if len(model.x_shape) == 3:
        return tuple(model.x_shape)
    tr = _transform(model)
    return None if tr is None or tr.image_shape is None else tuple(tr.image_shape)


def to_images(model: LatentVariableModel, x: Tensor | np.ndarray) -> np.ndarray | None:
    """Rows (…, *x_shape) in raw units as (N, C, H, W) images in [0, 1] for display (values
    already in [0, 1] kept, others scaled by the batch's minimum and maximum); ``None`` if the
    model's data are not images."""
    shape = image_shape(model)
    if shape is None:
        return None
    a = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
    a = a.reshape(-1, *shape)
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        a = (a - lo) / (hi - lo if hi > lo else 1.0)
    return a


def save_image_grid(images: np.ndarray, nrow: int, path: str | Any) -> None:
    """Tile (N, C, H, W) images in [0, 1] ``nrow`` per row and write a PNG (small images are
    enlarged by whole pixels so that they can be seen)."""
    from matplotlib.image import imsave

    from .figures.images import image_grid

    grid = image_grid(images, nrow=nrow)
    zoom = max(1, 32 // max(images.shape[-2:]))
    grid = np.kron(grid, np.ones((zoom, zoom) + (1,) * (grid.ndim - 2)))
    imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0)
