"""scikit-learn estimators: MIM and VAE encoders as transformers.

``MIMEncoder`` and ``VAEEncoder`` train the library's fully connected model (:class:`~torchmim.
models.MLPModelConfig`) with the MIM or VAE objective and the library's
:class:`~torchmim.training.Trainer`; they differ only in the objective. ``transform`` gives the
posterior mean E[z|x] (``sample=True``: one draw z ∼ q(z|x)), ``inverse_transform`` the decoder
mean E[x|z], ``sample(n)`` draws x ∼ p(x|z), z ∼ p(z), and ``score(X)`` is the average
log-likelihood per row (an importance-sampled estimate, higher is better, as scikit-learn expects),
so ``GridSearchCV`` can choose hyper-parameters without labels.

>>> import numpy as np
>>> from torchmim.sklearn import MIMEncoder
>>> X = np.random.default_rng(0).normal(size=(200, 4))
>>> enc = MIMEncoder(n_components=2, epochs=5, random_state=0).fit(X)
>>> enc.transform(X).shape, enc.inverse_transform(enc.transform(X)).shape
((200, 2), (200, 4))

By default the inputs are standardised inside the estimator (``standardize="auto"``: on for a
Gaussian likelihood, off for Bernoulli), and the latent size, hidden width and training length
follow the data's size, so ``MIMEncoder()`` works on any 2-D float array.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .errors import ConfigError

__all__ = ["MIMEncoder", "VAEEncoder"]

#: Gradient steps the default training length aims at (``epochs=None``), within the bounds below.
TARGET_STEPS = 3000
MIN_EPOCHS, MAX_EPOCHS = 20, 300
#: Early stopping (on the training loss at β = 1) may not end training before this many steps.
MIN_STEPS = 500
#: Epochs without improvement of the training loss (at β = 1) before early stopping ends training.
PATIENCE = 10

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _sk_validate_data = None


def _validate(est: BaseEstimator, X: Any, *, reset: bool) -> np.ndarray:
    kwargs = dict(dtype=[np.float64, np.float32], ensure_min_samples=1)
    if _sk_validate_data is not None:
        return _sk_validate_data(est, X, reset=reset, **kwargs)
    return est._validate_data(X, reset=reset, **kwargs)  # pragma: no cover - older scikit-learn


@contextlib.contextmanager
def _isolated_rng(device: torch.device) -> Iterator[None]:
    """Run with the global Python, NumPy and torch generators saved and restored: the trainer seeds
    them, and fitting an estimator must not change the caller's random streams."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _seed_from(random_state: Any) -> int:
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


class _LatentVariableEncoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared base of :class:`MIMEncoder` and :class:`VAEEncoder`: subclasses set the objective.

    Parameters:
        n_components: latent size (``None``: ⌈√n_features⌉, at least 2 and at most n_features).
        hidden: width of the hidden layers of encoder and decoder (``None``: 2·n_features within
            [32, 256]).
        depth: number of hidden layers of each network.
        activation: nonlinearity (``tanh``, ``relu``, ``swish``, ...).
        likelihood: p(x|z), ``"gaussian"`` or ``"bernoulli"`` (binary data in [0, 1]).
        prior: the latent prior p(z) by registry name (``normal``, ``gmm``, ``vampprior``, ...).
        prior_options: options of the prior (e.g. ``{"num_components": 10}``).
        epochs: maximum training epochs (``None``: about 3,000 gradient steps, within [20, 300]
            epochs); early stopping on the training loss at β = 1 usually ends sooner.
        batch_size, lr, warmup_epochs, early_stopping: the trainer's options (lr 3e-3 by default,
            faster than the paper's 1e-3 on small data; early stopping waits 10 epochs)
            (:class:`~torchmim.training.TrainerConfig`).
        standardize: standardise each feature before training (the mean and scale are kept in
            ``mean_`` / ``scale_`` and undone by ``inverse_transform`` and ``sample``; ``score``
            stays in the original units). ``"auto"``: on for a Gaussian likelihood, off for
            Bernoulli.
        importance_samples: importance samples per row for ``score``.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        random_state: seed (int), ``RandomState`` or ``None``; an int makes ``fit`` reproducible.
        verbose: show a progress bar while training.

    Attributes:
        model_: the trained :class:`~torchmim.models.LatentVariableModel`; with standardisation
            it carries it as ``model_.data_transform``, so ``torchmim.save_model(est.model_,
            path)`` gives a file that ``torchmim serve``, ``torchmim export`` and the latent tools
            use in the units of ``X``.
        n_components_, n_features_in_, feature_names_in_: sizes and input names.
        mean_, scale_: the standardisation (zeros and ones when off).
        history_: one dict per epoch (losses, β, learning rate).
        n_iter_: epochs trained.
    """

    _objective_name: ClassVar[str] = ""

    def __init__(
        self,
        n_components: int | None = None,
        *,
        hidden: int | None = None,
        depth: int = 1,
        activation: str = "tanh",
        likelihood: str = "gaussian",
        prior: str = "normal",
        prior_options: dict[str, Any] | None = None,
        epochs: int | None = None,
        batch_size: int = 128,
        lr: float = 3e-3,
        warmup_epochs: int = 3,
        early_stopping: bool = True,
        standardize: bool | str = "auto",
        importance_samples: int = 100,
        device: str = "cpu",
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        self.n_components = n_components
        self.hidden = hidden
        self.depth = depth
        self.activation = activation
        self.likelihood = likelihood
        self.prior = prior
        self.prior_options = prior_options
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.warmup_epochs = warmup_epochs
        self.early_stopping = early_stopping
        self.standardize = standardize
        self.importance_samples = importance_samples
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters
    def _check_params(self, n_samples: int, n_features: int) -> dict[str, Any]:
        """Resolve the ``None`` defaults from the data's size; ConfigError (a ValueError) for bad
        values, before any training."""

        def positive_int(name: str, value: Any, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{type(self).__name__}: {name} must be a positive integer"
                                  f"{' or None' if allow_none else ''}, got {value!r}")

        for name in ("n_components", "hidden", "epochs"):
            positive_int(name, getattr(self, name), allow_none=True)
        positive_int("batch_size", self.batch_size)
        positive_int("importance_samples", self.importance_samples)
        if isinstance(self.depth, bool) or not isinstance(self.depth, (int, np.integer)) \
                or self.depth < 0:
            raise ConfigError(f"{type(self).__name__}: depth must be an integer >= 0, "
                              f"got {self.depth!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ConfigError(f"{type(self).__name__}: lr must be positive, got {self.lr!r}")
        if self.likelihood not in ("gaussian", "bernoulli"):
            raise ConfigError(f"{type(self).__name__}: likelihood must be 'gaussian' or "
                              f"'bernoulli', got {self.likelihood!r}")
        if self.standardize not in ("auto", True, False):
            raise ConfigError(f"{type(self).__name__}: standardize must be True, False or 'auto', "
                              f"got {self.standardize!r}")
        if self.standardize is True and self.likelihood == "bernoulli":
            raise ConfigError(f"{type(self).__name__}: standardize=True does not fit a Bernoulli "
                              "likelihood (binary data in [0, 1]); use standardize='auto'")
        if self.prior_options is not None and not isinstance(self.prior_options, dict):
            raise ConfigError(f"{type(self).__name__}: prior_options must be a dict or None, "
                              f"got {type(self.prior_options).__name__}")
        n_components = self.n_components or min(n_features,
                                                 max(2, math.ceil(math.sqrt(n_features))))
        hidden = self.hidden or min(256, max(32, 2 * n_features))
        batches = math.ceil(n_samples / self.batch_size)
        epochs = self.epochs or int(np.clip(math.ceil(TARGET_STEPS / batches), MIN_EPOCHS,
                                            MAX_EPOCHS))
        return {"n_components": int(n_components), "hidden": int(hidden), "epochs": int(epochs)}

    def _objective(self):
        from .objectives import get_objective

        return get_objective(self._objective_name)

    @property
    def _standardizes(self) -> bool:
        return self.standardize is True or (self.standardize == "auto"
                                             and self.likelihood == "gaussian")

    # ------------------------------------------------------------------ fit
    def fit(self, X: Any, y: Any = None) -> _LatentVariableEncoder:
        """Train the model on the rows of ``X`` (``y`` is ignored)."""
        from .data.transform import DataTransform
        from .models.mlp import MLPModelConfig
        from .seeding import derive_seed, seed_everything
        from .training.trainer import Trainer, TrainerConfig, resolve_device

        X = _validate(self, X, reset=True)
        n_samples, n_features = X.shape
        sizes = self._check_params(n_samples, n_features)
        if self.likelihood == "bernoulli" and (X.min() < 0 or X.max() > 1):
            raise ValueError(f"{type(self).__name__}: a Bernoulli likelihood needs X in [0, 1], "
                             f"got values in [{X.min():.3g}, {X.max():.3g}]")
        if self._standardizes:
            self.mean_ = X.mean(axis=0).astype(np.float64)
            scale = X.std(axis=0).astype(np.float64)
            self.scale_ = np.where(scale > 1e-12 * np.maximum(1.0, np.abs(self.mean_)), scale, 1.0)
        else:
            self.mean_, self.scale_ = np.zeros(n_features), np.ones(n_features)
        device = resolve_device(self.device)
        seed = _seed_from(self.random_state)
        config = MLPModelConfig(
            x_dim=n_features, z_dim=sizes["n_components"], hidden=sizes["hidden"],
            depth=int(self.depth), activation=self.activation, likelihood=self.likelihood,
            prior=self.prior, prior_options=dict(self.prior_options or {}),
        )
        train = TrainerConfig(
            epochs=sizes["epochs"], batch_size=int(self.batch_size),
            lr=float(self.lr), warmup_epochs=int(self.warmup_epochs),
            early_stopping=bool(self.early_stopping), seed=seed, device=str(device),
            progress=bool(self.verbose), min_steps=MIN_STEPS, patience=PATIENCE,
        )
        xt = torch.tensor(self._scale(X), dtype=torch.float32)  # a copy: read-only input is fine
        with _isolated_rng(device):
            seed_everything(derive_seed(seed, "init"))
            model = config.build()
            trainer = Trainer(model, self._objective(), train)
            self.history_ = trainer.fit(xt)
        self.model_ = trainer.model.eval()
        if self._standardizes:  # saved with the model: the service and tools take raw rows
            self.model_.data_transform = DataTransform(tuple(self.mean_.tolist()),
                                                       tuple(self.scale_.tolist()))
        self.n_components_ = sizes["n_components"]
        self.n_iter_ = trainer.epoch
        return self

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    def _scale(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_

    def _check_z(self, Z: Any) -> np.ndarray:
        from sklearn.utils import check_array

        Z = check_array(Z, dtype=[np.float64, np.float32], input_name="Z")
        if Z.shape[1] != self.n_components_:
            raise ValueError(f"Z has {Z.shape[1]} features, but {type(self).__name__} has "
                             f"{self.n_components_} latent dimensions")
        return Z

    @contextlib.contextmanager
    def _seeded(self, random_state: Any) -> Iterator[None]:
        """Draws seeded by ``random_state`` (the caller's RNG streams untouched); ``None``: the
        global torch generator, as torch itself would."""
        if random_state is None:
            yield
            return
        with _isolated_rng(next(self.model_.parameters()).device):
            torch.manual_seed(_seed_from(random_state))
            yield

    # ------------------------------------------------------------------ maps
    def transform(self, X: Any, *, sample: bool = False, random_state: Any = None) -> np.ndarray:
        """Posterior means E[z|x] of the rows of ``X``, shape (n_samples, n_components_);
        ``sample=True`` draws z ∼ q(z|x) instead (``random_state`` seeds the draw)."""
        check_is_fitted(self, "model_")
        X = _validate(self, X, reset=False)
        xt = torch.tensor(self._scale(X), dtype=torch.float32)
        with self._seeded(random_state):
            z = self.model_.encode(xt, sample=sample)
        return z.cpu().numpy().astype(np.float64)

    def inverse_transform(self, Z: Any) -> np.ndarray:
        """Decoder means E[x|z] of latent codes ``Z`` (n_samples, n_components_), in the units of
        the training data."""
        check_is_fitted(self, "model_")
        zt = torch.tensor(self._check_z(Z), dtype=torch.float32)
        x = self.model_.decode(zt).cpu().numpy().astype(np.float64)
        return x * self.scale_ + self.mean_

    def sample(self, n_samples: int = 1, *, mean: bool = False, random_state: Any = None
               ) -> np.ndarray:
        """``n_samples`` new rows: z ∼ p(z), then x ∼ p(x|z) (``mean=True``: E[x|z])."""
        check_is_fitted(self, "model_")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) \
                or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        with self._seeded(random_state):
            x = self.model_.sample(int(n_samples), mean=mean)
        return x.cpu().numpy().astype(np.float64) * self.scale_ + self.mean_

    def score(self, X: Any, y: Any = None) -> float:
        """Average log-likelihood per row, log p(x), in nats (higher is better): the
        importance-sampled estimate with ``importance_samples`` samples per row and a fixed seed, in
        the units of ``X`` (the standardisation's log-Jacobian is included)."""
        from .metrics import importance_sampled_nll

        check_is_fitted(self, "model_")
        X = _validate(self, X, reset=False)
        xt = torch.tensor(self._scale(X), dtype=torch.float32)
        nll = importance_sampled_nll(self.model_, xt, num_samples=int(self.importance_samples), seed=0)
        return float(-nll - np.log(self.scale_).sum())

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        """Pickle the model as registry name + config + weights (no pickled torch modules)."""
        from .io import model_to_dict

        state = super().__getstate__()
        if "model_" in state:
            state = dict(state)
            saved = model_to_dict(state["model_"])
            saved["state_dict"] = {k: v.detach().cpu() for k, v in saved["state_dict"].items()}
            state["model_"] = saved
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from .io import model_from_dict

        if isinstance(state.get("model_"), dict):
            state = dict(state)
            state["model_"] = model_from_dict(state["model_"], source="pickled estimator").eval()
        super().__setstate__(state)


class MIMEncoder(_LatentVariableEncoder):
    """A MIM-trained encoder/decoder as a scikit-learn transformer (see the module docstring
    and :class:`_LatentVariableEncoder` for the parameters)."""

    _objective_name = "mim"


class VAEEncoder(_LatentVariableEncoder):
    """The same model trained as a VAE (the negative ELBO); parameters as :class:`MIMEncoder`."""

    _objective_name = "vae"
