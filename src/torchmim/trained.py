"""A trained model found from what a user points at: a run folder, its ``model.pt`` or a training
``checkpoint.pt`` — with the run's config when there is one, and a plain-data description.

The service (:mod:`torchmim.serving`) and the exporters (:mod:`torchmim.export`) both start here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ConfigError
from .models.latent_variable_model import LatentVariableModel

__all__ = ["TrainedModel", "load_trained", "model_file"]


def model_file(path: str | Path, *, checkpoint_fallback: bool = True) -> Path:
    """The model file of what a user points at: ``path/model.pt`` for a run folder, or ``path``
    itself for a file. A run folder without ``model.pt`` gives its training ``checkpoint.pt``
    when ``checkpoint_fallback`` (its best weights, without the data transform), else is refused.

    The one resolution of every command that takes a run folder or a model file (``serve``,
    ``export``, ``evaluate``, ``latent``); a one-line :class:`CheckpointError` when there is none.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "model.pt").is_file():
            return path / "model.pt"
        if not checkpoint_fallback:
            raise CheckpointError(f"model file not found: {path / 'model.pt'}")
        if (path / "checkpoint.pt").is_file():
            return path / "checkpoint.pt"
        raise CheckpointError(f"{path} is a folder without model.pt or checkpoint.pt; give a run "
                              "folder of `torchmim train` or a model file")
    if not path.exists():
        raise CheckpointError(f"model file not found: {path}")
    return path


@dataclass
class TrainedModel:
    """A loaded model (eval mode), where it came from and its run config (``None`` without one)."""

    model: LatentVariableModel
    source: Path | str
    run_config: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts: architecture and its options, shapes, prior, objective, training and
        data options of the run (when its config.yaml is there), the stored data transform."""
        from . import __version__
        from .config import to_dict

        model = self.model
        cfg = to_dict(model.config) if model.config is not None else None
        run = self.run_config or {}
        tr = getattr(model, "data_transform", None)
        return {
            "source": str(self.source),
            "model": cfg,
            "x_shape": list(model.x_shape),
            "z_shape": list(model.z_shape),
            "prior": None if cfg is None else {"name": cfg.get("prior"),
                                               "options": cfg.get("prior_options", {})},
            "likelihood": type(model.decoder).__name__,
            "num_parameters": model.num_parameters,
            "objective": run.get("objective"),
            "train": run.get("train"),
            "data": run.get("data"),
            "seed": run.get("seed"),
            "data_transform": None if tr is None else tr.to_dict(),
            "torchmim_version": __version__,
        }


def load_trained(path: str | Path, *, map_location: Any = "cpu") -> TrainedModel:
    """Load the model of a run folder, ``model.pt`` or ``checkpoint.pt`` (eval mode), with the
    ``config.yaml`` beside it when present."""
    from .config import load_config_file
    from .io import load_model

    file = model_file(path)
    model = load_model(file, map_location=map_location).eval()
    cfg_path = file.with_name("config.yaml")
    run_config = None
    if cfg_path.is_file():
        try:
            run_config = load_config_file(cfg_path)
        except ConfigError:  # a broken config.yaml does not stop anyone using the model
            run_config = None
    return TrainedModel(model=model, source=file, run_config=run_config)
