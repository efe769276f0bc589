"""The scikit-learn estimators MIMEncoder / VAEEncoder: scikit-learn's own estimator checks, a
Pipeline and GridSearchCV, clone and pickle, and the properties of transform / score / sample."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from torchmim.errors import ConfigError
from torchmim.sklearn import MIMEncoder, VAEEncoder

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(epochs=2, hidden=8, random_state=0)


def manifold(n: int = 300, d: int = 5, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """Points near a 2-D linear subspace of R^d, in units far from 1 (scale 100, offset 50)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 2))
    a = rng.normal(size=(2, d))
    return 100.0 * (z @ a + noise * rng.normal(size=(n, d))) + 50.0


# scikit-learn's checks (input validation, n_features_in_, fit idempotence, pickling, subset and
# order invariance of transform, set_output, ...). Breaks if the estimator stops following the
# scikit-learn conventions. check_array_api_input skips itself (SCIPY_ARRAY_API unset): torch
# models take NumPy input only.
@parametrize_with_checks([MIMEncoder(**TINY), VAEEncoder(**TINY)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_defaults_work_on_any_float_array():
    """No arguments: sizes from the data; catches a default that does not fit small or 1-feature
    data."""
    X = np.random.default_rng(0).normal(size=(60, 9)) * 1e3
    enc = MIMEncoder(random_state=0).fit(X)
    assert enc.n_components_ == 3 and enc.transform(X).shape == (60, 3)
    assert enc.model_.config.hidden == 32 and 20 <= enc.n_iter_ <= 300
    one = VAEEncoder(random_state=0).fit(X[:, :1])
    assert one.n_components_ == 1 and np.isfinite(one.score(X[:, :1]))


def test_objective_is_the_only_difference():
    """MIM and VAE share every parameter; only the trained objective differs (a VAEEncoder that
    trained MIM would give the same weights)."""
    assert MIMEncoder().get_params() == VAEEncoder().get_params()
    X = manifold(100)
    a, b = MIMEncoder(**TINY).fit(X), VAEEncoder(**TINY).fit(X)
    assert a.history_[0]["train_loss"] != b.history_[0]["train_loss"]


def test_reconstruction_through_the_latent_space():
    """transform → inverse_transform recovers points of a 2-D manifold in 5-D much better than
    their mean (R² > 0.9), in the original units: catches a standardisation not undone."""
    X = manifold(400)
    enc = MIMEncoder(n_components=2, hidden=32, epochs=60, lr=1e-2, random_state=0).fit(X)
    rec = enc.inverse_transform(enc.transform(X))
    r2 = 1 - ((rec - X) ** 2).sum() / ((X - X.mean(0)) ** 2).sum()
    assert r2 > 0.9, r2


def test_score_is_a_log_likelihood_in_the_data_units():
    """Scaling X by 4 (exact in floating point) gives the same standardised data, hence the same
    model, and log p(4x) = log p(x) − d·log 4: catches a missing or wrong log-Jacobian."""
    X = manifold(100)
    a = MIMEncoder(**TINY).fit(X)
    b = MIMEncoder(**TINY).fit(4 * X)
    np.testing.assert_array_equal(a.transform(X), b.transform(4 * X))
    assert b.score(4 * X) == pytest.approx(a.score(X) - X.shape[1] * np.log(4), abs=1e-6)


def test_score_rises_with_training_and_gridsearch_picks_it():
    """GridSearchCV with the estimator's own score (no labels) prefers the trained model over one
    trained for one epoch: catches a score whose sign is wrong (an NLL, lower is better)."""
    X = manifold(300)
    search = GridSearchCV(MIMEncoder(n_components=2, hidden=16, lr=1e-2, random_state=0),
                          {"epochs": [1, 60]}, cv=2).fit(X)
    assert search.best_params_ == {"epochs": 60}
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores)) and scores[1] > scores[0] + 1.0


def test_pipeline_with_scaler_and_knn():
    """StandardScaler → MIMEncoder → 5-NN on scikit-learn's bundled digits; the codes carry the
    class (accuracy far above the 10% of chance), and GridSearchCV tunes the encoder inside."""
    X, y = load_digits(return_X_y=True)
    X, y = X[:600], y[:600]
    pipe = make_pipeline(StandardScaler(), MIMEncoder(hidden=64, epochs=15, random_state=0),
                         KNeighborsClassifier(5))
    search = GridSearchCV(pipe, {"mimencoder__n_components": [2, 8]}, cv=2).fit(X, y)
    assert search.best_params_ == {"mimencoder__n_components": 8}
    assert search.best_score_ > 0.6, search.best_score_


def test_clone_and_pickle_round_trip():
    """clone keeps the parameters and drops the fit; a pickled fitted estimator gives identical
    transforms, decodes and seeded samples (the model travels as config + weights)."""
    X = manifold(100)
    enc = VAEEncoder(n_components=2, prior="gmm", prior_options={"num_components": 3},
                     **TINY).fit(X)
    fresh = clone(enc)
    assert fresh.get_params() == enc.get_params() and not hasattr(fresh, "model_")
    blob = pickle.dumps(enc)
    assert b"torchmim.models" not in blob  # no pickled module classes, only data
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.transform(X), enc.transform(X))
    Z = enc.transform(X[:5])
    np.testing.assert_array_equal(back.inverse_transform(Z), enc.inverse_transform(Z))
    np.testing.assert_array_equal(back.sample(4, random_state=1), enc.sample(4, random_state=1))
    assert back.score(X) == enc.score(X)


def test_saved_model_carries_the_standardisation(tmp_path):
    """The estimator's model saved with torchmim.save_model takes raw rows elsewhere (latent
    tools, service, export): its codes equal transform(X). Catches a standardisation that lives
    only in the estimator."""
    from torchmim import latent
    from torchmim.io import load_model, save_model

    X = manifold(60)
    enc = MIMEncoder(n_components=2, **TINY).fit(X)
    save_model(enc.model_, tmp_path / "model.pt")
    z = latent.encode(load_model(tmp_path / "model.pt"), X).numpy()
    np.testing.assert_allclose(z, enc.transform(X), rtol=1e-5, atol=1e-6)


def test_sampling_and_seeds():
    """transform(sample=True) draws around the mean and is reproducible under random_state;
    fitting does not move the caller's global random streams."""
    X = manifold(100)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    before = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    enc = MIMEncoder(**TINY).fit(X)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == before
    z1 = enc.transform(X, sample=True, random_state=3)
    z2 = enc.transform(X, sample=True, random_state=3)
    np.testing.assert_array_equal(z1, z2)
    assert not np.array_equal(z1, enc.transform(X))
    xs = enc.sample(7, random_state=0)
    assert xs.shape == (7, X.shape[1]) and np.isfinite(xs).all()
    assert enc.get_feature_names_out().tolist() == [f"mimencoder{i}" for i in range(3)]


def test_bernoulli_likelihood_on_binary_data():
    """likelihood='bernoulli' trains on {0, 1} data without standardising; decodes are
    probabilities; data outside [0, 1] is refused before training."""
    X = (np.random.default_rng(0).random((80, 6)) > 0.5).astype(float)
    enc = MIMEncoder(likelihood="bernoulli", **TINY).fit(X)
    assert np.all(enc.scale_ == 1) and np.all(enc.mean_ == 0)
    p = enc.inverse_transform(enc.transform(X))
    assert p.min() >= 0 and p.max() <= 1
    with pytest.raises(ValueError, match=r"needs X in \[0, 1\]"):
        MIMEncoder(likelihood="bernoulli").fit(X * 2)


@pytest.mark.parametrize("params, match", [
    ({"n_components": 0}, "n_components must be a positive integer"),
    ({"epochs": 1.5}, "epochs must be a positive integer"),
    ({"lr": -1}, "lr must be positive"),
    ({"likelihood": "poisson"}, "likelihood must be"),
    ({"standardize": "yes"}, "standardize must be"),
    ({"prior": "nope"}, "prior"),
])
def test_bad_parameters_are_one_line_errors(params, match):
    """Bad constructor values fail in fit, as ValueError subclasses of the library's ConfigError,
    before training."""
    with pytest.raises(ConfigError, match=match):
        MIMEncoder(**params).fit(np.zeros((10, 3)))


def test_latent_input_is_checked():
    """inverse_transform refuses codes of the wrong width with a one-line ValueError."""
    enc = MIMEncoder(n_components=2, **{k: v for k, v in TINY.items()}).fit(manifold(50))
    with pytest.raises(ValueError, match="Z has 3 features"):
        enc.inverse_transform(np.zeros((2, 3)))
