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

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from .config import from_dict, to_dict
from .errors import CheckpointError, ConfigError
from .models.configs import ModelConfig
from .models.latent_variable_model import LatentVariableModel

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_KEYS", "atomic_save", "atomic_write_bytes",
           "atomic_write_json", "atomic_write_text", "checkpoint_to_dict", "clean_temporaries",
           "load_model", "model_from_dict", "model_to_dict", "read_checkpoint", "read_json", "safe_load",
           "save_model", "strict_json"]

MODEL_FORMAT = "torchmim.model"
CHECKPOINT_FORMAT = "torchmim.checkpoint"
FORMAT_VERSION = 1

#: The keys every training checkpoint holds besides ``format`` and ``version``: the model
#: (``model_config`` is ``None`` for a hand-assembled model), the optimiser, the best-model state,
#: the early-stopping counters, the history, and the objective and trainer configs it was run with.
CHECKPOINT_KEYS = ("epoch", "model_config", "model_state", "best_state", "optimizer", "best_val",
                   "best_epoch", "bad_epochs", "stopped_early", "history", "objective", "trainer")


#: The names of the temporary files of interrupted atomic writes (``.<name>.<random>.tmp``; also
#: ``.<name>.tmp``, what older versions wrote): :func:`clean_temporaries` removes them.
TEMPORARY_FILE = re.compile(r"^\..+\.tmp$")


_UMASK: int | None = None


def _file_mode() -> int:
    """The mode ``open()`` gives a new file (0o666 less the umask; ``mkstemp`` gives 0o600)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


def _atomic_write(path: str | Path, write: Any, mode: str) -> None:
    """``write(f)`` into a temporary file next to ``path``, fsync, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode, **({"newline": ""} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash mid-write leaves the previous file intact: the rename is atomic on POSIX and Windows.
    """
    _atomic_write(path, lambda f: torch.save(obj, f), "wb")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` atomically (temporary file next to ``path``, fsync, rename): a reader or a
    crash sees the old file or the new one, never a part. Creates missing parent folders."""
    _atomic_write(path, lambda f: f.write(data), "wb")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` atomically (temporary file, fsync, rename): a reader or a crash sees the
    old file or the new one, never a part."""
    _atomic_write(path, lambda f: f.write(text), "w")


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by ``None``, so that it is
    strict JSON (``json.dumps`` would write ``NaN``/``Infinity``, which JSON does not have)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (non-finite floats as ``null``), atomically."""
    atomic_write_text(path, json.dumps(strict_json(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any | None:
    """The JSON in ``path``, or ``None`` when the file is missing, empty or not valid JSON (a file
    cut short by a crash before atomic writes, or written by hand)."""
    try:
        text = Path(path).read_text()
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def clean_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files that atomic writes interrupted by a crash left in ``folder``
    (not below it); returns what was removed. Call it only while holding the folder's lock
    (:class:`~torchmim.locking.FolderLock`): another writer's temporary file is not stale."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if TEMPORARY_FILE.match(p.name) and p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed


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
    out = {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "model": to_dict(model.config),
           "state_dict": model.state_dict()}
    transform = getattr(model, "data_transform", None)  # optional: raw rows <-> model inputs
    if transform is not None:
        out["data_transform"] = transform.to_dict()
    return out


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
    if data.get("data_transform") is not None:
        from .data.transform import DataTransform

        model.data_transform = DataTransform.from_dict(data["data_transform"], source=source)
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
        # optional (not in CHECKPOINT_KEYS): the raw-rows map, so a checkpoint decodes in units too
        "data_transform": (None if getattr(model, "data_transform", None) is None
                           else model.data_transform.to_dict()),
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
                "state_dict": state, "data_transform": data.get("data_transform")}
    return model_from_dict(data, source=str(path))
