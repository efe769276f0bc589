"""The marginal data prior q(x) = E_{z∼p(z)}[p(x|z)] of Eq. (16).

It has no parameters of its own: it is defined through the model's decoder and latent prior. During
training the MIM loss needs log q(x) at one sample of each anchored path, and Algorithm 2 estimates it
with the single z that comes with the sample (Section 5.1):

* z from the encoder (x ∼ P(x), z ∼ q(z|x)): importance sampling with q(z|x) as proposal,
  log q(x) ≈ log p(x|z) + log p(z) − log q(z|x);
* z from the anchor (z ∼ P(z), x ∼ p(x|z)): log q(x) ≈ log p(x|z) (line 10, as the image
  reference); with ``decoder_estimate="reencode"``, as the toy reference: the decoder's sample is
  re-encoded, z′ ∼ q(z|x), and log q(x) ≈ log p(x|z′) + log p(z′) − log q(z′|x) (line 5's estimate).

Outside training, ``forward()`` returns :class:`MarginalDistribution`, whose ``log_prob`` is the
importance-sampled estimate with many samples and whose ``sample`` is ancestral.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from .priors import PRIORS, Path, Prior

if TYPE_CHECKING:  # pragma: no cover
    from ..models.latent_variable_model import LatentVariableModel

__all__ = ["MarginalDataPrior", "MarginalDistribution"]


@PRIORS.register("marginal")
class MarginalDataPrior(Prior):
    """q(x) = E_{p(z)}[p(x|z)] (Eq. 16); log-density estimated as in Algorithm 2.

    Args:
        shape: the event shape of x (accepted for a uniform prior signature; the model defines it).
        num_samples: importance samples used by ``forward().log_prob`` (evaluation, not training).
        decoder_estimate: log q(x) on the decoder path: ``"likelihood"`` (Algorithm 2, line 10;
            the default) or ``"reencode"`` (the toy reference; see the module docs).
    """

    needs_model = True

    def __init__(self, shape: object = None, num_samples: int = 100,
                 decoder_estimate: str = "likelihood") -> None:
        super().__init__()
        if decoder_estimate not in ("likelihood", "reencode"):
            raise ValueError(f"decoder_estimate must be 'likelihood' or 'reencode', got "
                             f"{decoder_estimate!r}")
        self.num_samples = int(num_samples)
        self.decoder_estimate = decoder_estimate
        self._owner: list[LatentVariableModel] = []  # a plain list: not registered as a submodule

    def bind(self, model: LatentVariableModel) -> None:
        self._owner[:] = [model]

    @property
    def model(self) -> LatentVariableModel:
        if not self._owner:
            raise RuntimeError("MarginalDataPrior is defined through a model; add it to a "
                               "LatentVariableModel before using it")
        return self._owner[0]

    def forward(self) -> MarginalDistribution:
        return MarginalDistribution(self.model, num_samples=self.num_samples)

    def anchored_log_prob(
        self, x: Tensor, *, path: Path, log_px_z: Tensor, log_pz: Tensor, log_qz_x: Tensor
    ) -> Tensor:
        """Single-sample estimate of log q(x) (Algorithm 2, lines 5 and 10)."""
        if path == "encoder":
            return log_px_z + log_pz - log_qz_x
        if path == "decoder":
            if self.decoder_estimate == "likelihood":
                return log_px_z
            model = self.model  # re-encode the decoder's sample: line 5's estimate at z′ ∼ q(z|x)
            qz_x = model.posterior(x)
            z = qz_x.rsample() if qz_x.has_rsample else qz_x.sample()
            return model.likelihood(z).log_prob(x) + model.prior().log_prob(z) - qz_x.log_prob(z)
        raise ValueError(f"path must be 'encoder' or 'decoder', got {path!r}")


class MarginalDistribution(Distribution):
    """The decoding marginal ∫ p(x|z) p(z) dz of a model, as a ``Distribution``.

    ``log_prob`` is the importance-sampled estimate log (1/S) Σ_s p(x|z_s) p(z_s) / q(z_s|x),
    z_s ∼ q(z|x) (a stochastic lower bound in expectation, tight as S → ∞); ``sample`` is ancestral.
    """

    arg_constraints: dict = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, model: LatentVariableModel, num_samples: int = 100) -> None:
        self.model = model
        self.num_samples = num_samples
        super().__init__(torch.Size(), torch.Size(model.x_shape), validate_args=False)

    def log_prob(self, value: Tensor) -> Tensor:
        return self.model.log_marginal_likelihood(value, num_samples=self.num_samples)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        n = int(torch.Size(sample_shape).numel())
        with torch.no_grad():
            x = self.model.sample(n)
        return x.reshape(torch.Size(sample_shape) + x.shape[1:])
