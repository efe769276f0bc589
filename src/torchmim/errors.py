"""Exceptions raised by torchmim.

Every error the library raises on bad input derives from :class:`TorchMIMError`, so that the CLI
(and users) can catch them and print one clear line instead of a stack trace. The subclasses also
derive from the matching built-in exception (``ValueError``, ``KeyError``, ...) so that generic
``except ValueError`` code keeps working.

This module imports nothing but the standard library's ``__future__``: the CLI imports it at start-up,
and ``torchmim --help`` must not wait for torch.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "FolderLockedError",
    "MissingDependencyError",
    "StateDictError",
    "TorchMIMError",
    "TrainingDivergedError",
]


class TorchMIMError(Exception):
    """Base class of every error raised by torchmim on bad input or failed runs."""


class ConfigError(TorchMIMError, ValueError):
    """A configuration is invalid: an unknown key or registry name, a wrong type or value."""


class DataError(TorchMIMError, ValueError):
    """Data has the wrong shape, dtype or contains NaN/Inf, or a data file is missing or corrupt."""


class CheckpointError(TorchMIMError, OSError):
    """A checkpoint or saved model is missing, truncated, corrupt or of an unknown format."""


class StateDictError(CheckpointError, RuntimeError):
    """Weights do not fit a model: missing or unexpected keys, or tensors of other shapes. Also a
    ``RuntimeError``, what ``torch.nn.Module.load_state_dict`` raises, so code that catches that
    keeps working; the message is one line with the counts and the first names."""


class MissingDependencyError(TorchMIMError, ImportError):
    """An optional package (tensorboard, mlflow) that the configuration asks for is not installed;
    the message names the ``pip install`` command."""


class TrainingDivergedError(TorchMIMError, RuntimeError):
    """Training produced a non-finite loss; the last good checkpoint is left untouched."""


class FolderLockedError(TorchMIMError, RuntimeError):
    """Another live process holds a run or sweep folder's lock (it is writing there); the message
    names the folder and that process (:class:`torchmim.locking.FolderLock`)."""
