"""The baselines MIM is compared with: the VAE (Eq. 1) and a deterministic auto-encoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ..models.latent_variable_model import JointTerms, LatentVariableModel
from .base import OBJECTIVES, Objective, ObjectiveOutput, check_beta, encoder_path, path_loss

__all__ = ["AE", "VAE"]


@OBJECTIVES.register("vae")
@dataclass(frozen=True)
class VAE(Objective):
    """Negative ELBO (Eq. 1) with the KL weight β warmed up (Eq. 18, following [1]):

        L = −mean_{x ∼ P(x), z ∼ q(z|x)} [ log p(x|z) + β (log p(z) − log q(z|x)) ].

    The KL term is the single-sample Monte Carlo estimate of Eq. (1), valid for any prior (mixtures,
    VampPrior), and uses the same model as MIM, so the two differ only in the objective.
    """

    uses_beta = True

    def __call__(self, model: LatentVariableModel, x: Tensor, beta: float = 1.0) -> ObjectiveOutput:
        check_beta(beta)
        terms, score = encoder_path(model, x, data_prior=False)
        per_sample = -(terms.log_px_z + beta * (terms.log_pz - terms.log_qz_x))
        return ObjectiveOutput(loss=path_loss(per_sample, score), terms={"encoder": terms})


@OBJECTIVES.register("ae")
@dataclass(frozen=True)
class AE(Objective):
    """Deterministic auto-encoder: z = E[z|x] (the encoder mean), no prior, no sampling.

    Attributes:
        reconstruction: ``"nll"`` minimises −log p(x|z) under the model's decoder (its variance is
            learned); ``"mse"`` minimises ‖x − E[x|z]‖² summed over dimensions.
    """

    reconstruction: Literal["nll", "mse"] = "nll"

    def __call__(self, model: LatentVariableModel, x: Tensor, beta: float = 1.0) -> ObjectiveOutput:
        check_beta(beta)  # unused: AE has no β, but a NaN is still a caller's mistake
        z = model.posterior(x).mean
        px_z = model.likelihood(z)
        log_px_z = px_z.log_prob(x)
        if self.reconstruction == "mse":
            per_sample = (px_z.mean - x).pow(2).flatten(1).sum(1)
        else:
            per_sample = -log_px_z
        return ObjectiveOutput(loss=per_sample.mean(), terms={"encoder": JointTerms(log_px_z=log_px_z)})
