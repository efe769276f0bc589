"""The MIM loss (Eq. 9, 15, 18; Algorithms 1 and 2) and its asymmetric variant A-MIM (Section 5.3)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..models.latent_variable_model import JointTerms, LatentVariableModel
from .base import OBJECTIVES, Objective, ObjectiveOutput, two_path_loss

__all__ = ["AMIM", "MIM", "mim_loss", "mim_per_sample"]


def mim_per_sample(terms: JointTerms, beta: float = 1.0) -> Tensor:
    """Per-sample MIM loss of Eq. (18):

        ℓ(x, z) = −½ [ log p(x|z) + log p(z) + β (log q(z|x) + log q(x)) ].

    At β = 1 this is −½ (log q(x, z) + log p(x, z)), the summand of Eq. (15).
    """
    return -0.5 * (terms.log_px_z + terms.log_pz + beta * (terms.log_qz_x + terms.log_qx))


def mim_loss(
    model: LatentVariableModel, x: Tensor, beta: float = 1.0, *, symmetric: bool = True
) -> ObjectiveOutput:
    """Empirical MIM loss over the sample set D = D_enc ∪ D_dec of equal halves (Eq. 15, Alg. 1):

        L̂ = ½ ( mean_{D_enc} ℓ + mean_{D_dec} ℓ ),

    with D_enc = {x ∼ P(x) (the batch), z ∼ q(z|x)} and D_dec = {z ∼ P(z), x ∼ p(x|z)}, one decoder
    sample per anchor x. With the marginal q(x) of Eq. (16), log q(x) is estimated per path as in
    Algorithm 2, and L̂ equals its line 13. ``symmetric=False`` drops D_dec (A-MIM).
    """
    return two_path_loss(model, x, lambda terms: mim_per_sample(terms, beta), symmetric=symmetric)


@OBJECTIVES.register("mim")
@dataclass(frozen=True)
class MIM(Objective):
    """Symmetric MIM (Algorithm 1; Algorithm 2 when q(x) is the marginal of Eq. 16).

    Attributes:
        decoder_path_min_beta: the decoder path D_dec joins once β reaches this value. The paper's
            reference code starts it when the warm-up ends (β = 1), training A-MIM before; 0 uses
            both paths from the first step.
    """

    uses_beta = True
    decoder_path_min_beta: float = 1.0

    def __call__(self, model: LatentVariableModel, x: Tensor, beta: float = 1.0) -> ObjectiveOutput:
        return mim_loss(model, x, beta, symmetric=beta >= self.decoder_path_min_beta)


@OBJECTIVES.register("amim")
@dataclass(frozen=True)
class AMIM(Objective):
    """Asymmetric MIM (Section 5.3): samples from the encoding distribution P(x) q(z|x) only.

    Used when sampling the decoder is expensive (the autoregressive PixelHVAE).
    """

    uses_beta = True

    def __call__(self, model: LatentVariableModel, x: Tensor, beta: float = 1.0) -> ObjectiveOutput:
        return mim_loss(model, x, beta, symmetric=False)
