"""Bad input (issue 13): every kind of wrong value a user can give, in one table each for the
Python API and the command line, and what it must get — torchmim's own exception type with a
one-line message naming the problem, raised before any work — plus the inputs that are
*handled* (an exact value instead of an error), each with the property that shows it.

A row fails if the input is accepted silently (the defect the issue found 12 times), if it raises
a foreign exception from deep inside torch/NumPy/scikit-learn (21 times), if the message loses
its key phrase, or if it runs over several lines.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

import torchmim as tm
from torchmim import metrics
from torchmim.cli import main
from torchmim.config import apply_overrides, load_config_file, save_config_file
from torchmim.data.toy import CustomMixtureConfig, GMM2DConfig
from torchmim.errors import CheckpointError, ConfigError, DataError, StateDictError
from torchmim.evaluation import EvalConfig
from torchmim.runs import RunConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """A tiny model, a batch and a folder with broken files, shared by the table's rows."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("bad")
    (d / "a_file").write_text("not a folder")
    (d / "bad.yaml").write_text("a: [1, 2\nb: 3\n")
    (d / "bad.json").write_text("{a: 1}")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    return SimpleNamespace(model=tm.MLPModelConfig(hidden=4).build(), x=torch.randn(50, 2),
                           dir=d)


def _rng(n, d=2, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


nan = float("nan")

# (id, call(ctx), exception type, fragment of the message)
CASES = [
    # the Trainer's and run()'s arguments of the wrong kind (were AttributeErrors inside fit)
    ("Trainer(model=str)", lambda c: tm.Trainer("model", tm.MIM()), ConfigError,
     "model must be a torchmim LatentVariableModel"),
    ("Trainer(objective=3)", lambda c: tm.Trainer(c.model, 3), ConfigError,
     "objective: expected a name"),
    ("Trainer(config=5)", lambda c: tm.Trainer(c.model, "mim", 5), ConfigError,
     "config must be a TrainerConfig or a dict"),
    ("Trainer(config={epochz})", lambda c: tm.Trainer(c.model, "mim", {"epochz": 1}), ConfigError,
     "train.epochz: unknown key"),
    ("run(config=3)", lambda c: tm.run(3), ConfigError, "config must be a RunConfig or a dict"),
    ("run({bad section})", lambda c: tm.run({"modle": {}}), ConfigError, "modle"),
    # ---- training options, from Python (YAML and -s are in CLI_CASES)
    ("lr=nan", lambda c: tm.TrainerConfig(lr=nan), ConfigError, "train.lr: expected a number"),
    ("lr=inf", lambda c: tm.TrainerConfig(lr=math.inf), ConfigError, "train.lr must be > 0"),
    ("lr=0", lambda c: tm.TrainerConfig(lr=0.0), ConfigError, "train.lr must be > 0"),
    ("epochs='3'", lambda c: tm.TrainerConfig(epochs="3"), ConfigError,
     "train.epochs: expected an integer, got '3'"),
    ("epochs=2.5", lambda c: tm.TrainerConfig(epochs=2.5), ConfigError,
     "train.epochs: expected an integer, got 2.5"),
    ("epochs=0", lambda c: tm.TrainerConfig(epochs=0), ConfigError, "train.epochs must be >= 1"),
    ("batch_size=True", lambda c: tm.TrainerConfig(batch_size=True), ConfigError,
     "train.batch_size: expected an integer"),
    ("warmup=-1", lambda c: tm.TrainerConfig(warmup_epochs=-1), ConfigError,
     "train.warmup_epochs must be >= 0"),
    ("patience=-1", lambda c: tm.TrainerConfig(patience=-1), ConfigError,
     "train.patience must be >= 0 or null"),
    ("grad_clip=-1", lambda c: tm.TrainerConfig(grad_clip=-1.0), ConfigError,
     "train.grad_clip must be > 0 or null"),
    ("max_seconds=inf", lambda c: tm.TrainerConfig(max_seconds=math.inf), ConfigError,
     "train.max_seconds must be > 0 or null"),
    ("num_workers=-1", lambda c: tm.TrainerConfig(num_workers=-1), ConfigError,
     "train.num_workers must be >= 0"),
    ("seed=-1", lambda c: tm.TrainerConfig(seed=-1), ConfigError, "train.seed must be an integer"),
    ("seed=2**32", lambda c: tm.TrainerConfig(seed=2**32), ConfigError, "[0, 2**32)"),
    ("device typo", lambda c: tm.TrainerConfig(device="gpu0"), ConfigError,
     "train.device must be 'cpu', 'cuda'"),
    ("lr_schedule", lambda c: tm.TrainerConfig(lr_schedule="cosine"), ConfigError,
     "train.lr_schedule: 'cosine' is not one of"),
    ("early_stopping='yes'", lambda c: tm.TrainerConfig(early_stopping="yes"), ConfigError,
     "train.early_stopping: expected true/false"),
    # ---- evaluation options (they must fail when the config is read, not after training)
    ("nll_samples=0", lambda c: EvalConfig(nll_samples=0), ConfigError,
     "eval.nll_samples must be >= 1 or null"),
    ("nll_batch_size=0", lambda c: EvalConfig(nll_batch_size=0), ConfigError,
     "eval.nll_batch_size must be >= 1"),
    ("ksg_k=2.5", lambda c: EvalConfig(ksg_k=2.5), ConfigError, "eval.ksg_k: expected an integer"),
    ("max_points='10'", lambda c: EvalConfig(max_points="10"), ConfigError,
     "eval.max_points: expected an integer"),
    ("extra_knn_k=[0]", lambda c: EvalConfig(extra_knn_k=[0]), ConfigError,
     "eval.extra_knn_k[0] must be >= 1"),
    ("ksg_k >= max_points", lambda c: EvalConfig(max_points=5), ConfigError,
     "eval.ksg_k=5 must be below eval.max_points=5"),
    ("knn_k > max_points", lambda c: EvalConfig(mi=False, max_points=3), ConfigError,
     "eval.knn_k=5 must be at most eval.max_points=3"),
    ("knn_latent", lambda c: EvalConfig(knn_latent="both"), ConfigError, "not one of"),
    ("evaluate(unknown option)", lambda c: tm.metrics.evaluate(c.model, c.x, nll_sample=3),
     ConfigError, "unknown options ['nll_sample']"),
    # ---- sections that contradict each other (validation.check_run_config)
    ("data.n_test < ksg_k", lambda c: RunConfig.from_dict({"data": {"n_test": 3}}), ConfigError,
     "eval.ksg_k=5 needs at least 6 test points, but data.n_test=3"),
    ("data.n_test=1", lambda c: RunConfig.from_dict({"data": {"n_test": 1}, "eval": {"mi": False}}),
     ConfigError, "at least 2 test points"),
    ("data.n_train < knn_k", lambda c: RunConfig.from_dict({"data": {"n_train": 3}}), ConfigError,
     "eval.knn_k=5 is more neighbours than the 3 training codes"),
    ("init.epochs=0", lambda c: RunConfig.from_dict({"init": {"epochs": 0}}), ConfigError,
     "init.epochs must be >= 1"),
    ("seed=-1 (run)", lambda c: RunConfig.from_dict({"seed": -1}), ConfigError,
     "train.seed must be an integer in [0, 2**32)"),
    # ---- model configs
    ("x_dim=2.5", lambda c: tm.MLPModelConfig(x_dim=2.5), ConfigError,
     "model.x_dim: expected an integer, got 2.5"),
    ("x_dim='2'", lambda c: tm.MLPModelConfig(x_dim="2"), ConfigError, "model.x_dim: expected"),
    ("z_dim=0", lambda c: tm.MLPModelConfig(z_dim=0), ConfigError, "model.z_dim must be >= 1"),
    ("std_floor=-1", lambda c: tm.MLPModelConfig(std_floor=-1.0), ConfigError,
     "model.std_floor must be >= 0"),
    ("logvar_clamp reversed", lambda c: tm.MLPModelConfig(logvar_clamp=(5.0, -5.0)), ConfigError,
     "model.logvar_clamp must be (low, high)"),
    ("conditional option typo", lambda c: tm.MLPModelConfig(conditional_options={"std_flor": 1}),
     ConfigError, "model.conditional_options: "),
    ("gmm num_components=0", lambda c: tm.MLPModelConfig(
        likelihood="gmm", posterior="gmm", conditional_options={"num_components": 0}),
     ConfigError, "num_components must be a positive integer"),
    ("prior option value", lambda c: tm.MLPModelConfig(prior="gmm",
                                                        prior_options={"num_components": 0}),
     ConfigError, "model.prior_options: prior 'gmm': num_components must be a positive"),
    ("build_model(3)", lambda c: tm.build_model(3), ConfigError,
     "model: expected a ModelConfig, a dict or a name"),
    ("build_model('mpl')", lambda c: tm.build_model("mpl"), ConfigError, "Did you mean 'mlp'"),
    ("image x_shape", lambda c: RunConfig.from_dict({"model": {"name": "image-mlp",
                                                               "x_shape": [1, 28]}}),
     ConfigError, "model.x_shape"),
    # ---- data configs and the toy mixtures
    ("n_train=2.5", lambda c: GMM2DConfig(n_train=2.5), ConfigError,
     "data.n_train: expected an integer"),
    ("n_val=0", lambda c: GMM2DConfig(n_val=0), ConfigError, "data.n_val must be >= 1"),
    ("ragged means", lambda c: CustomMixtureConfig(means=[[0.0], [1.0, 2.0]]), ConfigError,
     "mixture means must be numbers in a regular array"),
    ("NaN means", lambda c: tm.GaussianMixtureData([[nan, 0.0]]), ConfigError,
     "mixture means must be finite"),
    ("std=0", lambda c: tm.GaussianMixtureData([[0.0, 0.0]], std=0.0), ConfigError,
     "standard deviations must be positive"),
    ("weights inf", lambda c: tm.GaussianMixtureData([[0.0], [1.0]], weights=[math.inf, 1]),
     ConfigError, "mixture weights must be finite"),
    ("mixture.sample(-5)", lambda c: tm.paper_2d_mixture().sample(-5), DataError,
     "non-negative integer, got -5"),
    ("mixture.sample(2.5)", lambda c: tm.paper_2d_mixture().sample(2.5), DataError,
     "non-negative integer, got 2.5"),
    ("mixture.sample(seed=-1)", lambda c: tm.paper_2d_mixture().sample(3, seed=-1), DataError,
     "seed must be a non-negative integer"),
    ("pca n_test=0", lambda c: RunConfig.from_dict({"data": {"name": "fashion-mnist-pca",
                                                             "n_test": 0}}),
     ConfigError, "data.n_test must be a positive integer"),
    ("image split_seed=-1", lambda c: RunConfig.from_dict({"data": {"name": "mnist",
                                                                    "binarize_seed": -1}}),
     ConfigError, "data.binarize_seed must be a non-negative integer"),
    ("pca split_seed=-1", lambda c: RunConfig.from_dict({"data": {"name": "fashion-mnist-pca",
                                                                  "split_seed": -1}}),
     ConfigError, "data.split_seed must be a non-negative integer"),
    ("image-mlp z_dim='3'", lambda c: tm.MODELS.get("image-mlp")(z_dim="3"), ConfigError,
     "model.z_dim: expected an integer, got '3'"),
    # ---- priors and distributions
    ("vampprior noise NaN", lambda c: tm.MLPModelConfig(prior="vampprior",
                                                         prior_options={"noise": nan}),
     ConfigError, "pseudo-input noise must be a number >= 0"),
    ("gmm prior K=0", lambda c: tm.GaussianMixture(2, 0), ConfigError, "num_components"),
    ("gmm prior K=2.5", lambda c: tm.GaussianMixture(2, 2.5), ConfigError, "num_components"),
    ("gmm prior stds=-1", lambda c: tm.GaussianMixture(2, 2, stds=-1.0), ConfigError,
     "stds must be positive"),
    ("gmm prior weights 0", lambda c: tm.GaussianMixture(2, 2, weights=[0.0, 0.0]), ConfigError,
     "positive sum"),
    ("gmm prior NaN means", lambda c: tm.GaussianMixture(2, 1, means=[[nan, 0.0]]), ConfigError,
     "means must be finite"),
    ("prior shape=0", lambda c: tm.StandardNormal(0), ConfigError, "shape must be a positive"),
    ("prior shape=2.5", lambda c: tm.StandardNormal(2.5), ConfigError, "shape must be a positive"),
    ("gaussian prior logvar NaN", lambda c: tm.DiagonalGaussian(2, logvar=nan), ConfigError,
     "logvar must be finite"),
    ("mixture sample((-5,))", lambda c: tm.GaussianMixture(2, 3)().sample((-5,)), DataError,
     "sample_shape must be a tuple of non-negative integers"),
    ("mixture rsample(2.5)", lambda c: tm.GaussianMixture(2, 3, learn_weights=False)().rsample(
        2.5), DataError, "sample_shape"),
    # ---- the model's maps
    ("model.sample(-1)", lambda c: c.model.sample(-1), DataError,
     "num_samples must be a non-negative integer, got -1"),
    ("model.sample(2.5)", lambda c: c.model.sample(2.5), DataError, "got 2.5"),
    ("model.sample(True)", lambda c: c.model.sample(True), DataError, "got True"),
    ("encode NaN", lambda c: c.model.encode(torch.full((3, 2), nan)), DataError,
     "x contains NaN or Inf in 3 row(s)"),
    ("encode complex", lambda c: c.model.encode(torch.zeros(3, 2, dtype=torch.complex64)),
     DataError, "floating-point"),
    ("encode wrong width", lambda c: c.model.encode(torch.zeros(3, 5)), DataError,
     "x has shape (3, 5), but the model expects (batch, 2)"),
    ("encode scalar", lambda c: c.model.encode(1.0), DataError, "x has shape ()"),
    ("encode ragged", lambda c: c.model.encode([[1.0, 2.0], [3.0]]), DataError,
     "x is not a numeric array"),
    ("encode batch_size=2.5", lambda c: c.model.encode(c.x, batch_size=2.5), DataError,
     "batch_size must be a positive integer"),
    ("decode NaN", lambda c: c.model.decode(torch.full((3, 2), nan)), DataError,
     "z contains NaN or Inf"),
    ("reconstruct Inf", lambda c: c.model.reconstruct(torch.full((1, 2), math.inf)), DataError,
     "x contains NaN or Inf"),
    ("log_marginal_likelihood NaN", lambda c: c.model.log_marginal_likelihood(
        torch.full((3, 2), nan), 3), DataError, "x contains NaN or Inf"),
    ("log_marginal_likelihood S=0", lambda c: c.model.log_marginal_likelihood(c.x, 0), DataError,
     "num_samples must be a positive integer"),
    ("load_state_dict of another width",
     lambda c: tm.MLPModelConfig(hidden=5).build().load_state_dict(c.model.state_dict()),
     StateDictError, "tensor(s) of another shape: encoder.network.0.weight (saved (4, 2), model"),
    ("load_state_dict empty", lambda c: tm.MLPModelConfig(hidden=4).build().load_state_dict({}),
     StateDictError, "10 missing key(s): encoder.network.0.weight"),
    ("load_state_dict extra key", lambda c: c.model.load_state_dict(
        {**c.model.state_dict(), "extra.weight": torch.zeros(1)}),
     StateDictError, "1 unexpected key(s): extra.weight"),
    ("load_state_dict not a dict", lambda c: c.model.load_state_dict([1, 2]), StateDictError,
     "must be a mapping"),
    # ---- objectives
    ("MIM beta=-1", lambda c: tm.MIM()(c.model, c.x, beta=-1.0), ConfigError,
     "beta must be a finite number >= 0"),
    ("MIM beta=nan", lambda c: tm.MIM()(c.model, c.x, beta=nan), ConfigError, "got nan"),
    ("AMIM beta=inf", lambda c: tm.AMIM()(c.model, c.x, beta=math.inf), ConfigError, "beta"),
    ("VAE beta=-1", lambda c: tm.VAE()(c.model, c.x, beta=-1.0), ConfigError, "beta"),
    ("VAE beta='1'", lambda c: tm.VAE()(c.model, c.x, beta="1"), ConfigError, "beta"),
    ("CE beta=nan", lambda c: tm.CE()(c.model, c.x, beta=nan), ConfigError, "beta"),
    ("AE beta=nan", lambda c: tm.AE()(c.model, c.x, beta=nan), ConfigError, "beta"),
    ("vae_plus_h beta=-1", lambda c: tm.get_objective("vae_plus_h")(c.model, c.x, -1.0),
     ConfigError, "beta"),
    ("mim_minus_h beta=nan", lambda c: tm.get_objective("mim_minus_h")(c.model, c.x, nan),
     ConfigError, "beta"),
    ("MIM option NaN", lambda c: tm.MIM(decoder_path_min_beta=nan), ConfigError,
     "objective.decoder_path_min_beta: expected a number"),
    ("AE option typo", lambda c: tm.AE(reconstruction="l1"), ConfigError,
     "objective.reconstruction: 'l1' is not one of"),
    ("objective unknown key", lambda c: tm.get_objective("mim", beta=1), ConfigError,
     "objective.beta: unknown key"),
    ("get_objective(3)", lambda c: tm.get_objective(3), ConfigError,
     "objective: expected a name, a dict or an Objective"),
    ("objective x wrong shape", lambda c: tm.VAE()(c.model, torch.zeros(3, 5)), DataError,
     "x has shape (3, 5)"),
    # ---- metrics
    ("ksg k=2.5", lambda c: metrics.ksg_mutual_information(_rng(20), _rng(20, seed=1), k=2.5),
     DataError, "k must be an integer, got 2.5"),
    ("ksg k='5'", lambda c: metrics.ksg_mutual_information(_rng(20), _rng(20, seed=1), k="5"),
     DataError, "k must be an integer"),
    ("ksg scalars", lambda c: metrics.ksg_mutual_information(1.0, 2.0), DataError,
     "x must be an array of samples, one per row, got a scalar"),
    ("ksg ragged", lambda c: metrics.ksg_mutual_information([[1.0], [1.0, 2.0]], [[1.0], [2.0]]),
     DataError, "x is not a regular numeric array"),
    ("ksg empty", lambda c: metrics.ksg_mutual_information(np.zeros((0, 2)), np.zeros((0, 2))),
     DataError, "KSG needs paired samples"),
    ("ksg no columns", lambda c: metrics.ksg_mutual_information(np.zeros((9, 0)), _rng(9)),
     DataError, "no coordinates"),
    ("ksg NaN", lambda c: metrics.ksg_mutual_information(np.full((9, 1), nan), _rng(9)),
     DataError, "x contains NaN or Inf"),
    ("knn continuous labels", lambda c: metrics.knn_accuracy(
        _rng(20), _rng(20, 1)[:, 0], _rng(5), np.zeros(5)), DataError,
     "y_train are continuous values"),
    ("knn NaN labels", lambda c: metrics.knn_accuracy(
        _rng(20), np.r_[nan, np.zeros(19)], _rng(5), np.zeros(5)), DataError,
     "y_train contains NaN or Inf"),
    ("knn empty test set", lambda c: metrics.knn_accuracy(
        _rng(20), np.zeros(20), np.zeros((0, 2)), np.zeros(0)), DataError,
     "the test set is empty"),
    ("knn k=2.5", lambda c: metrics.knn_accuracy(_rng(20), np.zeros(20), _rng(5), np.zeros(5),
                                                 k=2.5), DataError, "k must be an integer"),
    ("knn k > n", lambda c: metrics.knn_accuracy(_rng(3), np.zeros(3), _rng(5), np.zeros(5)),
     DataError, "k must be between 1 and the number of training codes 3"),
    ("knn object labels", lambda c: metrics.knn_accuracy(
        _rng(6), np.array([None] * 6, dtype=object), _rng(2), np.zeros(2), k=1), DataError,
     "must be class labels"),
    ("nll S=0", lambda c: metrics.importance_sampled_nll(c.model, c.x, 0), DataError,
     "num_samples must be an integer >= 1"),
    ("nll S=2.5", lambda c: metrics.importance_sampled_nll(c.model, c.x, 2.5), DataError,
     "num_samples"),
    ("nll batch_size=0", lambda c: metrics.importance_sampled_nll(c.model, c.x, 5, batch_size=0),
     DataError, "batch_size must be an integer >= 1"),
    ("nll max_pairs=0", lambda c: metrics.importance_sampled_nll(c.model, c.x, 5, max_pairs=0),
     DataError, "max_pairs"),
    ("nll empty", lambda c: metrics.importance_sampled_nll(c.model, torch.zeros(0, 2), 5),
     DataError, "x is empty"),
    ("nll strings", lambda c: metrics.importance_sampled_nll(c.model, "abc", 5), DataError, "x"),
    ("recon empty", lambda c: metrics.reconstruction_error(c.model, torch.zeros(0, 2)), DataError,
     "x is empty"),
    ("rmse batch_size=0", lambda c: metrics.reconstruction_rmse(c.model, c.x, batch_size=0),
     DataError, "batch_size"),
    ("posterior_variance batch_size=0", lambda c: metrics.posterior_variance(c.model, c.x,
                                                                             batch_size=0),
     DataError, "batch_size"),
    ("active_units 1 point", lambda c: metrics.active_units(c.model, c.x[:1]), DataError,
     "needs at least 2"),
    ("active_units threshold NaN", lambda c: metrics.active_units(c.model, c.x, threshold=nan),
     DataError, "threshold must be a finite number"),
    ("mutual_information max_points=0", lambda c: metrics.mutual_information(
        c.model, c.x, max_points=0), DataError, "max_points must be an integer >= 1"),
    ("embed empty", lambda c: metrics.embed(c.model, torch.zeros(0, 2)), DataError, "x is empty"),
    ("nll seed=-1", lambda c: metrics.importance_sampled_nll(c.model, c.x, 3, seed=-1), DataError,
     "seed must be an integer in [0, 2**64) or None"),
    ("nll seed=1.5", lambda c: metrics.importance_sampled_nll(c.model, c.x, 3, seed=1.5),
     DataError, "got 1.5"),
    ("nll seed=2**70", lambda c: metrics.importance_sampled_nll(c.model, c.x, 3, seed=2**70),
     DataError, "seed must be"),
    ("embed seed='a'", lambda c: metrics.embed(c.model, c.x, seed="a"), DataError, "got 'a'"),
    # ---- config files and overrides
    ("invalid YAML", lambda c: load_config_file(c.dir / "bad.yaml"), ConfigError,
     "not valid YAML: expected ',' or ']', but got ':' at line 2, column 2"),
    ("invalid JSON", lambda c: load_config_file(c.dir / "bad.json"), ConfigError,
     "not valid JSON"),
    ("YAML list", lambda c: load_config_file(c.dir / "list.yaml"), ConfigError,
     "the top level must be a mapping"),
    ("binary file", lambda c: load_config_file(c.dir / "binary.yaml"), ConfigError,
     "not a text file"),
    ("config is a folder", lambda c: load_config_file(c.dir), ConfigError, "is a folder"),
    ("config missing", lambda c: load_config_file(c.dir / "none.yaml"), ConfigError,
     "config file not found"),
    ("save config into a file", lambda c: save_config_file(
        tm.TrainerConfig(), c.dir / "a_file" / "x.yaml"), ConfigError, "a_file is a file"),
    ("override without =", lambda c: apply_overrides({}, ["train.epochs"]), ConfigError,
     "must look like key.subkey=value"),
    ("override into a value", lambda c: apply_overrides({"seed": 1}, ["seed.x=1"]), ConfigError,
     "'seed' is not a section"),
    ("load_model of a folder", lambda c: tm.load_model(c.dir), CheckpointError, "is a folder"),
]


@pytest.mark.parametrize("call, kind, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_one_line_error_of_torchmim(ctx, call, kind, fragment):
    """Fails on a silent acceptance, a foreign exception (TypeError, RuntimeError from torch,
    sklearn's InvalidParameterError...), a message without its key phrase, or several lines."""
    with pytest.raises(kind) as info:
        call(ctx)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message, message
    assert isinstance(info.value, tm.TorchMIMError)


def test_the_table_is_large_and_its_ids_unique():
    """The report counts the rows; duplicated ids would hide a row."""
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 100


# ------------------------------------------------------------------ handled correctly
def test_constant_data_has_zero_mutual_information_not_minus_three_nats():
    """KSG on a constant gave ψ(k) − ψ(N) = −3.09 nats (k 5, N 100); I(x; c) = 0 exactly. Non-
    constant data in the same call is unaffected (the fast path is for constants only)."""
    const, noise = np.zeros((100, 2)), _rng(100)
    assert metrics.ksg_mutual_information(const, const) == 0.0
    assert metrics.ksg_mutual_information(const, noise) == 0.0
    assert metrics.ksg_mutual_information(noise, np.ones((100, 1))) == 0.0
    dependent = metrics.ksg_mutual_information(noise, noise[:, :1] + 0.1 * _rng(100, 1, seed=3))
    assert dependent > 1.0  # strongly dependent pairs: well above 0


def test_integer_valued_float_labels_and_string_labels_are_classes():
    """Labels 0.0/1.0 (a float column read from a file) and strings are classes, not refused."""
    z = np.r_[np.zeros((5, 1)), np.ones((5, 1))]
    y = np.r_[np.zeros(5), np.ones(5)]
    assert metrics.knn_accuracy(z, y, z, y, k=1) == 1.0
    names = np.array(["a"] * 5 + ["b"] * 5)
    assert metrics.knn_accuracy(z, names, z, names, k=1) == 1.0


def test_zero_samples_give_empty_tensors(ctx):
    """0 is a valid count: empty results of the right shape, no error."""
    assert ctx.model.sample(0).shape == (0, 2)
    assert ctx.model.sample(np.int64(3)).shape == (3, 2)  # a NumPy count is a count
    assert ctx.model.encode(torch.zeros(0, 2)).shape == (0, 2)
    assert tm.GaussianMixture(2, 3)().sample((0,)).shape == (0, 2)
    x, y = tm.paper_2d_mixture().sample(0)
    assert x.shape == (0, 2) and y.shape == (0,)


def test_a_state_dict_error_is_still_a_runtime_error(ctx):
    """Code that catches torch's RuntimeError (io.load_model, the trainer's resume) keeps working,
    and now keeps the whole message rather than its first line."""
    other = tm.MLPModelConfig(hidden=5).build()
    with pytest.raises(RuntimeError, match="missing key|another shape"):
        other.load_state_dict(ctx.model.state_dict())
    assert issubclass(StateDictError, CheckpointError)


def test_a_saved_model_of_other_weights_names_the_keys(tmp_path, ctx):
    """load_model used to print only torch's first line ("Error(s) in loading state_dict for
    LatentVariableModel:"), which names nothing."""
    data = {"format": "torchmim.model", "version": 1, "model": tm.to_dict(ctx.model.config),
            "state_dict": {k: v for k, v in ctx.model.state_dict().items()
                           if not k.startswith("decoder")}}
    torch.save(data, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="missing key") as info:
        tm.load_model(tmp_path / "m.pt")
    assert "decoder.network.0.weight" in str(info.value) and "\n" not in str(info.value)


def test_python_configs_are_converted_like_yaml_ones():
    """3.0 for an int is 3 (as from YAML), a NumPy integer a Python int (a sweep script's
    np.arange), a list for a tuple a tuple: converted, not refused."""
    assert type(tm.TrainerConfig(epochs=3.0).epochs) is int
    cfg = tm.TrainerConfig(epochs=np.int64(4), lr=np.float32(0.5))
    assert (cfg.epochs, cfg.lr) == (4, 0.5) and type(cfg.epochs) is int and type(cfg.lr) is float
    assert tm.MLPModelConfig(logvar_clamp=[-5.0, 2.0]).logvar_clamp == (-5.0, 2.0)


def test_epochs_below_the_warm_up_are_a_smoke_run():
    """Documented meaning, not an error: many quick runs (tests, --epochs 1) end in the warm-up;
    they still train every epoch."""
    cfg = tm.TrainerConfig(epochs=2, warmup_epochs=3, progress=False, batch_size=64)
    model = tm.MLPModelConfig(hidden=4).build()
    x, _ = tm.paper_2d_mixture().sample(128, seed=0)
    history = tm.Trainer(model, tm.MIM(), cfg).fit(x)
    assert [round(h["beta"], 2) for h in history] == [0.33, 0.67]


def test_saving_a_config_is_atomic_and_leaves_no_temporary_file(tmp_path):
    """Written through a temporary file renamed into place: nothing else is left in the folder."""
    save_config_file(tm.TrainerConfig(epochs=7), tmp_path / "c.yaml")
    save_config_file(tm.TrainerConfig(epochs=8), tmp_path / "c.yaml")
    assert [p.name for p in tmp_path.iterdir()] == ["c.yaml"]
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["epochs"] == 8


# ------------------------------------------------------------------ the command line
SMALL = ["-s", "data.n_train=200", "-s", "data.n_val=100", "-s", "data.n_test=100",
         "-s", "train.epochs=1", "-s", "eval.nll_samples=5", "-s", "model.hidden=4",
         "--no-progress"]

# (id, arguments ({d}: a folder with a file 'a_file' and broken configs), fragment of the line)
CLI_CASES = [
    ("train lr=nan", ["train", "-s", "train.lr=nan"], "config.train.lr: expected a number"),
    ("train lr=.nan", ["train", "-s", "train.lr=.nan"], "config.train.lr: expected a number"),
    ("train epochs='3'", ["train", "-s", "train.epochs='3'"], "expected an integer, got '3'"),
    ("train epochs=2.5", ["train", "-s", "train.epochs=2.5"], "expected an integer, got 2.5"),
    ("train x_dim=2.5", ["train", "-s", "model.x_dim=2.5"], "config.model.x_dim: expected"),
    ("train nll_samples=0", ["train", "-s", "eval.nll_samples=0"], "eval.nll_samples must be"),
    ("train nll_batch_size=0", ["train", "-s", "eval.nll_batch_size=0"],
     "eval.nll_batch_size must be >= 1"),
    ("train n_test < ksg_k", ["train", "-s", "data.n_test=3"], "eval.ksg_k=5 needs at least 6"),
    ("train seed=-1", ["train", "-s", "seed=-1"], "train.seed must be an integer"),
    ("train x_dim=3 on 2-D data", ["train", "-s", "model.x_dim=3", "--out", "{d}/r"],
     "expects observations of shape (3,)"),
    ("train device", ["train", "-s", "train.device=gpu"], "train.device must be"),
    ("train beta option NaN", ["train", "-s", "objective.decoder_path_min_beta=nan"],
     "decoder_path_min_beta: expected a number"),
    ("train section=value", ["train", "-s", "model=3"], "config.model: expected a mapping"),
    ("train value.sub=", ["train", "-s", "model.hidden.x=3"], "config.model.hidden: expected"),
    ("train -s without =", ["train", "-s", "noequals"], "must look like key.subkey=value"),
    ("train invalid YAML", ["train", "{d}/bad.yaml"], "not valid YAML"),
    ("train YAML list", ["train", "{d}/list.yaml"], "must be a mapping of options"),
    ("train binary config", ["train", "{d}/binary.yaml"], "not a text file"),
    ("train missing data folder", ["train", "-s", "data.name=mnist", "-s",
                                   "data.root={d}/nowhere", "--out", "{d}/r"],
     "mnist: data files not found"),
    ("train --out into a file", ["train", "--out", "{d}/a_file/run"], "a_file is a file"),
    ("evaluate --out into a file", ["evaluate", "{d}/none.pt", "--out", "{d}/a_file/m.json"],
     "a_file is a file"),
    ("evaluate a folder", ["evaluate", "{d}"], "model file not found"),
    ("evaluate garbage", ["evaluate", "{d}/bad.json"], "corrupt or not a torchmim file"),
    ("demo --out into a file", ["demo", "--out", "{d}/a_file/x"], "a_file is a file"),
    ("sweep --out into a file", ["sweep", "fig3", "--out", "{d}/a_file/x"], "a_file is a file"),
    ("sweep unknown", ["sweep", "nonexistent"], "unknown experiment"),
    ("sweep -s lr=nan", ["sweep", "fig3", "-s", "train.lr=nan", "--out", "{d}/r"],
     "config.train.lr: expected a number"),
    ("sweep --grid seed=a", ["sweep", "fig3", "--grid", "seed=a", "--out", "{d}/r"],
     "config.seed: expected an integer, got 'a'"),
    ("sweep bad --grid", ["sweep", "fig3", "--grid", "bad"], "must look like key=v1,v2"),
    ("report --out into a file", ["report", "{d}", "--out", "{d}/a_file/x.html"],
     "a_file is a file"),
    ("config bad value", ["config", "-s", "train.epochs=x"], "expected an integer, got 'x'"),
]


def _invoke(args, d):
    args = [a.replace("{d}", str(d)) for a in args]
    return CliRunner().invoke(main, args)


def _assert_one_line_error(res, fragment):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert fragment in lines[0], res.output


@pytest.mark.parametrize("args, fragment", [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_and_exit_2(ctx, args, fragment):
    """A CLI mistake: exit status 2, one line 'error: ...' naming it, no traceback, and nothing
    trained or written (the run folder, where one is named, holds no file but its lock)."""
    res = _invoke(args, ctx.dir)
    _assert_one_line_error(res, fragment)
    run = ctx.dir / "r"
    assert not run.exists() or [p.name for p in run.iterdir() if p.name != ".lock"] == []


@pytest.mark.parametrize("args", [["demo", "--epochs", "0"], ["demo", "--widths", "0,5"],
                                  ["sweep", "fig3", "--workers", "0"],
                                  ["config", "--format", "xml"], ["train", "--out", "{d}/a_file"]])
def test_cli_usage_errors_are_clicks_one_error_line(ctx, args):
    """Values click itself checks (ranges, choices, a file where a folder is wanted) get click's
    usage message: the usage line, a hint and exactly one 'Error:' line; exit 2, no traceback."""
    res = _invoke(args, ctx.dir)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert len([line for line in res.output.splitlines() if line.startswith("Error:")]) == 1


def _unwritable_folder(tmp_path) -> Path:
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    if sys.platform.startswith("linux") and Path("/sys").is_dir():
        return Path("/sys")  # not writable even by root
    pytest.skip("no folder is unwritable for root here")


def test_cli_out_in_an_unwritable_place_fails_before_training(tmp_path):
    """Used to train the whole run, then fail to save it with a PermissionError traceback."""
    folder = _unwritable_folder(tmp_path)
    res = CliRunner().invoke(main, ["train", "--out", str(folder / "run"), *SMALL])
    _assert_one_line_error(res, "cannot write into")
    assert "epoch" not in res.output


def test_cli_config_errors_surface_before_any_work(tmp_path):
    """eval.nll_samples=0 used to fail only after training, so the trained model was lost; now
    the config is refused when it is read and no run folder is written at all."""
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--out", str(out), *SMALL, "-s", "eval.nll_samples=0"])
    _assert_one_line_error(res, "eval.nll_samples must be >= 1")
    assert not out.exists()


def test_cli_prints_any_torchmim_error_and_os_error_on_one_line(monkeypatch, tmp_path):
    """The safety net of the CLI's error wrapper: a multi-line message (from a plugin, say) is
    joined into one line, and an OS refusal in the middle of a command (disk full, permission)
    is one line with the file, not a traceback."""
    import torchmim.config
    import torchmim.runs

    def multi_line(path):
        raise ConfigError("first line\n  second line")

    monkeypatch.setattr(torchmim.config, "load_config_file", multi_line)
    res = CliRunner().invoke(main, ["train", str(tmp_path / "any.yaml")])
    _assert_one_line_error(res, "first line second line")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "run" / "model.pt"))

    monkeypatch.setattr(torchmim.runs, "run", disk_full)
    res = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "run"), *SMALL])
    _assert_one_line_error(res, "No space left on device: ")
