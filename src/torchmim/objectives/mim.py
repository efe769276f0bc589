"""The MIM loss (Eq. 9, 15, 18; Algorithms 1 and 2) and its asymmetric variant A-MIM (Section 5.3)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.distributions import Distribution

from ..errors import ConfigError
from ..models.latent_variable_model import JointTerms, LatentVariableModel
from .base import OBJECTIVES, Objective, ObjectiveOutput, check_beta, two_path_loss

__all__ = ["AMIM", "MIM", "check_symmetric", "mim_loss", "mim_per_sample", "warmed_up_prior"]


def warmed_up_prior(pz: Distribution, beta: float) -> Distribution:
    """p(z) as the MIM loss uses it at warm-up weight β.

    A prior distribution may define ``warmed_up(beta)``: the two-level image priors do, giving
    log p(z1|z2) + β · log p(z2) as the image reference (see
    :mod:`torchmim.distributions.hierarchical`); any other p(z) is used as it is, and β then acts
    only through Eq. (18) — which, with the marginal q(x) of Eq. (16), only rescales the loss.
    """
    warm = getattr(pz, "warmed_up", None)
    return pz if warm is None else warm(beta)


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
    Algorithm 2, and L̂ equals its line 13. ``symmetric=False`` drops D_dec (A-MIM); with
    ``symmetric=True`` the model is first checked by :func:`check_symmetric`.

    p(z) enters through :func:`warmed_up_prior` (the top-level warm-up of the two-level models).
    """
    check_beta(beta)
    if symmetric:
        check_symmetric(model)
    pz = warmed_up_prior(model.prior(), beta)
    return two_path_loss(model, x, lambda terms: mim_per_sample(terms, beta), symmetric=symmetric,
                         pz=pz)


def _has_batch_norm_in_training(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
               for m in module.modules())


def check_symmetric(model: LatentVariableModel) -> None:
    """Refuse, with a one-line :class:`~torchmim.errors.ConfigError` raised before any sample is
    drawn, a model whose decoder path symmetric MIM cannot score consistently: a decoder with
    batch norm in training mode (PixelHVAE). Its samples are drawn autoregressively with batch
    norm in eval mode (running statistics) but would be scored in training mode (batch
    statistics), i.e. under another density than the one they were drawn from. The paper trains
    PixelHVAE with A-MIM (Section 5.3); in eval mode (the validation loss) both agree.

    (A latent anchor without a pathwise sample needs no refusal: the decoder path gives it the
    score-function term, see :func:`~torchmim.objectives.base.decoder_path`.)
    """
    if model.training and _has_batch_norm_in_training(model.decoder):
        raise ConfigError("symmetric MIM cannot train a decoder with batch norm (PixelHVAE): its "
                          "samples are drawn in eval mode but scored in training mode; use "
                          "objective amim (the paper's choice) or model.pixelcnn_batch_norm: false")


@OBJECTIVES.register("mim")
@dataclass(frozen=True)
class MIM(Objective):
    """Symmetric MIM (Algorithm 1; Algorithm 2 when q(x) is the marginal of Eq. 16).

    A decoder with batch norm in training mode (PixelHVAE) is refused by
    :func:`check_symmetric`.

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
