"""Mixed precision: the networks compute in bfloat16, every density in full precision.

``TrainerConfig.precision = "bf16-mixed"`` runs the objective of every training step (and the
validation loss) under :func:`torch.autocast` with bfloat16, PyTorch's own mixed-precision
mechanism: convolutions, linear layers and matrix products take bfloat16 inputs and give bfloat16
outputs, parameters, gradients and Adam's moments stay in the model's dtype. Where a network's
output becomes a distribution's parameters (a Gaussian's mean and log-variance, Bernoulli logits,
a mixture's logits), :func:`full_precision` casts it back, so z = μ + σ·ε, every log-density
(log p(x|z), log p(z), log q(z|x)) and the loss are computed in float32 — only the networks' inner
arithmetic is rounded. On CPUs with AVX512-BF16 (and on GPUs) oneDNN's bfloat16 convolutions are
about twice as fast as float32 (docs/benchmarks.md: 1.7-1.8× on the image models' training step);
evaluation (``torchmim.metrics``) always runs in full precision.

Not every density is safe: a normalizing-flow prior evaluates hyper-networks *inside* its
log-density, whose log-determinants would then be rounded too. A prior declares this with
``autocast_safe = False`` (:class:`~torchmim.distributions.flow.FlowPrior` does), and
:func:`check_precision` refuses such a model up front.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from .errors import ConfigError

__all__ = ["PRECISIONS", "Precision", "autocast", "check_precision", "check_terms",
           "full_precision"]

Precision = Literal["full", "bf16-mixed"]
#: ``"full"``: the model's own dtype throughout; ``"bf16-mixed"``: networks in bfloat16.
PRECISIONS: tuple[str, ...] = ("full", "bf16-mixed")

_REDUCED = (torch.bfloat16, torch.float16)


def full_precision(t: Tensor) -> Tensor:
    """``t`` in float32 if an autocast region made it bfloat16/float16, else ``t`` unchanged
    (float64 stays float64). Called where a network's output becomes a distribution's
    parameters."""
    return t.float() if t.dtype in _REDUCED else t


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """The autocast region of ``precision`` on ``device`` (nothing for ``"full"``)."""
    if precision == "full":
        yield
        return
    if precision != "bf16-mixed":
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        yield


def check_precision(model: nn.Module, precision: str) -> None:
    """Refuse ``precision`` for ``model`` before any work: a one-line ConfigError naming the
    module whose densities are not safe under autocast, or a model not in float32."""
    if precision == "full":
        return
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for name, module in model.named_modules():
        if not getattr(module, "autocast_safe", True):
            raise ConfigError(
                f"train.precision={precision!r} is not supported with {type(module).__name__} "
                f"({name or 'the model'}): its log-density runs networks whose rounding to "
                "bfloat16 would reach the log-determinants; use precision 'full'")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes - {torch.float32}:
        raise ConfigError(f"train.precision={precision!r} needs a float32 model, got parameters "
                          f"in {', '.join(sorted(str(d) for d in dtypes))}")


def check_terms(terms: dict[str, object], precision: str) -> None:
    """After the first step: every per-sample term must have come out in full precision — a
    custom density that does not cast its network's output (:func:`full_precision`) is named."""
    if precision == "full":
        return
    for path, joint in terms.items():
        for field, value in vars(joint).items():
            if isinstance(value, Tensor) and value.dtype in _REDUCED:
                raise ConfigError(
                    f"{path}/{field} came out in {value.dtype} under train.precision={precision!r}: "
                    "a density of this model does not cast its network's output to full "
                    "precision (torchmim.precision.full_precision); use precision 'full'")
