"""Frozen algorithms of earlier releases, kept as baselines for tests and benchmarks; not API.

Each function here is an earlier release's implementation, kept unchanged so that a test can
check today's code against it (same values on the same random stream) and a benchmark can time
today's code against it. Nothing in the library calls them; they may go without notice.
"""

from __future__ import annotations

import math

import torch

__all__ = ["nll_0_1"]


def nll_0_1(model, x, num_samples: int, *, batch_size: int = 256, max_pairs: int = 65536,
            seed: int = 0) -> float:
    """torchmim 0.1's ``importance_sampled_nll`` / ``log_marginal_likelihood``, verbatim in
    substance: p(z) rebuilt for every batch, the decoder on all pairs of a chunk at once, autograd
    off. For the same seed it draws the same samples as today's
    :func:`torchmim.metrics.importance_sampled_nll` (tests/test_fast_paths.py checks the values
    agree; bench/image.py times the two)."""
    xt = model.prepare_x(x)
    total = 0.0
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i in range(0, xt.shape[0], batch_size):
                b = xt[i:i + batch_size]
                qz_x = model.posterior(b)
                pz = model.prior()
                n = b.shape[0]
                chunk = max(1, min(num_samples, max_pairs // n))
                acc = torch.full((n,), -math.inf, dtype=b.dtype)
                done = 0
                while done < num_samples:
                    s = min(chunk, num_samples - done)
                    z = qz_x.sample((s,))
                    z_flat = z.reshape((s * n,) + model.z_shape)
                    x_rep = b.unsqueeze(0).expand((s,) + tuple(b.shape)).reshape(
                        (s * n,) + model.x_shape)
                    log_px_z = model.decoder(z_flat).log_prob(x_rep).reshape(s, n)
                    log_w = log_px_z + pz.log_prob(z) - qz_x.log_prob(z)
                    acc = torch.logaddexp(acc, torch.logsumexp(log_w, dim=0))
                    done += s
                total += float((acc - math.log(num_samples)).sum())
    finally:
        model.train(was)
    return -total / xt.shape[0]
