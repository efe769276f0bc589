"""Building blocks of the image models (spec ``image-architectures.md``, "Building blocks").

The hierarchical image models of the paper (Section 6.3) are those of the VampPrior paper (Tomczak &
Welling, 2018), built from:

* :class:`GatedDense` — ``h(x) · sigmoid(g(x))`` with two parallel linear maps;
* :class:`GatedConv2d` — the same with two parallel convolutions of one geometry (optionally run
  as one fused map with twice the outputs: :func:`fast_paths`, issue 11);
* :class:`MaskedConv2d` — the PixelCNN convolution with a type A or B mask, and :class:`PixelCNN`,
  the stack of masked convolutions of the PixelHVAE decoder;
* :class:`GaussianHead` — a diagonal-Gaussian head: a linear mean and a linear log-variance
  hard-clamped to ``logvar_clamp`` ([−6, 2] in the reference).

Initialisation follows the reference: He-normal weights (N(0, 2/fan_in)) for every linear layer
(:func:`he_normal_`, :func:`init_linear_he_`), PyTorch defaults for convolutions and biases.

Helpers shared by the image networks and the PixelCNN's distribution: input checks
(:func:`check_images`, :func:`check_latent`), evaluation of a network in bounded memory
(:func:`chunked_no_grad`) and a temporary eval mode (:func:`eval_mode`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.distributions import Independent
from torch.nn import functional as F

from .distributions.conditional import gaussian_from_mean_logvar
from .errors import ConfigError, DataError
from .fast_paths import FAST_PATHS, fast_paths  # re-exported: the switches' home until 0.2

__all__ = [
    "EVAL_CHUNK",
    "FAST_PATHS",
    "GatedConv2d",
    "GatedDense",
    "GaussianHead",
    "MaskedConv2d",
    "PixelCNN",
    "check_images",
    "check_latent",
    "chunked_no_grad",
    "conv_output_size",
    "eval_mode",
    "fast_paths",
    "he_normal_",
    "init_linear_he_",
    "to_conv_layout",
]

#: Rows (images) run at once when no gradient is needed (evaluation: the importance-sampled NLL
#: decodes S·B latents; the conv decoders would otherwise hold S·B·64·H·W activations).
EVAL_CHUNK = 256


def to_conv_layout(x: Tensor, channels_last: bool | None = None) -> Tensor:
    """``x`` (N, C, H, W) in channels-last memory format if ``channels_last`` (default:
    ``FAST_PATHS.channels_last``); the values and shape are unchanged."""
    if (FAST_PATHS.channels_last if channels_last is None else channels_last) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _gate(y: Tensor, dim: int) -> Tensor:
    h, g = y.chunk(2, dim=dim)
    return h * torch.sigmoid(g)


def he_normal_(linear: nn.Linear) -> nn.Linear:
    """He-normal weights as in the reference: W ~ N(0, 2 / fan_in); the bias keeps its default."""
    with torch.no_grad():
        linear.weight.normal_(0.0, math.sqrt(2.0 / linear.in_features))
    return linear


def init_linear_he_(module: nn.Module) -> nn.Module:
    """Apply :func:`he_normal_` to every ``nn.Linear`` inside ``module`` (the reference's loop)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            he_normal_(m)
    return module


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial size after a convolution: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    out = (size + 2 * padding - kernel_size) // stride + 1
    if out < 1:
        raise ConfigError(f"a convolution with kernel {kernel_size}, stride {stride}, padding "
                          f"{padding} does not fit an input of size {size}")
    return out


class GatedDense(nn.Module):
    """Gated dense layer: y = h(x) · sigmoid(g(x)), h and g linear maps in_features → out_features.

    Works on any number of leading dimensions (``nn.Linear`` semantics). Weights are He-normal.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.h = he_normal_(nn.Linear(in_features, out_features))
        self.g = he_normal_(nn.Linear(in_features, out_features))
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: Tensor) -> Tensor:
        if FAST_PATHS.fused_gates:
            # one (in → 2·out) GEMM instead of two; the cat of the small weights is cheap
            weight = torch.cat([self.h.weight, self.g.weight])
            bias = torch.cat([self.h.bias, self.g.bias])
            return _gate(F.linear(x, weight, bias), -1)
        return self.h(x) * torch.sigmoid(self.g(x))


class GatedConv2d(nn.Module):
    """Gated convolution: y = h(x) · sigmoid(g(x)), h and g convolutions of the same geometry.

    PyTorch's default initialisation, as in the reference.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1) -> None:
        super().__init__()
        self.h = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.g = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def output_size(self, size: int) -> int:
        """Spatial output size for an input of spatial size ``size``."""
        return conv_output_size(size, self.kernel_size, self.stride, self.padding)

    def forward(self, x: Tensor) -> Tensor:
        if FAST_PATHS.fused_gates:
            # one convolution with 2·out channels: a single oneDNN call and pass over x
            weight = torch.cat([self.h.weight, self.g.weight])
            bias = torch.cat([self.h.bias, self.g.bias])
            h = self.h
            return _gate(F.conv2d(x, weight, bias, h.stride, h.padding, h.dilation), 1)
        return self.h(x) * torch.sigmoid(self.g(x))


def pixelcnn_mask(mask_type: str, out_channels: int, in_channels: int, kernel_size: int,
                  conditioning_channels: int = 0) -> Tensor:
    """The (out, in, k, k) 0/1 mask of a PixelCNN convolution (spec, "Masked conv").

    Rows below the centre are zero; in the centre row, type ``"A"`` zeroes the centre and everything
    right of it, type ``"B"`` only what is right of it. The last ``conditioning_channels`` input
    channels (observed conditioning maps, not autoregressive inputs) are left unmasked.
    """
    if mask_type not in ("A", "B"):
        raise ConfigError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ConfigError(f"a masked convolution needs an odd kernel size, got {kernel_size}")
    if not 0 <= conditioning_channels <= in_channels:
        raise ConfigError(f"conditioning_channels must be in [0, {in_channels}], got "
                          f"{conditioning_channels}")
    c = kernel_size // 2
    mask = torch.ones(out_channels, in_channels, kernel_size, kernel_size)
    mask[:, :, c, c + (mask_type == "B"):] = 0
    mask[:, :, c + 1:] = 0
    if conditioning_channels:
        mask[:, in_channels - conditioning_channels:] = 1
    return mask


class MaskedConv2d(nn.Conv2d):
    """PixelCNN convolution (van den Oord et al., 2016) with a type A or B spatial mask.

    Stride 1 and "same" padding (k // 2), so that output pixel i sits over input pixel i. The mask
    is applied functionally (``weight * mask``), so masked weights get zero gradient and the stored
    weights need no in-place masking. The mask is a non-persistent buffer (derived from the config,
    not saved).

    Support: *spatial* masking with one channel group — every channel of pixel i is hidden from the
    outputs at pixel i (type A). For C > 1 channels the model thus treats the channels of one pixel
    as conditionally independent given the earlier pixels (a valid, if less expressive,
    autoregressive factorisation than PixelCNN's R→G→B channel ordering, which is not implemented).

    Args:
        mask_type: ``"A"`` (first layer: pixel i hidden) or ``"B"`` (later layers: pixel i visible).
        conditioning_channels: the last input channels hold conditioning maps (e.g. the z maps of
            PixelHVAE); they are not masked.
    """

    def __init__(self, mask_type: str, in_channels: int, out_channels: int, kernel_size: int = 3,
                 *, bias: bool = True, conditioning_channels: int = 0) -> None:
        mask = pixelcnn_mask(mask_type, out_channels, in_channels, kernel_size,
                             conditioning_channels)
        super().__init__(in_channels, out_channels, kernel_size, stride=1,
                         padding=kernel_size // 2, bias=bias)
        self.mask_type = mask_type
        self.conditioning_channels = conditioning_channels
        self.register_buffer("mask", mask, persistent=False)

    def masked_weight(self) -> Tensor:
        """The kernel with the mask applied."""
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return F.conv2d(x, self.masked_weight(), self.bias, self.stride, self.padding)


class PixelCNN(nn.Module):
    """The PixelCNN of the PixelHVAE decoder (spec, "PixelHVAE"): logits of p(x_i | x_<i, maps).

    Input: ``cat([x, maps], dim=1)`` with ``x_channels`` autoregressive channels and
    ``cond_channels`` conditioning channels. Blocks: masked conv type A (in → ``channels``, no bias)
    + batch norm + ReLU, then ``num_layers − 1`` × [type B (``channels`` → ``channels``, no bias) +
    batch norm + ReLU]; then a 1×1 convolution to ``x_channels`` logits.

    ``unmasked_conditioning=False`` is the reference: the conditioning maps go through the type-A
    mask like x. ``True`` is the spec's "cleaner variant": the first layer sees the conditioning
    maps through the full k×k kernel (they are observed, so masking them only hides information); x
    stays masked, so the output at pixel i still depends on x only through pixels before i.

    Batch norm in training mode normalises with batch statistics, which couple all pixels of all
    images; it is therefore only causal in eval mode (running statistics: a per-channel affine
    map). :meth:`sample` requires eval mode.
    """

    def __init__(self, x_channels: int, cond_channels: int, channels: int = 64, num_layers: int = 8,
                 kernel_size: int = 3, *, batch_norm: bool = True,
                 unmasked_conditioning: bool = False) -> None:
        super().__init__()
        if num_layers < 1 or channels < 1:
            raise ConfigError(f"PixelCNN needs num_layers >= 1 and channels >= 1, got "
                              f"{num_layers}, {channels}")
        self.x_channels, self.cond_channels = x_channels, cond_channels
        self.kernel_size, self.num_layers = kernel_size, num_layers
        self.unmasked_conditioning = unmasked_conditioning
        blocks = []
        width = x_channels + cond_channels
        for i in range(num_layers):
            conv = MaskedConv2d(
                "A" if i == 0 else "B", width, channels, kernel_size, bias=False,
                conditioning_channels=cond_channels if (i == 0 and unmasked_conditioning) else 0)
            post = [nn.BatchNorm2d(channels)] if batch_norm else []
            blocks.append(nn.ModuleDict({"conv": conv, "post": nn.Sequential(*post, nn.ReLU())}))
            width = channels
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(channels, x_channels, 1)

    @property
    def rows_above(self) -> int:
        """How many rows above pixel i its output depends on (the receptive field's height − 1)."""
        return self.num_layers * (self.kernel_size // 2)

    @property
    def rows_below(self) -> int:
        """How many rows below pixel i its output depends on (only via unmasked conditioning)."""
        return self.kernel_size // 2 if self.unmasked_conditioning else 0

    def forward(self, x: Tensor, maps: Tensor) -> Tensor:
        """Logits (N, x_channels, H, W) of every pixel given the pixels before it (teacher
        forcing)."""
        h = to_conv_layout(torch.cat([x, maps], dim=1))
        for block in self.blocks:
            h = block["post"](block["conv"](h))
        return self.out(h)

    # ------------------------------------------------------------------ autoregressive sampling
    def _inputs_above(self, x: Tensor, maps: Tensor, row: int) -> list[Tensor]:
        """Each block's input at rows row−c … row−1 (c = k // 2; zeros above the image), exact.

        Computed on the band of rows [row − rows_above, row + rows_below): rows outside it are
        outside the receptive field of those rows, so the band's zero padding never reaches them.
        """
        c = self.kernel_size // 2
        n, _, height, width = x.shape
        lo, hi = max(0, row - self.rows_above), min(height, row + self.rows_below)
        h = torch.cat([x[:, :, lo:hi], maps[:, :, lo:hi]], dim=1)
        above = []
        for block in self.blocks:
            rows = h[:, :, max(0, row - c - lo):row - lo]
            if rows.shape[2] < c:  # above the top of the image: the convolution's zero padding
                rows = F.pad(rows, (0, 0, c - rows.shape[2], 0))
            above.append(rows)
            h = block["post"](block["conv"](h)) if h.shape[2] else h.new_zeros(
                n, block["conv"].out_channels, 0, width)
        return above

    def _row_logits(self, x_row: Tensor, maps: Tensor, row: int, above: list[Tensor]) -> Tensor:
        """Logits (N, x_channels, W) of row ``row`` from its current values and the rows above."""
        c = self.kernel_size // 2
        n, _, _, width = maps.shape
        below_maps = maps[:, :, row + 1:row + 1 + c]
        below_maps = F.pad(below_maps, (0, 0, 0, c - below_maps.shape[2]))
        h = torch.cat([x_row, maps[:, :, row:row + 1]], dim=1)
        for i, block in enumerate(self.blocks):
            conv = block["conv"]
            below = (torch.cat([below_maps.new_zeros(n, self.x_channels, c, width), below_maps], 1)
                     if i == 0 else h.new_zeros(n, h.shape[1], c, width))
            window = torch.cat([above[i], h, below], dim=2)  # rows row−c … row+c
            h = block["post"](F.conv2d(window, conv.masked_weight(), conv.bias, 1, (0, c)))
        return self.out(h)[:, :, 0]

    @torch.no_grad()
    def sample(self, maps: Tensor) -> tuple[Tensor, Tensor]:
        """Autoregressive sample x (N, x_channels, H, W) given ``maps`` (N, cond_channels, H, W),
        and the probabilities p(x_i = 1 | x_<i, maps) it was drawn with (raster order; the channels
        of one pixel are drawn together).

        One network evaluation per pixel, each on a single row: the inputs of every block at the
        rows above the current row are fixed while the row is sampled, so they are computed once per
        row (:meth:`_inputs_above`) and each pixel only recomputes the current row (exact, about an
        order of magnitude cheaper than a full pass per pixel). Requires eval mode (class docs).
        """
        if self.training:
            raise RuntimeError("PixelCNN.sample needs eval mode: batch-norm batch statistics are "
                               "not causal; call .eval() first")
        n, _, height, width = maps.shape
        x = maps.new_zeros(n, self.x_channels, height, width)
        probs = torch.empty_like(x)
        for row in range(height):
            above = self._inputs_above(x, maps, row)
            for col in range(width):
                logits = self._row_logits(x[:, :, row:row + 1], maps, row, above)
                p = torch.sigmoid(logits[..., col])
                probs[:, :, row, col] = p
                x[:, :, row, col] = torch.bernoulli(p)
        return x, probs


class GaussianHead(nn.Module):
    """Diagonal Gaussian N(μ(h), diag σ²(h)) over vectors: μ = linear(h), log σ² = clamp(linear(h)).

    The reference head of the image models (spec, "Latent Gaussian heads"): σ = exp(½ clamp(log σ²,
    *logvar_clamp)) + ``std_floor``. He-normal weights.
    """

    def __init__(self, in_features: int, out_features: int, *,
                 logvar_clamp: tuple[float, float] | None = (-6.0, 2.0),
                 std_floor: float = 0.0) -> None:
        super().__init__()
        self.mean = he_normal_(nn.Linear(in_features, out_features))
        self.logvar = he_normal_(nn.Linear(in_features, out_features))
        self.logvar_clamp = tuple(logvar_clamp) if logvar_clamp is not None else None
        self.std_floor = float(std_floor)

    def forward(self, h: Tensor) -> Independent:
        return gaussian_from_mean_logvar(self.mean(h), self.logvar(h), std_floor=self.std_floor,
                                         logvar_clamp=self.logvar_clamp)


def check_images(x: Tensor, shape: Sequence[int], name: str = "x") -> Tensor:
    """Raise :class:`DataError` unless ``x`` is a float tensor of shape (..., *shape)."""
    shape = tuple(shape)
    if not isinstance(x, Tensor):
        raise DataError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < len(shape) or tuple(x.shape[x.dim() - len(shape):]) != shape:
        want = ", ".join(map(str, shape))
        raise DataError(f"{name} has shape {tuple(x.shape)}, but (..., {want}) is expected")
    if not x.is_floating_point():
        raise DataError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return x


def check_latent(z: Tensor, dim: int) -> Tensor:
    """Raise :class:`DataError` unless ``z`` is a tensor of latents (..., dim) (decoder inputs)."""
    if not isinstance(z, Tensor) or z.dim() < 1 or z.shape[-1] != dim:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise DataError(f"z has shape {shape}, but the decoder expects (..., {dim})")
    return z


def chunked_no_grad(fn: Callable[..., Tensor], *tensors: Tensor,
                    chunk: int | None = None) -> Tensor:
    """``fn(*tensors)`` over the first dimension in chunks of ``chunk`` (default
    :data:`EVAL_CHUNK`) when autograd is off; the same result with bounded memory. With autograd
    on it is one call (the graph would keep every chunk's activations anyway)."""
    chunk = EVAL_CHUNK if chunk is None else chunk
    n = tensors[0].shape[0]
    if torch.is_grad_enabled() or n <= chunk:
        return fn(*tensors)
    return torch.cat([fn(*(t[i:i + chunk] for t in tensors)) for i in range(0, n, chunk)])


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode (batch norm with running statistics), then each restored to
    its own previous mode (not just the top module's)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
