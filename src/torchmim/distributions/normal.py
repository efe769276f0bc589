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

__all__ = ["Normal", "diagonal_normal"]

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
