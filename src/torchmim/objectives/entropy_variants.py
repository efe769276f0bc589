"""The entropy-regularised variants of Appendix D.1 (Fig. 11 and 12).

They are not valid probabilistic objectives; they isolate the effect of the joint entropy as a
mutual-information regulariser (Eq. 5, 19):

* VAE + H: the VAE loss plus the joint entropy of the encoding distribution, estimated on the encoder
  sample as H_q(x, z) ≈ −(log q(z|x) + log q(x)) — it counteracts the VAE's implicit push towards low MI;
* MIM − H: the MIM loss minus the joint entropy of the sample mixture, estimated on each path's sample
  as H_{M_S}(x, z) ≈ −log M_θ(x, z) with M_θ = ½(q(x, z) + p(x, z)) — it removes MIM's MI term and
  collapses the posterior.

The estimates follow the paper's reference code (the model densities stand in for the anchors, whose
density is unknown in general).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..models.latent_variable_model import LatentVariableModel
from .base import (
    OBJECTIVES,
    Objective,
    ObjectiveOutput,
    check_beta,
    encoder_path,
    path_loss,
    two_path_loss,
)
from .cross_entropy import ce_per_sample
from .mim import mim_per_sample

__all__ = ["MIMMinusEntropy", "VAEPlusEntropy"]


@OBJECTIVES.register("vae_plus_h")
@dataclass(frozen=True)
class VAEPlusEntropy(Objective):
    """VAE loss + H_q(x, z):  −[log p(x|z) + β(log p(z) − log q(z|x))] − [log q(z|x) + log q(x)]."""

    uses_beta = True

    def __call__(self, model: LatentVariableModel, x: Tensor, beta: float = 1.0) -> ObjectiveOutput:
        check_beta(beta)
        terms, score = encoder_path(model, x)
        per_sample = (-(terms.log_px_z + beta * (terms.log_pz - terms.log_qz_x))
                      - (terms.log_qz_x + terms.log_qx))
        return ObjectiveOutput(loss=path_loss(per_sample, score), terms={"encoder": terms})


@OBJECTIVES.register("mim_minus_h")
@dataclass(frozen=True)
class MIMMinusEntropy(Objective):
    """MIM loss − H_{M_S}(x, z):  ℓ_MIM(x, z) + log M_θ(x, z) on both anchored paths.

    Attributes:
        decoder_path_min_beta: as for :class:`~torchmim.objectives.MIM`.
    """

    uses_beta = True
    decoder_path_min_beta: float = 1.0

    def __call__(self, model: LatentVariableModel, x: Tensor, beta: float = 1.0) -> ObjectiveOutput:
        check_beta(beta)
        return two_path_loss(model, x, lambda t: mim_per_sample(t, beta) - ce_per_sample(t),
                             symmetric=beta >= self.decoder_path_min_beta)
