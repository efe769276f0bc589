"""The objective interface, and the two anchored sampling paths every objective is built from.

An objective is a small frozen dataclass (its fields are its options, so it is its own config) that
is called as ``objective(model, x, beta) -> ObjectiveOutput``: a pure function of a model, a batch of
anchor samples x ∼ P(x) and the warm-up weight β of Eq. (18). It returns the scalar loss *and* the
per-sample log-density terms of each path, like Pyro's ELBO classes.

The two paths of the anchored sample distribution M_S (Eq. 4):

* encoder path — x ∼ P(x) (the batch), z ∼ q(z|x);
* decoder path — z ∼ P(z) (the model's latent anchor), x ∼ p(x|z).

Samples are reparameterised where the distribution allows (Section 5.2). Where it does not (a Bernoulli
p(x|z) for binary images), the path's loss gets the REINFORCE term of Eq. (17), with a leave-one-out
batch-mean baseline, which keeps the estimator unbiased and the reported loss value unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution

from ..errors import ConfigError
from ..models.latent_variable_model import JointTerms, LatentVariableModel
from ..registry import Registry

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveOutput",
    "check_beta",
    "decoder_path",
    "draw",
    "encoder_path",
    "path_loss",
    "two_path_loss",
]

#: Objectives by name: ``mim``, ``amim``, ``vae``, ``ae``, ``ce`` and the Appendix D variants.
OBJECTIVES: Registry[type[Objective]] = Registry("objective")


@dataclass
class ObjectiveOutput:
    """The loss to minimise and the per-sample terms of each path (``"encoder"``, ``"decoder"``)."""

    loss: Tensor
    terms: dict[str, JointTerms]

    def scalars(self) -> dict[str, float]:
        """``loss`` and the batch mean of every term, keyed ``"<path>/<term>"`` (for logging)."""
        out = {"loss": float(self.loss.detach())}
        for path, terms in self.terms.items():
            out.update({f"{path}/{k}": v for k, v in terms.means().items()})
        return out


@dataclass(frozen=True)
class Objective:
    """Base class: ``objective(model, x, beta=1.0) -> ObjectiveOutput``."""

    __registry__: ClassVar[Registry] = OBJECTIVES
    default_name: ClassVar[str] = "mim"
    #: Whether β (Eq. 18) changes the objective; the trainer warms β up only for these.
    uses_beta: ClassVar[bool] = False

    def __post_init__(self) -> None:
        """Every option checked against its annotation (``AE(reconstruction="l1")``, a NaN
        ``decoder_path_min_beta``): a one-line :class:`~torchmim.errors.ConfigError`."""
        from ..config import check_fields

        check_fields(self, "objective")

    @property
    def name(self) -> str:
        return OBJECTIVES.name_of(self)

    def __call__(self, model: LatentVariableModel, x: Tensor, beta: float = 1.0) -> ObjectiveOutput:
        raise NotImplementedError  # pragma: no cover


def check_beta(beta: Any) -> None:
    """Raise a one-line :class:`~torchmim.errors.ConfigError` unless the warm-up weight β of
    Eq. (18) is a finite number >= 0 (the warm-up takes it from 0 to 1). A tensor β (the
    vectorised trainer's, one per member) is passed through unchecked, to not synchronise a GPU."""
    if isinstance(beta, Tensor):
        return
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (
            math.isfinite(beta) and beta >= 0):
        raise ConfigError(f"beta must be a finite number >= 0 (the warm-up weight of Eq. 18), "
                          f"got {beta!r}")


def draw(dist: Distribution, sample_shape: torch.Size | tuple = ()) -> tuple[Tensor, bool]:
    """A sample of ``dist``: reparameterised if possible; also returns whether it needs REINFORCE."""
    if dist.has_rsample:
        return dist.rsample(sample_shape), False
    return dist.sample(sample_shape), True


def encoder_path(
    model: LatentVariableModel, x: Tensor, *, data_prior: bool = True,
    pz: Distribution | None = None,
) -> tuple[JointTerms, Tensor | None]:
    """Terms at x ∼ P(x) (the batch), z ∼ q(z|x); plus log q(z|x) if z needs REINFORCE, else None.

    ``pz``: the prior p(z) if the caller already built it (shared between the two paths).
    """
    qz_x = model.posterior(x)
    z, score = draw(qz_x)
    terms = model.terms(x, z, path="encoder", qz_x=qz_x, pz=pz, data_prior=data_prior)
    return terms, (terms.log_qz_x if score else None)


def decoder_path(
    model: LatentVariableModel, num_samples: int, *, pz: Distribution | None = None
) -> tuple[JointTerms, Tensor | None]:
    """Terms at z ∼ P(z), x ∼ p(x|z); plus the log-density of the samples that need REINFORCE
    (Eq. 17) — log p(x|z) for a discrete x, + log P(z) for an anchor without a pathwise sample (a
    learnable multivariate GMM), whose parameters would otherwise miss the score term — else None.
    log P(z) is the density z was drawn from (``sampling_log_prob`` where a warmed-up prior's
    ``log_prob`` differs from it)."""
    pz = model.prior() if pz is None else pz
    anchor = model.anchor(pz)
    z, z_score = draw(anchor, (num_samples,))
    px_z = model.likelihood(z)
    x, score = draw(px_z)
    terms = model.terms(x, z, path="decoder", px_z=px_z, pz=pz)
    log_prob = terms.log_px_z if score else None
    if z_score:
        log_pz = getattr(anchor, "sampling_log_prob", anchor.log_prob)(z)
        log_prob = log_pz if log_prob is None else log_prob + log_pz
    return terms, log_prob


def path_loss(per_sample: Tensor, score_log_prob: Tensor | None = None) -> Tensor:
    """Mean of a path's per-sample loss f, with the REINFORCE surrogate when its sample was not
    reparameterised:  mean f + mean[(f − b)·(log p − stopgrad log p)], b the leave-one-out mean of f.

    The added term is zero in value, and its gradient is the score-function term of Eq. (17).
    """
    loss = per_sample.mean()
    if score_log_prob is None:
        return loss
    f = per_sample.detach()
    n = f.shape[0]
    baseline = (f.sum() - f) / (n - 1) if n > 1 else torch.zeros_like(f)
    return loss + ((f - baseline) * (score_log_prob - score_log_prob.detach())).mean()


def two_path_loss(
    model: LatentVariableModel, x: Tensor, per_sample_fn: Callable[[JointTerms], Tensor], *,
    symmetric: bool = True, pz: Distribution | None = None,
) -> ObjectiveOutput:
    """The loss of an objective over the anchored sample set D = D_enc ∪ D_dec (Eq. 15, Alg. 1):

        L̂ = ½ ( mean_{D_enc} f + mean_{D_dec} f ),   f = ``per_sample_fn(terms)``,

    with D_enc = {x ∼ P(x) (the batch), z ∼ q(z|x)} and D_dec = {z ∼ P(z), x ∼ p(x|z)}, one decoder
    sample per anchor x; ``symmetric=False`` keeps D_enc only (A-MIM). Each path's mean gets the
    REINFORCE surrogate of :func:`path_loss` where its sample was not reparameterised.

    MIM, CE and MIM − H differ only in f, so this is the one place where the sample set is built:
    p(z) once for both paths (a VampPrior runs the encoder on its pseudo-inputs to build it).
    """
    pz = model.prior() if pz is None else pz  # ``pz``: a p(z) the caller built (MIM's warm-up)
    enc, enc_score = encoder_path(model, x, pz=pz)
    losses = [path_loss(per_sample_fn(enc), enc_score)]
    terms = {"encoder": enc}
    if symmetric:
        dec, dec_score = decoder_path(model, x.shape[0], pz=pz)
        losses.append(path_loss(per_sample_fn(dec), dec_score))
        terms["decoder"] = dec
    return ObjectiveOutput(loss=torch.stack(losses).mean(), terms=terms)
