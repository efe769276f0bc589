"""Configs of the two-level image models of the paper (Section 6.3): ``convhvae`` and ``pixelhvae``.

The networks are in :mod:`torchmim.models.hvae_networks` (architecture and sizes described there,
after the VampPrior paper and the spec ``image-architectures.md``). A config chooses the sizes and
the prior: the prior on the top level z2 comes from the shared registry
(:data:`~torchmim.distributions.PRIORS`, ``prior`` + ``prior_options``, as for every model), while
p(z1|z2) is the model's own network. The data prior q(x) is the marginal of Eq. (16) and the latent
anchor P(z) is the prior p(z), as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from torch import nn

from ..distributions.hierarchical import HierarchicalPrior
from ..errors import ConfigError
from ._image import ImageConfigMixin
from .configs import MODELS, ModelConfig
from .hvae_networks import (
    ConvHierarchicalEncoder,
    ConvHVAEDecoder,
    GatedGaussianMLP,
    PixelHVAEDecoder,
)
from .latent_variable_model import LatentVariableModel

__all__ = ["ConvHVAEConfig", "PixelHVAEConfig"]


@dataclass
class _TwoLevelImageConfig(ImageConfigMixin, ModelConfig):
    """Fields shared by convHVAE and PixelHVAE (defaults: the paper / VampPrior set-up; test NLL with
    S = 5000 importance samples, as for the paper's Table 1).

    Attributes:
        x_shape: (C, H, W) of one image; derived sizes (conv feature size, maps) follow from it.
        z1_dim, z2_dim: latent sizes of the two levels (40 + 40: "z ∈ R^80"); z = [z1, z2].
        hidden: width of the gated dense layers (300).
        encoder_channels: widths of the encoders' gated conv stacks (32, 64, and 6 output maps).
        prior: the registry name (:data:`~torchmim.distributions.PRIORS`) of **p(z2), the top
            level** only: ``normal`` (N(0, I), the default; ``standard`` is its old name),
            ``vampprior`` (the paper's VampPrior, through the encoder's q(z2|x)), ``gmm``, ... The
            lower level p(z1|z2) is always the model's own gated network (z2→300→300→z1), so the
            joint prior is p(z) = p(z2) p(z1|z2).
        prior_options: options of that prior, e.g. ``{num_pseudo_inputs: 500, noise: 0.01}`` for
            the VampPrior (its defaults) or ``{num_components: 10}`` for ``gmm``.
        latent_anchor, latent_anchor_options: the anchor P(z) over the whole z = [z1, z2] that
            symmetric MIM samples on its decoder path (a registry name, e.g. ``normal``); ``None``
            (the default, the paper's set-up) samples the prior p(z) itself.
        logvar_clamp: hard clamp of every Gaussian head's log-variance ((−6, 2)).
        std_floor: added to every Gaussian standard deviation (0: the clamp bounds σ ≥ e^−3).
        likelihood: p(x|z): ``"bernoulli"`` (binary images).
        prior_warmup: what MIM's β warm-up does to the prior. ``"top"`` (the default, the image
            reference's MIM code): the loss uses log p(z1|z2) + β · log p(z2) while β < 1, in
            both paths and in the encoder-path log q(x). ``"none"``: β acts through Eq. (18)
            only, which with the marginal q(x) merely rescales the loss (see docs/design.md,
            "What β does"). The VAE ignores it (its β weighs the whole KL term, as in the
            reference).
    """

    default_nll_samples: ClassVar[int] = 5000

    x_shape: tuple[int, ...] = (1, 28, 28)
    z1_dim: int = 40
    z2_dim: int = 40
    hidden: int = 300
    encoder_channels: tuple[int, int, int] = (32, 64, 6)
    prior: str = "normal"
    prior_options: dict[str, Any] = field(default_factory=dict)
    latent_anchor: str | None = None
    latent_anchor_options: dict[str, Any] = field(default_factory=dict)
    logvar_clamp: tuple[float, float] | None = (-6.0, 2.0)
    std_floor: float = 0.0
    likelihood: str = "bernoulli"
    prior_warmup: Literal["top", "none"] = "top"

    def __post_init__(self) -> None:
        super().__post_init__()  # field types (ModelConfig)
        self.encoder_channels = tuple(self.encoder_channels)  # type: ignore[assignment]
        for name in ("z1_dim", "z2_dim", "hidden"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if len(self.encoder_channels) != 3 or min(self.encoder_channels) < 1:
            raise ConfigError(f"model.encoder_channels must be three positive widths, got "
                              f"{list(self.encoder_channels)}")
        self._check_image_fields(prior_shape=self.z2_dim, z_dim=self.z_dim)

    @property
    def z_dim(self) -> int:
        return self.z1_dim + self.z2_dim

    def _decoder(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self) -> LatentVariableModel:
        """Encoder q(z2|x) q(z1|x,z2), decoder p(x|z1,z2), prior p(z2) p(z1|z2), marginal q(x)."""
        gauss = {"logvar_clamp": self.logvar_clamp, "std_floor": self.std_floor}
        # built in this order (encoder, p(z2), p(z1|z2), decoder) so a seed gives the same
        # initial weights as torchmim 0.1
        encoder = ConvHierarchicalEncoder(self.x_shape, self.z1_dim, self.z2_dim, self.hidden,
                                          self.encoder_channels, **gauss)
        top = self._build_prior(self.z2_dim)
        p_z1 = GatedGaussianMLP(self.z2_dim, self.z1_dim, self.hidden, 2, **gauss)
        model = LatentVariableModel(
            encoder=encoder,
            decoder=self._decoder(),
            prior=HierarchicalPrior(top, p_z1, self.z1_dim,
                                    top_warmup=self.prior_warmup == "top"),
            latent_anchor=self._build_anchor(self.z_dim),
            x_shape=self.x_shape,
            z_shape=(self.z_dim,),
        )
        model.config = self
        return model


@MODELS.register("convhvae")
@dataclass
class ConvHVAEConfig(_TwoLevelImageConfig):
    """convHVAE (L = 2) of the paper's Section 6.3 (see the module docs and the spec).

    Attributes (besides the shared ones):
        decoder_channels: width of the decoder's four gated convs (64).
    """

    decoder_channels: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoder_channels < 1:
            raise ConfigError(f"model.decoder_channels must be >= 1, got {self.decoder_channels}")

    def _decoder(self) -> nn.Module:
        return ConvHVAEDecoder(self.x_shape, self.z1_dim, self.z2_dim, self.hidden,
                               self.decoder_channels)


@MODELS.register("pixelhvae")
@dataclass
class PixelHVAEConfig(_TwoLevelImageConfig):
    """PixelHVAE (L = 2) of the paper's Section 6.3 (trained with A-MIM in the paper).

    Attributes (besides the shared ones):
        pixelcnn_channels: width of the masked convs (64).
        pixelcnn_layers: number of masked convs (8: one type A, then type B).
        pixelcnn_kernel_size: their kernel size (3).
        pixelcnn_batch_norm: batch norm after each masked conv (the reference: True).
        unmasked_z: feed the z maps through the unmasked first-layer kernel (the spec's cleaner
            variant) instead of masking them with x (the reference: False).
    """

    pixelcnn_channels: int = 64
    pixelcnn_layers: int = 8
    pixelcnn_kernel_size: int = 3
    pixelcnn_batch_norm: bool = True
    unmasked_z: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pixelcnn_channels < 1 or self.pixelcnn_layers < 1:
            raise ConfigError("model.pixelcnn_channels and model.pixelcnn_layers must be >= 1")
        if self.pixelcnn_kernel_size < 1 or self.pixelcnn_kernel_size % 2 == 0:
            raise ConfigError(f"model.pixelcnn_kernel_size must be odd, got "
                              f"{self.pixelcnn_kernel_size}")

    def _decoder(self) -> nn.Module:
        return PixelHVAEDecoder(self.x_shape, self.z1_dim, self.z2_dim, self.pixelcnn_channels,
                                self.pixelcnn_layers, self.pixelcnn_kernel_size,
                                batch_norm=self.pixelcnn_batch_norm, unmasked_z=self.unmasked_z)
