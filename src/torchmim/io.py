"""Saving and loading: atomic writes, models as registry name + config + ``state_dict``, and the
training checkpoint's format.

A saved model is a dict ``{"format": "torchmim.model", "version": 1, "model": {"name", ...config},
"state_dict": ...}`` read back with ``torch.load(weights_only=True)``: no pickled code, so a saved model
loads in any later version that still knows the architecture's name.

A training checkpoint is a dict ``{"format": "torchmim.checkpoint", "version": 1, ...}`` with the keys
of :data:`CHECKPOINT_KEYS`. This module is the one owner of both layouts: the trainer builds its
checkpoint with :func:`checkpoint_to_dict` and reads it with :func:`read_checkpoint`, and
:func:`load_model` reads the same layout, so a change of format is made (and versioned) here only.
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

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_KEYS", "atomic_save", "checkpoint_to_dict",
           "load_model", "model_from_dict", "model_to_dict", "read_checkpoint", "safe_load",
           "save_model"]

MODEL_FORMAT = "torchmim.model"
CHECKPOINT_FORMAT = "torchmim.checkpoint"
FORMAT_VERSION = 1

#: The keys every training checkpoint holds besides ``format`` and ``version``: the model
#: (``model_config`` is ``None`` for a hand-assembled model), the optimiser, the best-model state,
#: the early-stopping counters, the history, and the objective and trainer configs it was run with.
CHECKPOINT_KEYS = ("epoch", "model_config", "model_state", "best_state", "optimizer", "best_val",
                   "best_epoch", "bad_epochs", "stopped_early", "history", "objective", "trainer")


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
    except Exception as e:  # noqa: BLE001 - torch raises many types for truncated files
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


def checkpoint_to_dict(
    model: LatentVariableModel, *, epoch: int, optimizer: dict[str, Any],
    best_state: dict[str, Any] | None, best_val: float, best_epoch: int | None, bad_epochs: int,
    stopped_early: bool, history: list[dict[str, Any]], objective: dict[str, Any],
    trainer: dict[str, Any],
) -> dict[str, Any]:
    """The training checkpoint of ``model`` and the trainer state given (plain data only, so it
    reads back with ``torch.load(weights_only=True)``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": FORMAT_VERSION,
        "epoch": int(epoch),
        "model_config": None if model.config is None else to_dict(model.config),
        "model_state": model.state_dict(),
        "best_state": best_state,
        "optimizer": optimizer,
        "best_val": best_val,
        "best_epoch": best_epoch,
        "bad_epochs": int(bad_epochs),
        "stopped_early": bool(stopped_early),
        "history": history,
        "objective": objective,
        "trainer": trainer,
    }


def _check_checkpoint(data: Any, source: str) -> dict[str, Any]:
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source} is not a torchmim training checkpoint "
                              f"(no '{CHECKPOINT_FORMAT}' header)")
    if not isinstance(data.get("version"), int) or data["version"] > FORMAT_VERSION:
        raise CheckpointError(f"{source} was written by a newer torchmim "
                              f"(checkpoint format {data.get('version')!r})")
    missing = [k for k in CHECKPOINT_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{source} is an incomplete training checkpoint (missing {missing})")
    return data


def read_checkpoint(path: str | Path, *, map_location: Any = "cpu") -> dict[str, Any]:
    """A training checkpoint written by the trainer, checked: header, version and every key of
    :data:`CHECKPOINT_KEYS`; a one-line :class:`CheckpointError` otherwise."""
    return _check_checkpoint(safe_load(path, what="checkpoint", map_location=map_location), str(path))


def save_model(model: LatentVariableModel, path: str | Path) -> None:
    """Save a model atomically (registry name + config + weights)."""
    atomic_save(model_to_dict(model), path)


def load_model(path: str | Path, *, map_location: Any = "cpu") -> LatentVariableModel:
    """Load a model saved by :func:`save_model` or a training checkpoint (its best weights)."""
    data = safe_load(path, what="model file", map_location=map_location)
    if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
        data = _check_checkpoint(data, str(path))
        if data["model_config"] is None:
            raise CheckpointError(f"{path} holds the weights of a hand-assembled model (no config); "
                                  "rebuild the model and load checkpoint['best_state'] into it")
        state = data["best_state"] if data["best_state"] is not None else data["model_state"]
        data = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "model": data["model_config"],
                "state_dict": state}
    return model_from_dict(data, source=str(path))
