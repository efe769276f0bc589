"""The networks of the two-level image models (Section 6.3): convHVAE (L = 2) and PixelHVAE (L = 2).

Both are the VampPrior paper's architectures (Tomczak & Welling, 2018), described in the spec
``image-architectures.md``; sizes below are for 1×28×28 inputs and are derived from ``x_shape``:

* **q(z2|x)**: gated convs C→32 (k7 s1 p3), 32→32 (k3 s2 p1), 32→64 (k5 s1 p2), 64→64 (k3 s2 p1),
  64→6 (k3 s1 p1), flatten (6·7·7 = 294), Gaussian head → z2.
* **q(z1|x, z2)**: x-branch of gated convs (all k3) to 294 features; z2-branch gated dense z2→294;
  concatenate [x, z2] (588), gated dense 588→300, Gaussian head → z1.
* **p(z1|z2)**: gated dense z2→300→300, Gaussian head → z1 (:class:`GatedGaussianMLP`).
  **p(z2)** is not a network here: any prior of the registry (N(0, I), a VampPrior, ...; see
  :mod:`torchmim.models.hvae`).
* **p(x|z1, z2)**, convHVAE: gated dense 40→300 on z1 and on z2, concatenate (600), gated dense
  600→C·H·W, reshape to C×H×W, four gated convs to 64 channels (k3), 1×1 conv → Bernoulli logits.
* **p(x|z1, z2)**, PixelHVAE: z1 and z2 each through a gated dense to a C×H×W map; a PixelCNN of 8
  masked convs on [x, z1-map, z2-map] (teacher forcing) → Bernoulli logits of each pixel given the
  pixels before it; sampling is autoregressive
  (:class:`~torchmim.distributions.autoregressive.AutoregressiveBernoulli`).

Latents are one flat vector z = [z1, z2] (z1 first; see
:mod:`torchmim.distributions.hierarchical`), so the objectives, metrics and the importance-sampled
NLL work unchanged. Every linear weight is He-normal (:class:`GatedDense` and
:class:`GaussianHead` initialise themselves), convolutions keep PyTorch's defaults.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent

from ..distributions.autoregressive import AutoregressiveBernoulli
from ..distributions.hierarchical import HierarchicalDistribution
from ..layers import (
    FAST_PATHS,
    GatedConv2d,
    GatedDense,
    GaussianHead,
    PixelCNN,
    check_images,
    check_latent,
    chunked_no_grad,
    conv_output_size,
    to_conv_layout,
)
from ..precision import full_precision

__all__ = [
    "ConvHVAEDecoder",
    "ConvHierarchicalEncoder",
    "GatedGaussianMLP",
    "PixelHVAEDecoder",
]


def _gated_conv_stack(in_channels: int, layers: Sequence[tuple[int, int, int, int]],
                      size: tuple[int, int]) -> tuple[nn.Sequential, int]:
    """Gated convs given as (out_channels, kernel, stride, padding); returns the stack and the
    flattened output size for an input of spatial ``size`` (computed, not hard-coded)."""
    modules, (h, w), c = [], size, in_channels
    for out, k, s, p in layers:
        modules.append(GatedConv2d(c, out, k, s, p))
        h, w, c = conv_output_size(h, k, s, p), conv_output_size(w, k, s, p), out
    return nn.Sequential(*modules, nn.Flatten()), c * h * w


class GatedGaussianMLP(nn.Module):
    """Gated dense layers then a Gaussian head: the p(z1|z2) network (z2→300→300→z1)."""

    def __init__(self, in_features: int, out_features: int, hidden: int = 300, depth: int = 2, *,
                 logvar_clamp: tuple[float, float] | None = (-6.0, 2.0),
                 std_floor: float = 0.0) -> None:
        super().__init__()
        widths = [in_features] + [hidden] * depth
        self.layers = nn.Sequential(*(GatedDense(a, b) for a, b in itertools.pairwise(widths)))
        self.head = GaussianHead(widths[-1], out_features, logvar_clamp=logvar_clamp,
                                 std_floor=std_floor)

    def forward(self, h: Tensor) -> Independent:
        return self.head(self.layers(h))


class ConvHierarchicalEncoder(nn.Module):
    """q(z|x) = q(z2|x) · q(z1|x, z2) of convHVAE / PixelHVAE, over z = [z1, z2].

    ``forward(x)`` returns a :class:`HierarchicalDistribution` with batch shape ``x.shape[:-3]``;
    the convolutional features of x are computed once, and the z1 conditional reuses them for any
    z2 (with any extra leading sample dimensions). ``top_posterior(x)`` is q(z2|x) alone (what a
    VampPrior evaluates at its pseudo-inputs).

    Args:
        x_shape: (C, H, W).
        channels: the (32, 64, 6) channel widths of the gated conv stacks.
    """

    def __init__(self, x_shape: Sequence[int], z1_dim: int = 40, z2_dim: int = 40,
                 hidden: int = 300, channels: Sequence[int] = (32, 64, 6), *,
                 logvar_clamp: tuple[float, float] | None = (-6.0, 2.0),
                 std_floor: float = 0.0) -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.z1_dim, self.z2_dim = z1_dim, z2_dim
        c, h, w = self.x_shape
        a, b, o = channels
        self.q_z2_features, feat2 = _gated_conv_stack(
            c, [(a, 7, 1, 3), (a, 3, 2, 1), (b, 5, 1, 2), (b, 3, 2, 1), (o, 3, 1, 1)], (h, w))
        self.q_z1_x_features, feat1 = _gated_conv_stack(
            c, [(a, 3, 1, 1), (a, 3, 2, 1), (b, 3, 1, 1), (b, 3, 2, 1), (o, 3, 1, 1)], (h, w))
        self.feature_size = feat1  # 294 for 1×28×28
        opts = {"logvar_clamp": logvar_clamp, "std_floor": std_floor}
        self.q_z2_head = GaussianHead(feat2, z2_dim, **opts)
        self.q_z1_z2 = GatedDense(z2_dim, feat1)
        self.q_z1_joint = GatedDense(2 * feat1, hidden)
        self.q_z1_head = GaussianHead(hidden, z1_dim, **opts)

    def _features(self, net: nn.Module, x: Tensor) -> Tensor:
        lead = x.shape[:-3]
        x = to_conv_layout(x.reshape(-1, *self.x_shape), FAST_PATHS.gated_channels_last)
        return net(x).reshape(*lead, -1)

    def top_posterior(self, x: Tensor) -> Independent:
        """q(z2 | x)."""
        check_images(x, self.x_shape)
        return self.q_z2_head(self._features(self.q_z2_features, x))

    def q_z1(self, x_features: Tensor, z2: Tensor) -> Independent:
        """q(z1 | x, z2) from the x-branch features (..., F) and z2 (..., d2), broadcast."""
        hz = self.q_z1_z2(z2)
        shape = torch.broadcast_shapes(x_features.shape[:-1], hz.shape[:-1])
        h = torch.cat([x_features.expand(*shape, -1), hz.expand(*shape, -1)], dim=-1)
        return self.q_z1_head(self.q_z1_joint(h))

    def forward(self, x: Tensor) -> HierarchicalDistribution:
        check_images(x, self.x_shape)
        hx = self._features(self.q_z1_x_features, x)
        return HierarchicalDistribution(self.top_posterior(x), functools.partial(self.q_z1, hx),
                                        self.z1_dim)


class ConvHVAEDecoder(nn.Module):
    """p(x | z1, z2) of convHVAE: ``Independent(Bernoulli(logits), 3)`` over (C, H, W).

    Input: flat z = [z1, z2] with any leading dimensions. Logits rather than sigmoid means, for
    stable log-densities (the spec's sigmoid output is the distribution's ``mean``).
    """

    def __init__(self, x_shape: Sequence[int], z1_dim: int = 40, z2_dim: int = 40,
                 hidden: int = 300, channels: int = 64) -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.z1_dim, self.z2_dim = z1_dim, z2_dim
        c = self.x_shape[0]
        self.p_x_z1 = GatedDense(z1_dim, hidden)
        self.p_x_z2 = GatedDense(z2_dim, hidden)
        self.p_x_joint = GatedDense(2 * hidden, math.prod(self.x_shape))
        self.p_x_convs = nn.Sequential(
            GatedConv2d(c, channels, 3, 1, 1),
            *(GatedConv2d(channels, channels, 3, 1, 1) for _ in range(3)),
        )
        self.p_x_logits = nn.Conv2d(channels, c, 1)

    def _logits(self, z: Tensor) -> Tensor:
        z1, z2 = z[:, : self.z1_dim], z[:, self.z1_dim:]
        h = self.p_x_joint(torch.cat([self.p_x_z1(z1), self.p_x_z2(z2)], dim=-1))
        h = to_conv_layout(h.reshape(-1, *self.x_shape), FAST_PATHS.gated_channels_last)
        return self.p_x_logits(self.p_x_convs(h))

    def logits(self, z: Tensor) -> Tensor:
        """Bernoulli logits, shape z.shape[:-1] + x_shape."""
        z = check_latent(z, self.z1_dim + self.z2_dim)
        lead = z.shape[:-1]
        logits = chunked_no_grad(self._logits, z.reshape(-1, z.shape[-1]))
        return logits.reshape(*lead, *self.x_shape)

    def forward(self, z: Tensor) -> Independent:
        return Independent(Bernoulli(logits=full_precision(self.logits(z)), validate_args=False), 3,
                           validate_args=False)


class PixelHVAEDecoder(nn.Module):
    """p(x | z1, z2) of PixelHVAE: z1 and z2 → C×H×W maps (gated dense) → PixelCNN over x.

    ``forward(z)`` returns an :class:`AutoregressiveBernoulli` with batch shape ``z.shape[:-1]``.
    ``unmasked_z`` selects the spec's cleaner variant (z maps through the full first-layer kernel).
    """

    def __init__(self, x_shape: Sequence[int], z1_dim: int = 40, z2_dim: int = 40,
                 channels: int = 64, num_layers: int = 8, kernel_size: int = 3, *,
                 batch_norm: bool = True, unmasked_z: bool = False) -> None:
        super().__init__()
        self.x_shape = tuple(x_shape)
        self.z1_dim, self.z2_dim = z1_dim, z2_dim
        c = self.x_shape[0]
        self.p_x_z1 = GatedDense(z1_dim, math.prod(self.x_shape))
        self.p_x_z2 = GatedDense(z2_dim, math.prod(self.x_shape))
        self.pixelcnn = PixelCNN(c, 2 * c, channels, num_layers, kernel_size, batch_norm=batch_norm,
                                 unmasked_conditioning=unmasked_z)

    def maps(self, z: Tensor) -> Tensor:
        """[z1-map, z2-map] on channels: shape z.shape[:-1] + (2C, H, W)."""
        z = check_latent(z, self.z1_dim + self.z2_dim)
        lead, (c, h, w) = z.shape[:-1], self.x_shape
        m1 = self.p_x_z1(z[..., : self.z1_dim]).reshape(*lead, c, h, w)
        m2 = self.p_x_z2(z[..., self.z1_dim:]).reshape(*lead, c, h, w)
        return torch.cat([m1, m2], dim=-3)

    def forward(self, z: Tensor) -> AutoregressiveBernoulli:
        return AutoregressiveBernoulli(self.pixelcnn, self.maps(z))
