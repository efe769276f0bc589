"""The diagonal Gaussian that torchmim's encoders, Gaussian decoders and standard normal prior
build: ``torch.distributions.Normal`` with a cheaper ``log_prob`` when autograd is off.

The importance-sampled NLL evaluates log q(z|x), log p(z) and log p(x|z) for every one of its
10⁷ (x, z) pairs per toy run; torch's formula, −(x − μ)²/(2σ²) − log σ − ½ log 2π, makes seven
passes and seven temporaries of the pairs' size. Without autograd (nothing needs the
intermediates) this class makes one temporary and updates it in place (timed against torch's by
``bench/toy_fast_paths.py --only ops``, docs/benchmarks.md). With autograd, or with
``FAST_PATHS.inplace_log_prob`` off, it is torch's ``log_prob``. :func:`diagonal_normal` wraps
it as ``Independent`` whose sum over a short event dimension (the toy latents' 2, the data's
2–20) adds the columns instead of calling torch's reduction, which is ~10× slower on an inner
dimension of 2 on the benchmark machine (547 µs against 47 µs for 256 × 256 × 2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Independent
from torch.distributions import Normal as _TorchNormal
from torch.distributions.utils import _sum_rightmost

from ..fast_paths import FAST_PATHS

__all__ = ["Normal", "diagonal_normal", "gaussian_log_density"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Normal(_TorchNormal):
    """``torch.distributions.Normal`` (every method, KL rule and ``isinstance`` check applies),
    whose ``log_prob`` without autograd runs in place (module docs)."""

    #: Set by :func:`diagonal_normal` for N(0, I) (loc all 0, scale all 1): ``log_prob`` skips
    #: the subtraction of 0 and the division by 1, which are exact, so the floats are the same.
    _standard = False

    def log_prob(self, value: Tensor) -> Tensor:
        if (torch.is_grad_enabled() or self._validate_args or not FAST_PATHS.inplace_log_prob
                or not isinstance(value, Tensor)):
            return super().log_prob(value)
        if (self._standard and value.dtype == self.loc.dtype
                and torch.broadcast_shapes(value.shape, self.loc.shape) == value.shape):
            return value.square().mul_(-0.5).sub_(_HALF_LOG_2PI)  # log σ = 0
        # (value − μ) has the broadcast shape of value and the parameters (μ and σ share theirs),
        # so every later step can write into it
        d = (value - self.loc).div_(self.scale)
        return d.square_().mul_(-0.5).sub_(self.scale.log()).sub_(_HALF_LOG_2PI)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = torch.Size()) -> Tensor:
        """torch's ``sample``, op for op (``torch.normal(loc, scale)`` is a standard normal draw
        scaled by σ, then shifted by μ: the same stream, the same floats), without its scan of
        σ ≥ 0 over the sample's size and its unused temporary (the IS-NLL draws 10⁷ samples per
        toy run). σ is positive by construction here (exp(½ log σ²) + floor, or a buffer of
        ones). With ``FAST_PATHS.inplace_log_prob`` off, torch's."""
        if self._validate_args or not FAST_PATHS.inplace_log_prob:
            return super().sample(sample_shape)
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            eps = torch.empty(shape, dtype=self.loc.dtype, device=self.loc.device).normal_()
            return eps.mul_(self.scale).add_(self.loc)


#: Longest event dimension summed by adding its columns (beyond it, torch's reduction).
_COLUMN_SUM_MAX = 8


class _DiagonalNormal(Independent):
    """``Independent(Normal, 1)`` whose ``log_prob`` without autograd sums a short event
    dimension by adding its columns (module docs); otherwise torch's."""

    def log_prob(self, value: Tensor) -> Tensor:
        lp = self.base_dist.log_prob(value)
        d = lp.shape[-1] if lp.dim() else 0
        if (torch.is_grad_enabled() or not FAST_PATHS.inplace_log_prob
                or self.reinterpreted_batch_ndims != 1 or not 2 <= d <= _COLUMN_SUM_MAX):
            return _sum_rightmost(lp, self.reinterpreted_batch_ndims)  # torch's own
        out = lp[..., 0] + lp[..., 1]
        for i in range(2, d):
            out += lp[..., i]
        return out


def diagonal_normal(loc: Tensor, scale: Tensor, event_ndims: int = 1, *,
                    standard: bool = False) -> Independent:
    """N(loc, diag scale²) over the last ``event_ndims`` dimensions: ``Independent(Normal(loc,
    scale), event_ndims)`` without argument validation, with this module's ``log_prob``.
    ``standard=True`` declares loc = 0 and scale = 1 (the standard normal prior's buffers),
    which ``log_prob`` then skips (the same floats)."""
    base = Normal(loc, scale, validate_args=False)
    base._standard = standard
    return _DiagonalNormal(base, event_ndims, validate_args=False)


class _GaussianLogDensity(torch.autograd.Function):
    """Σ_d log N(v_d; μ_d, σ_d) over the last dimension with the derivatives written out: with
    r = (v − μ)/σ, ∂/∂v = −r/σ, ∂/∂μ = r/σ, ∂/∂σ = (r² − 1)/σ. Autograd's graph of torch's formula
    runs ~25 elementwise passes over (M, B, D) forward and back; this ~12, which is most of a
    vectorised toy group's step besides its products (``bench/toy_fast_paths.py --only
    density``). ``mask`` (broadcastable to v, bool) keeps the terms where it is true; the others
    are replaced by 0, never multiplied, and their gradients are exactly 0."""

    @staticmethod
    def forward(ctx, v: Tensor, loc: Tensor, scale: Tensor, mask: Tensor | None) -> Tensor:
        r = v - loc
        r = r.div_(scale) if torch.broadcast_shapes(r.shape, scale.shape) == r.shape else r / scale
        t = r.square().mul_(-0.5).sub_(scale.log()).sub_(_HALF_LOG_2PI)
        if mask is not None:
            t = torch.where(mask, t, 0.0)
        ctx.save_for_backward(r, scale, mask)
        ctx.shapes = (v.shape, loc.shape, scale.shape)
        return _sum_last(t)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        r, scale, mask = ctx.saved_tensors
        q = grad.unsqueeze(-1) / scale
        d_loc = q * r
        d_scale = r.square().sub_(1.0).mul_(q)
        if mask is not None:  # selected, not multiplied: a masked term's inf or NaN stays out
            d_loc, d_scale = torch.where(mask, d_loc, 0.0), torch.where(mask, d_scale, 0.0)
        d_v = -d_loc if ctx.needs_input_grad[0] else None
        out = [d_v, d_loc, d_scale]
        for k, shape in enumerate(ctx.shapes):  # an argument broadcast in forward: sum back
            if out[k] is not None and out[k].shape != shape:
                out[k] = _sum_to(out[k], shape)
        return out[0], out[1], out[2], None


def _sum_last(t: Tensor) -> Tensor:
    """``t.sum(-1)``; a short last dimension (the toy latents' and data's 2) by adding its
    columns, as ``_DiagonalNormal.log_prob`` does (module docs: torch's reduction is ~10× slower
    there)."""
    d = t.shape[-1] if t.dim() else 0
    if not 2 <= d <= _COLUMN_SUM_MAX:
        return t.sum(-1)
    out = t[..., 0] + t[..., 1]
    for i in range(2, d):
        out += t[..., i]
    return out


def _sum_to(t: Tensor, shape: torch.Size) -> Tensor:
    lead = t.dim() - len(shape)
    dims = [i for i in range(t.dim()) if i < lead or (shape[i - lead] == 1 and t.shape[i] != 1)]
    return t.sum(dims, keepdim=True).reshape(shape)


def gaussian_log_density(value: Tensor, loc: Tensor, scale: Tensor,
                         mask: Tensor | None = None, *, fused: bool | None = None) -> Tensor:
    """log N(value; loc, diag scale²) summed over the last dimension, as
    ``diagonal_normal(loc, scale).log_prob(value)``; with ``mask`` (bool, broadcastable) the sum
    over the coordinates where it is true only (the others' terms are replaced by 0 and get a
    gradient of exactly 0). With autograd and ``fused`` (``None``: as
    ``FAST_PATHS.inplace_log_prob`` says), the hand-written backward of
    :class:`_GaussianLogDensity` (the same values and gradients up to float rounding,
    tests/test_fast_paths.py); otherwise, and under tracing, compilation and ``torch.func``
    transforms (as :func:`~torchmim.networks.affine`), torch's formula, op for op as
    ``Normal.log_prob``."""
    from ..networks import _tracing, _transformed  # the fast paths' shared rules

    if ((FAST_PATHS.inplace_log_prob if fused is None else fused) and torch.is_grad_enabled()
            and not _tracing() and not _transformed(value) and not _transformed(loc)):
        return _GaussianLogDensity.apply(value, loc, scale, mask)
    t = -((value - loc) ** 2) / (2 * scale**2) - scale.log() - _HALF_LOG_2PI
    return (t if mask is None else torch.where(mask, t, 0.0)).sum(-1)

