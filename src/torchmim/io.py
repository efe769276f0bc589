"""Saving and loading: atomic writes, models as registry name + config + ``state_dict``.

A saved model is a dict ``{"format": "torchmim.model", "version": 1, "model": {"name", ...config},
"state_dict": ...}`` read back with ``torch.load(weights_only=True)``: no pickled code, so a saved model
loads in any later version that still knows the architecture's name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .config import from_dict, to_dict
from .errors import CheckpointError, ConfigError
from .models.configs import ModelConfig
from .models.latent_variable_model import LatentVariableModel

__all__ = ["atomic_save", "load_model", "model_from_dict", "model_to_dict", "safe_load", "save_model"]

MODEL_FORMAT = "torchmim.model"
CHECKPOINT_FORMAT = "torchmim.checkpoint"
FORMAT_VERSION = 1


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash mid-write leaves the previous file intact: the rename is atomic on POSIX and Windows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def safe_load(path: str | Path, *, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a :class:`CheckpointError` for missing/corrupt files."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{what} path is a folder, not a file: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for truncated / foreign files
        raise CheckpointError(f"{what} {path} is corrupt or not a torchmim file ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no detail'})") from None


def model_to_dict(model: LatentVariableModel) -> dict[str, Any]:
    """Registry name + config + state_dict of a model built by a :class:`ModelConfig`."""
    if model.config is None:
        raise ConfigError(
            "this model was assembled by hand, so it has no config to save by name; build it with "
            "a ModelConfig (e.g. MLPModelConfig(...).build()) or save model.state_dict() yourself"
        )
    return {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "model": to_dict(model.config),
            "state_dict": model.state_dict()}


def model_from_dict(data: Any, *, source: str = "saved model") -> LatentVariableModel:
    """Rebuild a model from :func:`model_to_dict` output."""
    if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{source} is not a torchmim model (no '{MODEL_FORMAT}' header)")
    if data.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{source} was written by a newer torchmim (format {data['version']})")
    config = from_dict(ModelConfig, data["model"], where="model")
    model = config.build()
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as e:
        raise CheckpointError(f"{source}: weights do not match its config: {str(e).splitlines()[0]}") from None
    return model


def save_model(model: LatentVariableModel, path: str | Path) -> None:
    """Save a model atomically (registry name + config + weights)."""
    atomic_save(model_to_dict(model), path)


def load_model(path: str | Path, *, map_location: Any = "cpu") -> LatentVariableModel:
    """Load a model saved by :func:`save_model` or a training checkpoint (its best weights)."""
    data = safe_load(path, what="model file", map_location=map_location)
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        if data.get("model_config") is None:
            raise CheckpointError(f"{path} holds the weights of a hand-assembled model (no config); "
                                  "rebuild the model and load checkpoint['best_state'] into it")
        state = data["best_state"] if data.get("best_state") is not None else data["model_state"]
        data = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "model": data["model_config"],
                "state_dict": state}
    return model_from_dict(data, source=str(path))
