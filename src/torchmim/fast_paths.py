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
      decoding), and in training on the CPU for hidden widths ≥ ``networks.FOLD_MIN_WIDTH`` and
      in vectorised groups (the fold then runs on every step, differentiably). torch's CPU tanh
      is ~9.5× slower than sigmoid on a 128 × 500 batch (``bench/toy_fast_paths.py --only
      ops``), and the toy
      IS-NLL is one 500-wide tanh layer over 10⁷ (x, z) pairs per run. Equal to the tanh form up
      to float rounding (tests/test_fast_paths.py).
    * ``inference_blocks`` (on): without autograd, on the CPU, an :class:`~torchmim.networks.MLP`
      runs many rows in cache-sized row blocks, its hidden activations written into buffers
      reused across the blocks (``networks.INFERENCE_BLOCK``), and the IS-NLL hands its decoder
      up to 65,536 pairs per call. Equal to the unblocked network up to float rounding
      (tests/test_fast_paths.py).
    * ``inplace_log_prob`` (on): without autograd, the diagonal Gaussians that torchmim builds
      (:class:`~torchmim.distributions.normal.Normal`: encoders, Gaussian decoders, the standard
      normal prior) compute ``log_prob`` as −½((x − μ)/σ)² − log σ − ½ log 2π in one temporary
      updated in place (plus log σ at the parameters' size), instead of torch's seven allocating
      passes; the IS-NLL evaluates three such densities per (x, z) pair. The same value up to
      float rounding.
    * ``affine_backward`` (on): the linear maps of an :class:`~torchmim.networks.MLP` in training
      and of a vectorised group run through :func:`~torchmim.networks.affine`, whose backward lays
      out the products for the CPU's GEMM where that measured faster (a narrow input such as the
      2-D data or latent; stacked output layers); the gradients equal autograd's up to float
      rounding (tests/test_fast_paths.py).

    * ``native_kernels`` (on): without autograd, on the CPU in float32, an
      :class:`~torchmim.networks.MLP` of at least ``networks.NATIVE_MIN_ROWS`` rows (sigmoid,
      folded-tanh, SiLU or ReLU units, at most ``native.FUSED_MAX_OUTPUTS`` outputs) runs as
      one fused kernel of :mod:`torchmim.native` (compiled with the system's C compiler on first
      use; torch's ops where none is found), and the IS-NLL of a Gaussian MLP decoder evaluates
      its log-density in the same pass (``ConditionalGaussian.tiled_log_prob``): the MLP
      2.3–2.7× and the toy IS-NLL 1.9–2.4× faster than torch's ops (fig4's shape 1.34×;
      ``bench/toy_fast_paths.py --only native``). A vectorised group's one-hidden-layer MLPs
      with inputs ≤ 4 and outputs ≤ 8 (fig3's networks) run in the kernels too
      (:func:`~torchmim.networks.native_group_mlp`): forward and backward in the training
      step from width ``vectorized.NATIVE_MIN_WIDTH`` (the step 1.2–1.8× at widths 50–500),
      the forward in the validation loss at every width (1.3–3.1×;
      ``bench/native_group_step.py``). Equal to them up to float rounding
      (tests/test_native.py).

    The switches change float rounding only; ``fast_paths(folded_tanh=False,
    inference_blocks=False, affine_backward=False, inplace_log_prob=False, native_kernels=False)``
    gives the arithmetic of the plain modules. They are process-wide; a sweep's local worker processes take the
    parent's switches when their pool starts (Ray workers start with the defaults).
    """

    fused_gates: bool = False
    channels_last: bool = True
    gated_channels_last: bool = False
    folded_tanh: bool = True
    inference_blocks: bool = True
    affine_backward: bool = True
    inplace_log_prob: bool = True
    native_kernels: bool = True


#: The process-wide switches; change them with :func:`fast_paths`.
FAST_PATHS = _FastPaths()


@contextmanager
def fast_paths(*, fused_gates: bool | None = None, channels_last: bool | None = None,
               gated_channels_last: bool | None = None,
               folded_tanh: bool | None = None,
               inference_blocks: bool | None = None,
               affine_backward: bool | None = None,
               inplace_log_prob: bool | None = None,
               native_kernels: bool | None = None) -> Iterator[_FastPaths]:
    """Temporarily set the switches of :data:`FAST_PATHS` (``None``: unchanged), e.g. ``with
    fast_paths(fused_gates=True, gated_channels_last=True):``."""
    values = {"fused_gates": fused_gates, "channels_last": channels_last,
              "gated_channels_last": gated_channels_last, "folded_tanh": folded_tanh,
              "inference_blocks": inference_blocks, "affine_backward": affine_backward,
              "inplace_log_prob": inplace_log_prob, "native_kernels": native_kernels}
    saved = dataclasses.asdict(FAST_PATHS)
    for name, value in values.items():
        if value is not None:
            setattr(FAST_PATHS, name, bool(value))
    try:
        yield FAST_PATHS
    finally:
        for name, value in saved.items():
            setattr(FAST_PATHS, name, value)
