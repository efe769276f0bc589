"""The mixture cross-entropy L_CE of Eq. (7), MIM without the consistency term (Appendix D.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.latent_variable_model import JointTerms, LatentVariableModel
from .base import OBJECTIVES, Objective, ObjectiveOutput, check_beta, two_path_loss

__all__ = ["CE", "ce_per_sample"]


def ce_per_sample(terms: JointTerms) -> Tensor:
    """−log M_θ(x, z) = −log ½ (q(x, z) + p(x, z)), in log space (logaddexp), per sample.

    Computing the mixture in log space avoids the float32 under/overflow of exponentiating the two
    joints that Appendix A.2.3 warns about.
    """
    return -(torch.logaddexp(terms.log_q_joint, terms.log_p_joint) - math.log(2.0))


@OBJECTIVES.register("ce")
@dataclass(frozen=True)
class CE(Objective):
    """L_CE = H(M_S, M_θ) (Eq. 7) over the same anchored sample set as symmetric MIM.

    It has no β: the mixture M_θ does not split into β-weighted terms. ``L_MIM − L_CE = R_MIM ≥ 0``
    (Eq. 10) sample by sample, by Jensen's inequality.
    """

    symmetric: bool = True

    def __call__(self, model: LatentVariableModel, x: Tensor, beta: float = 1.0) -> ObjectiveOutput:
        check_beta(beta)  # unused: CE has no β
        return two_path_loss(model, x, ce_per_sample, symmetric=self.symmetric)
