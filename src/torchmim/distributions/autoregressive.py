"""The PixelHVAE likelihood: an autoregressive Bernoulli density over binary images.

p(x | maps) factorises over the pixels in raster order, each a Bernoulli whose logit a PixelCNN
(:class:`~torchmim.layers.PixelCNN`) computes from the pixels before it and from conditioning maps
(for PixelHVAE, maps of z1 and z2; spec ``image-architectures.md``, "PixelHVAE"). It is a
``torch.distributions.Distribution`` like every other decoder output, so objectives and metrics
use it unchanged; only its sampling is special (one network pass per pixel).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.nn import functional as F

from ..errors import DataError
from ..layers import check_images, chunked_no_grad, eval_mode
from ..precision import full_precision

if TYPE_CHECKING:  # pragma: no cover
    from ..layers import PixelCNN

__all__ = ["AutoregressiveBernoulli"]


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
    autograd, those of each evaluation chunk of :data:`~torchmim.layers.EVAL_CHUNK` images): it is
    then not exactly a normalised autoregressive density; in eval mode it is.
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
        logits = chunked_no_grad(self.pixelcnn, x, maps)
        return full_precision(logits).reshape(*shape, *self.event_shape)

    def log_prob(self, value: Tensor) -> Tensor:
        """Σ_i log Bernoulli(x_i; sigmoid ℓ_i(x_<i, maps)) (stable BCE-with-logits form)."""
        shape, x, maps = self._broadcast(value)

        def log_px(x: Tensor, maps: Tensor) -> Tensor:
            logits = full_precision(self.pixelcnn(x, maps))
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))

        return chunked_no_grad(log_px, x, maps).reshape(shape)

    @torch.no_grad()
    def sample_with_probs(self, sample_shape: torch.Size | tuple = ()) -> tuple[Tensor, Tensor]:
        """An autoregressive sample x and the probabilities p(x_i = 1 | x_<i, maps) it was drawn
        with."""
        shape = torch.Size(sample_shape) + self.batch_shape
        maps = self.maps.expand(*shape, *self.maps.shape[-3:]).reshape(-1, *self.maps.shape[-3:])
        with eval_mode(self.pixelcnn):
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
