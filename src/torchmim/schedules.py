"""Warm-up schedules, stepped per epoch (epochs are numbered from 1).

* β warm-up (Eq. 18, following [1]): β rises linearly from 0 and reaches 1 at epoch ``warmup``.
* learning-rate warm-up of the paper's reference [37] (Vaswani et al.):
  lr(e) = lr₀ · √W · min(e · W^(−3/2), e^(−1/2)) — a linear rise over W epochs to lr₀, then decay ∝ 1/√e.
"""

from __future__ import annotations

import math

__all__ = ["beta_warmup", "lr_warmup_factor"]


def beta_warmup(epoch: int, warmup: int) -> float:
    """β(e) = min(1, e / W) for epoch e ≥ 1 (β = 1 throughout when W ≤ 0)."""
    if epoch < 1:
        raise ValueError(f"epochs are numbered from 1, got {epoch}")
    return 1.0 if warmup <= 0 else min(1.0, epoch / warmup)


def lr_warmup_factor(epoch: int, warmup: int) -> float:
    """lr(e) / lr₀ = √W · min(e · W^(−1.5), e^(−0.5)); equals 1 at e = W (1 throughout when W ≤ 0)."""
    if epoch < 1:
        raise ValueError(f"epochs are numbered from 1, got {epoch}")
    if warmup <= 0:
        return 1.0
    return math.sqrt(warmup) * min(epoch * warmup**-1.5, epoch**-0.5)
