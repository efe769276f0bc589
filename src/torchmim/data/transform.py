"""The map from a user's raw feature rows to what a model sees, stored with the model.

A model trained on a ``file`` data set with standardisation sees ``(x − shift) / scale`` per
feature; its :class:`DataTransform` (saved in ``model.pt`` by :func:`torchmim.io.save_model`, as
plain lists) lets every later use — the latent tools, ``torchmim latent``, the estimator, the
service — take and give rows in the user's own units: :meth:`DataTransform.forward` before the
encoder, :meth:`DataTransform.inverse` after the decoder. It also remembers the shape of one image
(``image_shape``) when the rows are pictures, so tools can draw them even for a vector model, and
the feature names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError, DataError

__all__ = ["DataTransform"]


@dataclass(frozen=True)
class DataTransform:
    """Raw rows ``x`` ↔ model inputs ``(x − shift) / scale`` (per feature), plus display facts.

    Attributes:
        shift, scale: per-feature offset and scale (``None``: identity, no standardisation).
        image_shape: ``(C, H, W)`` of one row seen as an image (``None``: not images).
        feature_names: the column names of the training file (``None``: unnamed).
    """

    shift: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    image_shape: tuple[int, ...] | None = None
    feature_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # plain Python numbers, so the saved model reads back with torch.load(weights_only=True)
        for name, kind in (("shift", float), ("scale", float), ("image_shape", int),
                           ("feature_names", str)):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(kind(v) for v in value))
        if (self.shift is None) != (self.scale is None):
            raise DataError("a DataTransform needs both shift and scale, or neither")
        if self.scale is not None:
            if len(self.scale) != len(self.shift):
                raise DataError(f"DataTransform: {len(self.shift)} shifts but {len(self.scale)} "
                                "scales")
            if not all(math.isfinite(s) and s > 0 for s in self.scale):
                raise DataError("DataTransform: every scale must be a positive finite number")

    @classmethod
    def standardize(cls, x: np.ndarray | Tensor, *, image_shape: Sequence[int] | None = None,
                    feature_names: Sequence[str] | None = None) -> DataTransform:
        """Mean and standard deviation per feature of ``x`` (N, D) (float64); a feature that is
        constant in ``x`` gets scale 1, so it maps to 0 instead of dividing by zero."""
        a = np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=np.float64)
        a = a.reshape(len(a), -1)
        mean, std = a.mean(0), a.std(0)
        std = np.where(std > 1e-8 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        return cls(tuple(mean.tolist()), tuple(std.tolist()), cls._shape(image_shape),
                   None if feature_names is None else tuple(map(str, feature_names)))

    @staticmethod
    def _shape(shape: Sequence[int] | None) -> tuple[int, ...] | None:
        return None if shape is None else tuple(int(s) for s in shape)

    @property
    def is_identity(self) -> bool:
        """True when the transform does not change values (no standardisation)."""
        return self.shift is None

    def _params(self, like: Tensor) -> tuple[Tensor, Tensor]:
        shift = torch.as_tensor(self.shift, dtype=torch.float64)
        scale = torch.as_tensor(self.scale, dtype=torch.float64)
        return shift.to(like.device, like.dtype), scale.to(like.device, like.dtype)

    def _flat(self, x: Tensor, what: str) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        if self.shift is not None and flat.shape[1] != len(self.shift):
            raise DataError(f"{what} has {flat.shape[1]} features per row but the model was "
                            f"trained on {len(self.shift)}")
        return flat

    def forward(self, x: Tensor) -> Tensor:
        """Raw rows → model inputs, same shape as ``x`` (a float tensor)."""
        if self.shift is None:
            return x
        shift, scale = self._params(x)
        return ((self._flat(x, "x") - shift) / scale).reshape(x.shape)

    def inverse(self, x: Tensor) -> Tensor:
        """Model outputs (e.g. decoder means) → raw units, same shape as ``x``."""
        if self.shift is None:
            return x
        shift, scale = self._params(x)
        return (self._flat(x, "decoded x") * scale + shift).reshape(x.shape)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (readable with ``torch.load(weights_only=True)``)."""
        return {"shift": None if self.shift is None else list(self.shift),
                "scale": None if self.scale is None else list(self.scale),
                "image_shape": None if self.image_shape is None else list(self.image_shape),
                "feature_names": None if self.feature_names is None else list(self.feature_names)}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "saved model") -> DataTransform:
        """Inverse of :meth:`to_dict`; a :class:`CheckpointError` for anything else."""
        if not isinstance(data, dict) or not set(data) <= {"shift", "scale", "image_shape",
                                                          "feature_names"}:
            raise CheckpointError(f"{source}: 'data_transform' is not a torchmim data transform")
        tup = lambda v, f: None if v is None else tuple(f(a) for a in v)  # noqa: E731
        try:
            return cls(tup(data.get("shift"), float), tup(data.get("scale"), float),
                       tup(data.get("image_shape"), int), tup(data.get("feature_names"), str))
        except (DataError, TypeError, ValueError) as e:
            raise CheckpointError(f"{source}: bad 'data_transform' ({e})") from None
