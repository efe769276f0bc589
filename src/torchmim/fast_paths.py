"""The switches of torchmim's optional CPU fast paths (issue 11): :data:`FAST_PATHS` and the
:func:`fast_paths` context that sets them. Each path equals the plain one up to float rounding
and is tested against it (tests/test_fast_paths.py); each is on by default only where a benchmark
measured a gain (docs/benchmarks.md). A module of its own, without imports from the rest of
torchmim, so that densities, networks and layers can all read the switches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["FAST_PATHS", "fast_paths"]


@dataclass
class _FastPaths:
    """Switches of the optional CPU paths (issue 11), each kept on by default only where
    bench/image.py or bench/toy_fast_paths.py measured a gain on the 2-core benchmark machine
    (docs/benchmarks.md).

    * ``fused_gates`` (off): a gated layer runs its two maps h and g as ONE linear/convolution with
      twice the outputs (weights concatenated on the fly), then splits. The parameters stay two
      tensors ``h``/``g`` (saved models, per-parameter gradient normalisation and the reference
      weight mapping are unchanged); equal to the two-map form up to float rounding
      (tests/test_fast_paths.py). Measured: no gain (±1%) on convHVAE / PixelHVAE training, 8%
      slower with the VampPrior, so off.
    * ``channels_last`` (on): the PixelCNN runs in channels-last (NHWC) memory format, oneDNN's
      native layout (+11% on a PixelHVAE training step).
    * ``gated_channels_last`` (off): the same for the gated conv stacks of convHVAE's encoder and
      decoder (no gain, 7% slower with the VampPrior).
    * ``folded_tanh`` (on): a tanh :class:`~torchmim.networks.MLP` runs as the same network with
      sigmoid units, tanh(u) = 2·sigmoid(2u) − 1 folded into the weights of the layers around it
      (no extra pass over the activations): always without autograd (evaluation, encoding,
      decoding), and in training for hidden widths ≥ ``networks.FOLD_MIN_WIDTH`` (the fold then
      runs on every step, differentiably). torch's CPU tanh costs ~4 ns per element here against
      ~0.2–0.4 ns for sigmoid, and the toy IS-NLL is one 500-wide tanh layer over 10⁷ (x, z)
      pairs per run: 2.5× faster (bench/toy.py). Equal to the tanh form up to float rounding
      (tests/test_fast_paths.py).
    * ``inference_blocks`` (on): without autograd an :class:`~torchmim.networks.MLP` runs many rows
      in cache-sized row blocks, its hidden activations written into buffers reused across the
      blocks (``networks.INFERENCE_BLOCK``); the IS-NLL hands its decoder whole chunks of (x, z)
      pairs. Row for row the same kernels as unblocked (tests/test_fast_paths.py).
    * ``inplace_log_prob`` (on): without autograd, the diagonal Gaussians that torchmim builds
      (:class:`~torchmim.distributions.normal.Normal`: encoders, Gaussian decoders, the standard
      normal prior) compute ``log_prob`` in three in-place passes over a single temporary,
      −½((x − μ)/σ)² − log σ − ½ log 2π, instead of torch's seven allocating ones; the IS-NLL
      evaluates three such densities per (x, z) pair. The same value up to float rounding.
    * ``affine_backward`` (on): an :class:`~torchmim.networks.MLP`'s linear maps in training run
      through :func:`~torchmim.networks.affine`, whose backward lays out the products of a layer
      with a narrow input (the 2-D data or latent) for the CPU's GEMM (6–9× faster products); the
      gradients equal autograd's up to float rounding (tests/test_fast_paths.py).
    """

    fused_gates: bool = False
    channels_last: bool = True
    gated_channels_last: bool = False
    folded_tanh: bool = True
    inference_blocks: bool = True
    affine_backward: bool = True
    inplace_log_prob: bool = True


#: The process-wide switches; change them with :func:`fast_paths`.
FAST_PATHS = _FastPaths()


@contextmanager
def fast_paths(*, fused_gates: bool | None = None, channels_last: bool | None = None,
               gated_channels_last: bool | None = None,
               folded_tanh: bool | None = None,
               inference_blocks: bool | None = None,
               affine_backward: bool | None = None,
               inplace_log_prob: bool | None = None) -> Iterator[_FastPaths]:
    """Temporarily set the switches of :data:`FAST_PATHS` (``None``: unchanged), e.g. ``with
    fast_paths(fused_gates=True, gated_channels_last=True):``."""
    values = {"fused_gates": fused_gates, "channels_last": channels_last,
              "gated_channels_last": gated_channels_last, "folded_tanh": folded_tanh,
              "inference_blocks": inference_blocks, "affine_backward": affine_backward,
              "inplace_log_prob": inplace_log_prob}
    saved = dataclasses.asdict(FAST_PATHS)
    for name, value in values.items():
        if value is not None:
            setattr(FAST_PATHS, name, bool(value))
    try:
        yield FAST_PATHS
    finally:
        for name, value in saved.items():
            setattr(FAST_PATHS, name, value)
