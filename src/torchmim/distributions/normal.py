"""The diagonal Gaussian that torchmim's encoders, Gaussian decoders and standard normal prior
build: ``torch.distributions.Normal`` with a cheaper ``log_prob`` when autograd is off.

The importance-sampled NLL evaluates log q(z|x), log p(z) and log p(x|z) for every one of its
10⁷ (x, z) pairs per toy run; torch's formula, −(x − μ)²/(2σ²) − log σ − ½ log 2π, makes seven
passes and seven temporaries of the pairs' size. Without autograd (nothing needs the
intermediates) this class makes one temporary and updates it in place (timed against torch's by
``bench/toy_fast_paths.py --only ops``, docs/benchmarks.md). With autograd, or with
``FAST_PATHS.inplace_log_prob`` off, it is torch's ``log_prob``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Normal as _TorchNormal

from ..fast_paths import FAST_PATHS

__all__ = ["Normal"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class Normal(_TorchNormal):
    """``torch.distributions.Normal`` (every method, KL rule and ``isinstance`` check applies),
    whose ``log_prob`` without autograd runs in place (module docs)."""

    def log_prob(self, value: Tensor) -> Tensor:
        if (torch.is_grad_enabled() or self._validate_args or not FAST_PATHS.inplace_log_prob
                or not isinstance(value, Tensor)):
            return super().log_prob(value)
        # (value − μ) has the broadcast shape of value and the parameters (μ and σ share theirs),
        # so every later step can write into it
        d = (value - self.loc).div_(self.scale)
        return d.square_().mul_(-0.5).sub_(self.scale.log()).sub_(_HALF_LOG_2PI)
