"""The two-level image models of the paper (Section 6.3): convHVAE (L = 2) and PixelHVAE (L = 2).

Both are the VampPrior paper's architectures (Tomczak & Welling, 2018), described in the spec
``image-architectures.md``; sizes below are for 1×28×28 inputs and are derived from ``x_shape``:

* **q(z2|x)**: gated convs C→32 (k7 s1 p3), 32→32 (k3 s2 p1), 32→64 (k5 s1 p2), 64→64 (k3 s2 p1),
  64→6 (k3 s1 p1), flatten (6·7·7 = 294), Gaussian head → z2.
* **q(z1|x, z2)**: x-branch of gated convs (all k3) to 294 features; z2-branch gated dense z2→294;
  concatenate [x, z2] (588), gated dense 588→300, Gaussian head → z1.
* **p(z1|z2)**: gated dense z2→300→300, Gaussian head → z1.  **p(z2)**: N(0, I) or a VampPrior.
* **p(x|z1, z2)**, convHVAE: gated dense 40→300 on z1 and on z2, concatenate (600), gated dense
  600→C·H·W, reshape to C×H×W, four gated convs to 64 channels (k3), 1×1 conv → Bernoulli logits.
* **p(x|z1, z2)**, PixelHVAE: z1 and z2 each through a gated dense to a C×H×W map; a PixelCNN of 8
  masked convs on [x, z1-map, z2-map] (teacher forcing) → Bernoulli logits of each pixel given the
  pixels before it; sampling is autoregressive (:class:`AutoregressiveBernoulli`).

Latents are one flat vector z = [z1, z2] (z1 first; see
:mod:`torchmim.distributions.hierarchical`), so the objectives, metrics and the importance-sampled
NLL work unchanged. The data prior q(x) is the marginal of Eq. (16) and the latent anchor P(z) is
the prior p(z), as in the paper. Every linear weight is He-normal (:class:`GatedDense` and
:class:`GaussianHead` initialise themselves), convolutions keep PyTorch's defaults.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, constraints
from torch.nn import functional as F

from ..distributions.hierarchical import HierarchicalDistribution, HierarchicalPrior
from ..distributions.priors import Prior, StandardNormal
from ..distributions.vampprior import VampPrior
from ..errors import ConfigError, DataError
from ..layers import (
    GatedConv2d,
    GatedDense,
    GaussianHead,
    PixelCNN,
    check_images,
    conv_output_size,
)
from .configs import MODELS, ModelConfig
from .latent_variable_model import LatentVariableModel

__all__ = [
    "AutoregressiveBernoulli",
    "ConvHVAEConfig",
    "ConvHVAEDecoder",
    "ConvHierarchicalEncoder",
    "GatedGaussianMLP",
    "PixelHVAEConfig",
    "PixelHVAEDecoder",
]

#: Rows (images) decoded at once when no gradient is needed (evaluation: the importance-sampled NLL
#: decodes S·B latents; the conv decoders would otherwise hold S·B·64·H·W activations).
EVAL_CHUNK = 256

PRIOR_NAMES = ("standard", "vampprior")
LIKELIHOOD_NAMES = ("bernoulli",)


def chunked_no_grad(fn, *tensors: Tensor, chunk: int | None = None) -> Tensor:
    """``fn(*tensors)`` over the first dimension in chunks of ``chunk`` (default
    :data:`EVAL_CHUNK`) when autograd is off; the same result with bounded memory."""
    chunk = EVAL_CHUNK if chunk is None else chunk
    n = tensors[0].shape[0]
    if torch.is_grad_enabled() or n <= chunk:
        return fn(*tensors)
    return torch.cat([fn(*(t[i:i + chunk] for t in tensors)) for i in range(0, n, chunk)])


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode (batch norm with running statistics), then restored."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


# ============================================================================ networks
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
        return net(x.reshape(-1, *self.x_shape)).reshape(*lead, -1)

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
        return self.p_x_logits(self.p_x_convs(h.reshape(-1, *self.x_shape)))

    def logits(self, z: Tensor) -> Tensor:
        """Bernoulli logits, shape z.shape[:-1] + x_shape."""
        z = check_latent(z, self.z1_dim + self.z2_dim)
        lead = z.shape[:-1]
        logits = chunked_no_grad(self._logits, z.reshape(-1, z.shape[-1]))
        return logits.reshape(*lead, *self.x_shape)

    def forward(self, z: Tensor) -> Independent:
        return Independent(Bernoulli(logits=self.logits(z), validate_args=False), 3,
                           validate_args=False)


def check_latent(z: Tensor, dim: int) -> Tensor:
    if not isinstance(z, Tensor) or z.dim() < 1 or z.shape[-1] != dim:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise DataError(f"z has shape {shape}, but the decoder expects (..., {dim})")
    return z


# ============================================================================ PixelHVAE decoder
class AutoregressiveBernoulli(Distribution):
    """p(x | maps) = Π_i Bernoulli(x_i; sigmoid(ℓ_i(x_<i, maps))) over images (C, H, W).

    The product runs over the pixels in raster order.

    ``log_prob(x)`` runs the PixelCNN once on (x, maps) with teacher forcing. ``sample()`` is
    autoregressive — one PixelCNN pass per pixel in raster order, batched over images and over any
    leading sample/batch dimensions — with every module of the PixelCNN in eval mode (batch-norm
    running statistics), since batch statistics would let pixels see later pixels. Each pass
    recomputes only the current row, from cached inputs of the rows above
    (:meth:`~torchmim.layers.PixelCNN.sample`; exact).
    The channels of one pixel are sampled together (conditionally independent given the past).

    ``has_rsample`` is ``False`` (symmetric MIM uses REINFORCE, Eq. 17; the paper trains PixelHVAE
    with A-MIM). ``mean`` has no closed form: it returns the per-pixel probabilities
    p(x_i = 1 | x_<i, maps) collected during one autoregressive sampling pass (random: it uses the
    global RNG; computed once per distribution object and cached). ``variance`` is p(1 − p) of the
    same pass.

    In training mode, ``log_prob`` uses batch-norm batch statistics (as the reference; without
    autograd, those of each evaluation chunk of :data:`EVAL_CHUNK` images): it is then not exactly
    a normalised autoregressive density; in eval mode it is.
    """

    arg_constraints: ClassVar[dict] = {}
    support = constraints.independent(constraints.boolean, 3)
    has_rsample = False

    def __init__(self, pixelcnn: PixelCNN, maps: Tensor) -> None:
        if maps.dim() < 3 or maps.shape[-3] != pixelcnn.cond_channels:
            raise DataError(f"conditioning maps must be (..., {pixelcnn.cond_channels}, H, W), got "
                            f"{tuple(maps.shape)}")
        self.pixelcnn = pixelcnn
        self.maps = maps
        self._moments: tuple[Tensor, Tensor] | None = None
        event = torch.Size([pixelcnn.x_channels, *maps.shape[-2:]])
        super().__init__(maps.shape[:-3], event, validate_args=False)

    def _broadcast(self, value: Tensor) -> tuple[torch.Size, Tensor, Tensor]:
        check_images(value, self.event_shape, "x")
        shape = torch.broadcast_shapes(value.shape[:-3], self.batch_shape)
        x = value.expand(*shape, *self.event_shape).reshape(-1, *self.event_shape)
        maps = self.maps.expand(*shape, *self.maps.shape[-3:]).reshape(-1, *self.maps.shape[-3:])
        return shape, x, maps

    def logits(self, value: Tensor) -> Tensor:
        """Teacher-forced logits ℓ_i(x_<i, maps) of every pixel, shape broadcast(value, batch)."""
        shape, x, maps = self._broadcast(value)
        return chunked_no_grad(self.pixelcnn, x, maps).reshape(*shape, *self.event_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        """Σ_i log Bernoulli(x_i; sigmoid ℓ_i(x_<i, maps)) (stable BCE-with-logits form)."""
        shape, x, maps = self._broadcast(value)

        def log_px(x: Tensor, maps: Tensor) -> Tensor:
            logits = self.pixelcnn(x, maps)
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))

        return chunked_no_grad(log_px, x, maps).reshape(shape)

    @torch.no_grad()
    def sample_with_probs(self, sample_shape: torch.Size | tuple = ()) -> tuple[Tensor, Tensor]:
        """An autoregressive sample x and the probabilities p(x_i = 1 | x_<i, maps) it was drawn
        with."""
        shape = torch.Size(sample_shape) + self.batch_shape
        maps = self.maps.expand(*shape, *self.maps.shape[-3:]).reshape(-1, *self.maps.shape[-3:])
        with _eval_mode(self.pixelcnn):
            x, probs = self.pixelcnn.sample(maps)
        return x.reshape(*shape, *self.event_shape), probs.reshape(*shape, *self.event_shape)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        return self.sample_with_probs(sample_shape)[0]

    def _pass_moments(self) -> tuple[Tensor, Tensor]:
        if self._moments is None:
            _, p = self.sample_with_probs()
            self._moments = (p, p * (1 - p))
        return self._moments

    @property
    def mean(self) -> Tensor:
        return self._pass_moments()[0]

    @property
    def variance(self) -> Tensor:
        return self._pass_moments()[1]


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


# ============================================================================ configs
def check_x_shape(x_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) of positive integers, or a :class:`ConfigError`."""
    shape = tuple(x_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ConfigError(f"model.x_shape must be (channels, height, width) of positive integers, "
                          f"got {list(shape)}")
    return shape  # type: ignore[return-value]


def check_choice(field: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"model.{field}: {value!r} is not one of {list(choices)}")


def build_top_prior(name: str, dim: int, x_shape: Sequence[int], num_pseudo_inputs: int,
                    noise: float) -> Prior:
    """The prior on the top latent level: N(0, I) (``"standard"``) or a VampPrior."""
    if name == "standard":
        return StandardNormal(dim)
    return VampPrior(x_shape, num_pseudo_inputs, noise=noise)


@dataclass
class _TwoLevelImageConfig(ModelConfig):
    """Fields shared by convHVAE and PixelHVAE (defaults: the paper / VampPrior set-up; test NLL with
    S = 5000 importance samples, as for the paper's Table 1).

    Attributes:
        x_shape: (C, H, W) of one image; derived sizes (conv feature size, maps) follow from it.
        z1_dim, z2_dim: latent sizes of the two levels (40 + 40: "z ∈ R^80"); z = [z1, z2].
        hidden: width of the gated dense layers (300).
        encoder_channels: widths of the encoders' gated conv stacks (32, 64, and 6 output maps).
        prior: p(z2): ``"standard"`` (N(0, I)) or ``"vampprior"``.
        num_pseudo_inputs: K of the VampPrior (500).
        pseudo_input_noise: std of the noise added to the training images that initialise the
            pseudo-inputs (0.01, as the reference).
        logvar_clamp: hard clamp of every Gaussian head's log-variance ((−6, 2)).
        std_floor: added to every Gaussian standard deviation (0: the clamp bounds σ ≥ e^−3).
        likelihood: p(x|z): ``"bernoulli"`` (binary images).
    """

    default_nll_samples: ClassVar[int] = 5000

    x_shape: tuple[int, ...] = (1, 28, 28)
    z1_dim: int = 40
    z2_dim: int = 40
    hidden: int = 300
    encoder_channels: tuple[int, int, int] = (32, 64, 6)
    prior: str = "standard"
    num_pseudo_inputs: int = 500
    pseudo_input_noise: float = 0.01
    logvar_clamp: tuple[float, float] | None = (-6.0, 2.0)
    std_floor: float = 0.0
    likelihood: str = "bernoulli"

    def __post_init__(self) -> None:
        self.x_shape = check_x_shape(self.x_shape)
        self.encoder_channels = tuple(self.encoder_channels)  # type: ignore[assignment]
        if self.logvar_clamp is not None:
            self.logvar_clamp = tuple(self.logvar_clamp)  # type: ignore[assignment]
            if len(self.logvar_clamp) != 2 or self.logvar_clamp[0] > self.logvar_clamp[1]:
                raise ConfigError(f"model.logvar_clamp must be (low, high), got "
                                  f"{self.logvar_clamp}")
        for field in ("z1_dim", "z2_dim", "hidden", "num_pseudo_inputs"):
            if getattr(self, field) < 1:
                raise ConfigError(f"model.{field} must be >= 1, got {getattr(self, field)}")
        if len(self.encoder_channels) != 3 or min(self.encoder_channels) < 1:
            raise ConfigError(f"model.encoder_channels must be three positive widths, got "
                              f"{list(self.encoder_channels)}")
        if self.pseudo_input_noise < 0 or self.std_floor < 0:
            raise ConfigError("model.pseudo_input_noise and model.std_floor must be >= 0")
        check_choice("prior", self.prior, PRIOR_NAMES)
        check_choice("likelihood", self.likelihood, LIKELIHOOD_NAMES)

    @property
    def z_dim(self) -> int:
        return self.z1_dim + self.z2_dim

    def _decoder(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self) -> LatentVariableModel:
        """Encoder q(z2|x) q(z1|x,z2), decoder p(x|z1,z2), prior p(z2) p(z1|z2), marginal q(x)."""
        gauss = {"logvar_clamp": self.logvar_clamp, "std_floor": self.std_floor}
        encoder = ConvHierarchicalEncoder(self.x_shape, self.z1_dim, self.z2_dim, self.hidden,
                                          self.encoder_channels, **gauss)
        top = build_top_prior(self.prior, self.z2_dim, self.x_shape, self.num_pseudo_inputs,
                              self.pseudo_input_noise)
        p_z1 = GatedGaussianMLP(self.z2_dim, self.z1_dim, self.hidden, 2, **gauss)
        model = LatentVariableModel(
            encoder=encoder,
            decoder=self._decoder(),
            prior=HierarchicalPrior(top, p_z1, self.z1_dim),
            x_shape=self.x_shape,
            z_shape=(self.z_dim,),
        )
        model.config = self
        return model


@MODELS.register("convhvae")
@dataclass
class ConvHVAEConfig(_TwoLevelImageConfig):
    """convHVAE (L = 2) of the paper's Section 6.3 (see the module docs and the spec).

    Attributes (besides the shared ones):
        decoder_channels: width of the decoder's four gated convs (64).
    """

    decoder_channels: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoder_channels < 1:
            raise ConfigError(f"model.decoder_channels must be >= 1, got {self.decoder_channels}")

    def _decoder(self) -> nn.Module:
        return ConvHVAEDecoder(self.x_shape, self.z1_dim, self.z2_dim, self.hidden,
                               self.decoder_channels)


@MODELS.register("pixelhvae")
@dataclass
class PixelHVAEConfig(_TwoLevelImageConfig):
    """PixelHVAE (L = 2) of the paper's Section 6.3 (trained with A-MIM in the paper).

    Attributes (besides the shared ones):
        pixelcnn_channels: width of the masked convs (64).
        pixelcnn_layers: number of masked convs (8: one type A, then type B).
        pixelcnn_kernel_size: their kernel size (3).
        pixelcnn_batch_norm: batch norm after each masked conv (the reference: True).
        unmasked_z: feed the z maps through the unmasked first-layer kernel (the spec's cleaner
            variant) instead of masking them with x (the reference: False).
    """

    pixelcnn_channels: int = 64
    pixelcnn_layers: int = 8
    pixelcnn_kernel_size: int = 3
    pixelcnn_batch_norm: bool = True
    unmasked_z: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pixelcnn_channels < 1 or self.pixelcnn_layers < 1:
            raise ConfigError("model.pixelcnn_channels and model.pixelcnn_layers must be >= 1")
        if self.pixelcnn_kernel_size < 1 or self.pixelcnn_kernel_size % 2 == 0:
            raise ConfigError(f"model.pixelcnn_kernel_size must be odd, got "
                              f"{self.pixelcnn_kernel_size}")

    def _decoder(self) -> nn.Module:
        return PixelHVAEDecoder(self.x_shape, self.z1_dim, self.z2_dim, self.pixelcnn_channels,
                                self.pixelcnn_layers, self.pixelcnn_kernel_size,
                                batch_norm=self.pixelcnn_batch_norm, unmasked_z=self.unmasked_z)
