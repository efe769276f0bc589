"""What the image model configs (``convhvae``, ``pixelhvae``, ``image-mlp``) share.

Their common fields — ``x_shape``, ``prior`` / ``prior_options``, ``latent_anchor`` /
``latent_anchor_options``, ``logvar_clamp``, ``std_floor``, ``likelihood`` — are validated once here (:meth:`ImageConfigMixin._check_image_fields`), the prior
is built once here from the shared registry (:meth:`ImageConfigMixin._build_prior`), and configs
written before the priors were unified are migrated once here
(:meth:`ImageConfigMixin.upgrade_dict`).
The fields themselves stay declared in each config, so that each dataclass lists its options in
the order a reader expects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..distributions.priors import PRIORS, Prior, build_prior, check_prior
from ..errors import ConfigError

__all__ = ["LIKELIHOOD_NAMES", "ImageConfigMixin", "check_x_shape"]

LIKELIHOOD_NAMES = ("bernoulli",)

#: Keys of the image configs before the priors were unified (torchmim 0.1), moved into
#: ``prior_options`` (under the VampPrior's option names) when the prior is the VampPrior.
_LEGACY_VAMPPRIOR_KEYS = {"num_pseudo_inputs": "num_pseudo_inputs", "pseudo_input_noise": "noise"}


def check_x_shape(x_shape: Sequence[int]) -> tuple[int, int, int]:
    """(C, H, W) of positive integers, or a :class:`ConfigError`."""
    shape = tuple(x_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ConfigError(f"model.x_shape must be (channels, height, width) of positive integers, "
                          f"got {list(shape)}")
    return shape  # type: ignore[return-value]


class ImageConfigMixin:
    """Validation, prior and migration shared by the image model configs (see the module docs).

    A mixin of plain methods rather than a dataclass base: the fields stay in each config.
    """

    x_shape: tuple[int, ...]
    prior: str
    prior_options: dict[str, Any]
    latent_anchor: str | None
    latent_anchor_options: dict[str, Any]
    logvar_clamp: tuple[float, float] | None
    std_floor: float
    likelihood: str

    def _check_image_fields(self, prior_shape: int, z_dim: int) -> None:
        """Normalise and validate the shared fields; a bad value is a one-line ConfigError. The
        prior (over vectors of size ``prior_shape``) and the latent anchor (over the whole z, of
        size ``z_dim``) are checked fully — name, option names and values — so that a bad prior
        fails when the config is read."""
        self.x_shape = check_x_shape(self.x_shape)
        if self.logvar_clamp is not None:
            self.logvar_clamp = tuple(self.logvar_clamp)  # type: ignore[assignment]
            if len(self.logvar_clamp) != 2 or self.logvar_clamp[0] > self.logvar_clamp[1]:
                raise ConfigError(f"model.logvar_clamp must be (low, high), got "
                                  f"{self.logvar_clamp}")
        if self.std_floor < 0:
            raise ConfigError(f"model.std_floor must be >= 0, got {self.std_floor}")
        if self.likelihood not in LIKELIHOOD_NAMES:
            raise ConfigError(f"model.likelihood: {self.likelihood!r} is not one of "
                              f"{list(LIKELIHOOD_NAMES)}")
        self.prior = check_prior(self.prior, self.prior_options, where="model.prior",
                                 shape=prior_shape, x_shape=self.x_shape)
        self.prior_options = dict(self.prior_options)
        if self.latent_anchor is not None:
            self.latent_anchor = check_prior(self.latent_anchor, self.latent_anchor_options,
                                             where="model.latent_anchor", shape=z_dim,
                                             x_shape=self.x_shape)
        self.latent_anchor_options = dict(self.latent_anchor_options)

    def _build_anchor(self, z_dim: int) -> Prior | None:
        """The latent anchor P(z) over the whole z (``None``: symmetric MIM samples the prior
        p(z), the paper's set-up). A learned prior that MIM samples on its own decoder path can
        shrink with the encoder (docs/flow.md: a flow prior on the 2D toy); ``normal`` fixes P(z)."""
        if self.latent_anchor is None:
            return None
        return build_prior(self.latent_anchor, z_dim, self.latent_anchor_options,
                           x_shape=self.x_shape, where="model.latent_anchor_options")

    def _build_prior(self, shape: int) -> Prior:
        """The registry's prior over vectors of size ``shape`` (for the two-level models: z2)."""
        return build_prior(self.prior, shape, self.prior_options, x_shape=self.x_shape,
                           where="model.prior_options")

    @classmethod
    def upgrade_dict(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Migrate a config dict of torchmim 0.1 (called by :func:`torchmim.config.from_dict`).

        Those configs had ``prior: standard | vampprior`` and the VampPrior's options as the fields
        ``num_pseudo_inputs`` and ``pseudo_input_noise`` (always written, whatever the prior). With
        the VampPrior they move into ``prior_options`` (as ``num_pseudo_inputs`` and ``noise``);
        with any other prior they are dropped, since that prior never used them. ``standard`` needs
        no change here: it is an alias of ``normal`` in the registry.
        """
        if not any(key in data for key in _LEGACY_VAMPPRIOR_KEYS):
            return data
        data = dict(data)
        legacy = {new: data.pop(old) for old, new in _LEGACY_VAMPPRIOR_KEYS.items() if old in data}
        prior = data.get("prior", getattr(cls, "prior", None))
        if not (isinstance(prior, str) and prior in PRIORS
                and PRIORS.canonical(prior) == "vampprior"):
            return data
        options = data.get("prior_options")
        if options is None:
            options = {}
        if not isinstance(options, Mapping):
            return data  # the strict type check reports it
        options = dict(options)
        for key, value in legacy.items():
            if key in options and options[key] != value:
                old = next(o for o, n in _LEGACY_VAMPPRIOR_KEYS.items() if n == key)
                raise ConfigError(f"model.{old}={value!r} (the old key) disagrees with "
                                  f"model.prior_options.{key}={options[key]!r}; keep only the "
                                  "second")
            options[key] = value
        data["prior_options"] = options
        return data
