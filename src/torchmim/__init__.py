"""torchmim: the Mutual Information Machine (Livne, Swersky & Fleet) in PyTorch.

The public API in one place::

    import torchmim as tm
    model = tm.MLPModelConfig(hidden=50).build()
    history = tm.Trainer(model, tm.MIM()).fit(x_train, x_val)
    tm.metrics.ksg_mutual_information(x, model.encode(x, sample=True))

The names are imported lazily (PEP 562): ``import torchmim`` is instant and imports torch only when a
name that needs it is first used, so that ``torchmim --help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name → the submodule (relative to this package) that defines it
_LAZY: dict[str, str] = {
    "metrics": ".metrics",
    **dict.fromkeys(["from_dict", "load_config_file", "save_config_file", "to_dict"], ".config"),
    **dict.fromkeys(["GaussianMixtureData", "paper_2d_mixture", "paper_20d_mixture"], ".data"),
    **dict.fromkeys(["ConditionalBernoulli", "ConditionalGaussian", "ConditionalGaussianMixture",
                     "DiagonalGaussian", "GaussianMixture", "MarginalDataPrior", "StandardNormal"],
                    ".distributions"),
    **dict.fromkeys(["CheckpointError", "ConfigError", "DataError", "FolderLockedError",
                     "TorchMIMError", "TrainingDivergedError"], ".errors"),
    **dict.fromkeys(["load_model", "save_model"], ".io"),
    **dict.fromkeys(["MODELS", "LatentVariableModel", "MLPModelConfig", "ModelConfig",
                     "build_model"], ".models"),
    "MLP": ".networks",
    **dict.fromkeys(["AE", "AMIM", "CE", "MIM", "OBJECTIVES", "VAE", "Objective", "get_objective"],
                    ".objectives"),
    **dict.fromkeys(["EvalConfig", "RunConfig", "RunResult", "run"], ".runs"),
    **dict.fromkeys(["Trainer", "TrainerConfig", "fit"], ".training"),
}

__all__ = [
    "AE",
    "AMIM",
    "CE",
    "MIM",
    "MLP",
    "MODELS",
    "OBJECTIVES",
    "VAE",
    "CheckpointError",
    "ConditionalBernoulli",
    "ConditionalGaussian",
    "ConditionalGaussianMixture",
    "ConfigError",
    "DataError",
    "DiagonalGaussian",
    "EvalConfig",
    "FolderLockedError",
    "GaussianMixture",
    "GaussianMixtureData",
    "LatentVariableModel",
    "MLPModelConfig",
    "MarginalDataPrior",
    "ModelConfig",
    "Objective",
    "RunConfig",
    "RunResult",
    "StandardNormal",
    "TorchMIMError",
    "Trainer",
    "TrainerConfig",
    "TrainingDivergedError",
    "__version__",
    "build_model",
    "fit",
    "from_dict",
    "get_objective",
    "load_config_file",
    "load_model",
    "metrics",
    "paper_2d_mixture",
    "paper_20d_mixture",
    "run",
    "save_config_file",
    "save_model",
    "to_dict",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from . import metrics
    from .config import from_dict, load_config_file, save_config_file, to_dict
    from .data import GaussianMixtureData, paper_2d_mixture, paper_20d_mixture
    from .distributions import (
        ConditionalBernoulli,
        ConditionalGaussian,
        ConditionalGaussianMixture,
        DiagonalGaussian,
        GaussianMixture,
        MarginalDataPrior,
        StandardNormal,
    )
    from .errors import (
        CheckpointError,
        ConfigError,
        DataError,
        FolderLockedError,
        TorchMIMError,
        TrainingDivergedError,
    )
    from .io import load_model, save_model
    from .models import MODELS, LatentVariableModel, MLPModelConfig, ModelConfig, build_model
    from .networks import MLP
    from .objectives import AE, AMIM, CE, MIM, OBJECTIVES, VAE, Objective, get_objective
    from .runs import EvalConfig, RunConfig, RunResult, run
    from .training import Trainer, TrainerConfig, fit


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule such as ``torchmim.models``) on first use."""
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        value = module if name == "metrics" else getattr(module, name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # cache: later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
