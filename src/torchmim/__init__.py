"""torchmim: the Mutual Information Machine (Livne, Swersky & Fleet) in PyTorch.

The public API in one place::

    import torchmim as tm
    model = tm.MLPModelConfig(hidden=50).build()
    history = tm.Trainer(model, tm.MIM()).fit(x_train, x_val)
    tm.metrics.ksg_mutual_information(x, model.encode(x, sample=True))
"""

__version__ = "0.1.0"

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
from .errors import CheckpointError, ConfigError, DataError, TorchMIMError, TrainingDivergedError
from .io import load_model, save_model
from .models import MODELS, LatentVariableModel, MLPModelConfig, ModelConfig, build_model
from .networks import MLP
from .objectives import AE, AMIM, CE, MIM, OBJECTIVES, VAE, Objective, get_objective
from .runs import EvalConfig, RunConfig, RunResult, run
from .training import Trainer, TrainerConfig, fit

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
