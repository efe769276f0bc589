"""Mixed precision: the networks compute in bfloat16, every density in full precision.

``TrainerConfig.precision = "bf16-mixed"`` runs the objective of every training step (and the
validation loss) under :func:`torch.autocast` with bfloat16, PyTorch's own mixed-precision
mechanism: convolutions, linear layers and matrix products take bfloat16 inputs and give bfloat16
outputs, parameters, gradients and Adam's moments stay in the model's dtype. Where a network's
output becomes a distribution's parameters (a Gaussian's mean and log-variance, Bernoulli logits,
a mixture's logits), :func:`full_precision` casts it back, so z = μ + σ·ε, every log-density
(log p(x|z), log p(z), log q(z|x)) and the loss are computed in float32 — only the networks' inner
arithmetic is rounded. On a CPU with AVX512-BF16 oneDNN's bfloat16 convolutions made the image
models' training step 1.7-2.0× faster (docs/benchmarks.md; GPUs not measured). The metrics
(MI, reconstruction, k-NN) always run in full precision; the IS-NLL only with
``eval.nll_precision = "bf16-mixed"`` (``importance_sampled_nll(precision=...)``), recorded in the
run's config and its ``points.npz``; the validation loss, and so early stopping and the
best-model choice, in the training precision.

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

__all__ = ["PRECISIONS", "Precision", "autocast", "check_model_config", "check_precision",
           "check_terms", "full_precision"]

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


#: The fields of a model config that name a density of the PRIORS registry.
_DENSITY_FIELDS = ("prior", "data_prior", "latent_anchor")


def _unsafe(where: str, precision: str, what: str) -> ConfigError:
    return ConfigError(f"{where}={precision!r} is not supported with {what}: its log-density runs "
                       "networks whose rounding to bfloat16 would reach the log-determinants; use "
                       "precision 'full'")


def check_model_config(model_config: object, precision: str, where: str = "train.precision"
                       ) -> None:
    """:func:`check_precision` from a model config, before anything is built or loaded (a run
    config checks it when it is made): a density named by ``model.prior``, ``model.data_prior``
    or ``model.latent_anchor`` that is not ``autocast_safe`` is a one-line ConfigError."""
    if precision == "full":
        return
    from .distributions.priors import PRIORS

    for field in _DENSITY_FIELDS:
        name = getattr(model_config, field, None)
        if isinstance(name, str) and name in PRIORS and not getattr(PRIORS.get(name),
                                                                      "autocast_safe", True):
            raise _unsafe(where, precision, f"model.{field}={name!r}")


def check_precision(model: nn.Module, precision: str, where: str = "train.precision") -> None:
    """Refuse ``precision`` for ``model`` before any work: a one-line ConfigError naming the
    module whose densities are not safe under autocast, or a model not in float32."""
    if precision == "full":
        return
    if precision not in PRECISIONS:
        raise ConfigError(f"{where} must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    for name, module in model.named_modules():
        if not getattr(module, "autocast_safe", True):
            raise _unsafe(where, precision, f"{type(module).__name__} ({name or 'the model'})")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes - {torch.float32}:
        raise ConfigError(f"{where}={precision!r} needs a float32 model, got parameters "
                          f"in {', '.join(sorted(str(d) for d in dtypes))}")


def check_terms(terms: dict[str, object], precision: str) -> None:
    """After the first step: every per-sample term must have come out in full precision. A
    custom density whose log-density stays in bfloat16 is named; one whose bfloat16 parameters
    are promoted to float32 by a float32 operand is not (the tests check the parameters of every
    built-in density instead)."""
    if precision == "full":
        return
    for path, joint in terms.items():
        for field, value in vars(joint).items():
            if isinstance(value, Tensor) and value.dtype in _REDUCED:
                raise ConfigError(
                    f"{path}/{field} came out in {value.dtype} under train.precision={precision!r}: "
                    "a density of this model does not cast its network's output to full "
                    "precision (torchmim.precision.full_precision); use precision 'full'")
