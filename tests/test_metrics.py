"""Evaluation measures against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import torchmim as tm
from torchmim.metrics import (
    active_units,
    importance_sampled_nll,
    knn_accuracy,
    ksg_mutual_information,
    latent_activity,
    posterior_variance,
    reconstruction_error,
    reconstruction_rmse,
)

from .helpers import AffineGaussianHead, exact_log_marginal, linear_gaussian_model


@pytest.mark.parametrize("dim, rho", [(1, 0.0), (1, 0.5), (1, 0.9), (2, 0.0), (2, 0.8), (3, 0.6)])
def test_ksg_matches_gaussian_closed_form(dim, rho):
    """x, z ∈ R^d with corr(x_i, z_i) = ρ: I(x; z) = −(d/2) log(1 − ρ²) nats."""
    rng = np.random.default_rng(dim * 100 + int(rho * 10))
    n = 4000
    x = rng.standard_normal((n, dim))
    z = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, dim))
    exact = -0.5 * dim * math.log(1 - rho**2)
    est = ksg_mutual_information(x, z, k=5)
    assert est == pytest.approx(exact, abs=0.04 + 0.03 * exact)


def test_ksg_underestimates_in_higher_dimensions():
    """KSG's known negative bias grows with dimension (Gao et al. 2016): 4+4 dimensions at N = 4000
    give about 85% of the true 0.575 nats. Compare MI only at equal N, k and dimensions."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4000, 4))
    z = 0.5 * x + math.sqrt(0.75) * rng.standard_normal((4000, 4))
    exact = -2 * math.log(0.75)
    assert 0.75 * exact < ksg_mutual_information(x, z) < exact


def test_ksg_is_invariant_to_argument_order_and_detects_dependence():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 2))
    z = np.tanh(x) + 0.1 * rng.standard_normal((2000, 2))
    assert ksg_mutual_information(x, z) == pytest.approx(ksg_mutual_information(z, x), abs=1e-9)
    assert ksg_mutual_information(x, z) > 2.0


def test_ksg_standardize_removes_the_scale_bias_of_the_max_norm():
    """I(x; z) is invariant to rescaling z, the max-norm KSG estimate is not (x in 8 dims, z in 2
    on a scale 10× smaller: ε is set by x and n_z inflated, the estimate drops to ~0); with
    ``standardize`` the estimate does not depend on the scales and equals the unit-scale one."""
    rng = np.random.default_rng(7)
    n, rho = 4000, 0.9
    x = rng.standard_normal((n, 8))
    z = rho * x[:, :2] + math.sqrt(1 - rho**2) * rng.standard_normal((n, 2))
    unit = ksg_mutual_information(x, z)  # both on unit scale: the usual (dimension-biased) estimate
    assert ksg_mutual_information(x, 0.1 * z) < 0.2 * unit  # the bias the option exists for
    std = ksg_mutual_information(x, 0.1 * z, standardize=True)
    assert std == pytest.approx(ksg_mutual_information(3.0 * x, 50.0 * z, standardize=True), abs=1e-9)
    assert std == pytest.approx(unit, abs=0.05)


def test_ksg_rejects_bad_input():
    x = np.zeros((10, 2))
    with pytest.raises(tm.DataError, match="same number of samples"):
        ksg_mutual_information(x, np.zeros((9, 2)))
    with pytest.raises(tm.DataError, match="NaN"):
        ksg_mutual_information(np.full((10, 1), np.nan), np.zeros((10, 1)))
    with pytest.raises(tm.DataError, match="k must be"):
        ksg_mutual_information(x, x, k=10)


def _linear_setup():
    torch.set_default_dtype(torch.float64)
    W = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]) @ torch.tensor([[0.6, -0.8], [0.8, 0.6]])
    W = torch.linalg.qr(W)[0] * torch.tensor([1.5, 0.7])  # orthogonal columns, unequal norms
    b = torch.tensor([0.5, -1.0, 0.2])
    return W, b, 0.4


def test_is_nll_is_exact_with_the_true_posterior(float64):
    """With q(z|x) = p(z|x) every importance weight equals p(x): the estimate is exact at any S."""
    W, b, sigma = _linear_setup()
    model = linear_gaussian_model(W, b, sigma, exact_posterior=True)
    x = torch.randn(50, 3) * 1.5 + b
    exact = -exact_log_marginal(W, b, sigma, x).mean().item()
    assert importance_sampled_nll(model, x, num_samples=1) == pytest.approx(exact, abs=1e-9)


def test_is_nll_converges_with_an_approximate_posterior(float64):
    W, b, sigma = _linear_setup()
    model = linear_gaussian_model(W, b, sigma, exact_posterior=False)
    x = torch.randn(40, 3) * 1.5 + b
    exact = -exact_log_marginal(W, b, sigma, x).mean().item()
    one = importance_sampled_nll(model, x, num_samples=1)
    many = importance_sampled_nll(model, x, num_samples=4000, max_pairs=10_000)
    assert one > exact  # a single sample is a bound in expectation, clearly loose here
    assert many == pytest.approx(exact, abs=0.01)
    # chunking over samples does not change the estimate beyond Monte Carlo noise
    chunked = importance_sampled_nll(model, x, num_samples=4000, max_pairs=40)
    assert chunked == pytest.approx(many, abs=0.01)


def test_marginal_distribution_log_prob_is_the_is_estimate(float64):
    W, b, sigma = _linear_setup()
    model = linear_gaussian_model(W, b, sigma, exact_posterior=True)
    x = torch.randn(5, 3)
    qx = model.data_distribution()
    assert qx.log_prob(x).detach().numpy() == pytest.approx(exact_log_marginal(W, b, sigma, x).numpy())
    assert qx.sample((4,)).shape == (4, 3)


def test_reconstruction_error_of_an_identity_like_model(float64):
    """A decoder that inverts the encoder mean with tiny variances reconstructs exactly in the mean."""
    W, b, sigma = _linear_setup()
    model = linear_gaussian_model(W, b, sigma)
    x = torch.randn(100, 3)
    err_mean = reconstruction_rmse(model, x)  # default: through the means
    # through the means: x̃ = W A (x − b) + b, the projection of x − b onto span(W), shrunk
    A = model.encoder.network.A.detach()
    x_rec = (x @ A.T + model.encoder.network.b.detach()) @ W.T + b
    assert err_mean == pytest.approx(((x - x_rec) ** 2).mean().sqrt().item())
    assert reconstruction_error(model, x, sample=False) == pytest.approx(
        ((x - x_rec) ** 2).sum(1).sqrt().mean().item())
    assert reconstruction_error(model, x) > err_mean  # sampling adds noise, and √D > 1


def test_knn_accuracy_against_a_hand_example():
    z_train = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    y_train = np.array([0, 0, 0, 1, 1, 1])
    z_test = np.array([[0.05], [5.05], [2.4], [2.7]])
    y_test = np.array([0, 1, 1, 1])
    assert knn_accuracy(z_train, y_train, z_test, y_test, k=3) == pytest.approx(0.75)
    with pytest.raises(tm.DataError, match="differ in length"):
        knn_accuracy(z_train, y_train[:-1], z_test, y_test)


def test_collapse_diagnostics_on_a_collapsed_and_an_active_model():
    model = tm.MLPModelConfig(hidden=4).build()
    with torch.no_grad():  # make the encoder ignore x and output the prior: full collapse
        for p in model.encoder.parameters():
            p.zero_()
    x = torch.randn(500, 2)
    assert posterior_variance(model, x).numpy() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert active_units(model, x) == 0
    with torch.no_grad():  # let z_0's mean depend on x_0
        model.encoder.network[0].weight[0, 0] = 1.0
        model.encoder.network[-1].weight[0, 0] = 3.0
    assert latent_activity(model, x)[0] > 0.01
    assert active_units(model, x) >= 1


def test_metrics_check_their_input():
    model = tm.MLPModelConfig(hidden=4).build()
    with pytest.raises(tm.DataError, match=r"shape \(5, 3\).*expects \(batch, 2\)"):
        importance_sampled_nll(model, torch.randn(5, 3), 10)
    bad = torch.randn(5, 2)
    bad[2, 1] = float("nan")
    with pytest.raises(tm.DataError, match="NaN.*row 2"):
        reconstruction_rmse(model, bad)
    with pytest.raises(tm.DataError, match="NaN.*row 2"):
        reconstruction_error(model, bad)


def test_evaluate_reports_sizes_and_is_deterministic():
    model = tm.MLPModelConfig(hidden=8).build()
    mix = tm.paper_2d_mixture()
    x, y = mix.sample(300, seed=1)
    xt, yt = mix.sample(300, seed=2)
    a = tm.metrics.evaluate(model, x, y, x_train=xt, y_train=yt, nll_samples=20, seed=3)
    b = tm.metrics.evaluate(model, x, y, x_train=xt, y_train=yt, nll_samples=20, seed=3)
    assert a == b
    assert a["n_test"] == 300 and a["ksg_k"] == 5 and a["knn_k"] == 5
    assert set(a) >= {"mi", "nll", "recon_rmse", "recon_error", "recon_mean_rmse", "knn_acc",
                      "posterior_var", "active_units"}
    assert a["recon_rmse"] == a["recon_error"]  # the old key keeps its meaning for old results


@pytest.mark.parametrize(("model_name", "expected"), [("mlp", 1000), ("image-mlp", 5000)])
def test_nll_samples_default_to_the_models_protocol(model_name, expected):
    """S = 1000 for the toy models (Section 6.2), 5000 for image models (Table 1)."""
    torch.manual_seed(0)
    model = tm.build_model(name=model_name)
    shape = (2,) if model_name == "mlp" else (1, 28, 28)
    x = torch.bernoulli(torch.full((3, *shape), 0.5))
    out = tm.metrics.evaluate(model, x, mi=False, nll_points=1)
    assert out["nll_samples"] == expected
    assert tm.metrics.evaluate(model, x, mi=False, nll_points=1, nll_samples=7)["nll_samples"] == 7


def test_run_config_writes_the_models_nll_samples_out():
    assert tm.RunConfig().eval.nll_samples == 1000
    cfg = tm.RunConfig.from_dict({"model": {"name": "convhvae"}, "data": {"name": "mnist"}})
    assert cfg.eval.nll_samples == 5000 and cfg.to_dict()["eval"]["nll_samples"] == 5000


# ------------------------------------------------------------------ reconstruction measures
def _constant_model(x_dim: int, center: torch.Tensor, logvar: float = -80.0):
    """q(z|x) = N(0, e^logvar) whatever x, p(x|z) = N(center, e^logvar): x̃ = center to float64
    precision (σ = e^-40), so the sampled measures equal their hand-computed values."""
    enc = AffineGaussianHead(torch.zeros(1, x_dim), torch.zeros(1), torch.full((1,), logvar))
    dec = AffineGaussianHead(torch.zeros(x_dim, 1), center, torch.full((x_dim,), logvar))
    return tm.LatentVariableModel(tm.ConditionalGaussian(enc, std_floor=0.0),
                                  tm.ConditionalGaussian(dec, std_floor=0.0), tm.StandardNormal(1),
                                  x_shape=(x_dim,), z_shape=(1,))


def test_the_papers_reconstruction_measure_on_a_hand_example(float64):
    """recon_error = mean_i ‖x_i − x̃_i‖ with sampled x̃ (the paper's "RMSE"): x̃ = 0 and
    x = (3, 4), (0, 0), (1, 1) give (5 + 0 + √2) / 3. An RMSE would be √(27/6) = 2.1213; a
    measure through means, or squared, or per coordinate, would fail here."""
    model = _constant_model(2, torch.zeros(2))
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    assert reconstruction_error(model, x) == pytest.approx((5 + math.sqrt(2)) / 3, rel=1e-12)


def test_reconstruction_rmse_is_a_root_mean_square_over_points_and_coordinates(float64):
    """√(mean_{i,d} (x_id − x̃_id)²) of the mean reconstruction x̃ = (1, −1): errors (2, 5), (−1, 1),
    (0, 0) → √((4 + 25 + 1 + 1 + 0 + 0) / 6) = √(31/6). The mean norm would give 2.2670."""
    model = _constant_model(2, torch.tensor([1.0, -1.0]))
    x = [[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]]
    assert reconstruction_rmse(model, x) == pytest.approx(math.sqrt(31 / 6), rel=1e-12)
    with torch.no_grad():  # through samples, x̃ ~ N((1, −1), I) adds a unit variance per coordinate
        model.decoder.network.logvar.zero_()
    many = np.tile(x, (2000, 1))
    assert reconstruction_rmse(model, many) == pytest.approx(math.sqrt(31 / 6), rel=1e-12)
    assert reconstruction_rmse(model, many, sample=True) == pytest.approx(math.sqrt(31 / 6 + 1),
                                                                          rel=0.02)


def test_evaluate_takes_an_eval_config_and_the_splits():
    """evaluate(model, DataSplits, EvalConfig): the test split is measured, train_eval fits the
    k-NN; options override the config; metrics.evaluate and runs.EvalConfig are the same objects."""
    from torchmim import evaluation, runs

    assert tm.metrics.evaluate is evaluation.evaluate and runs.EvalConfig is evaluation.EvalConfig
    data = tm.RunConfig.from_dict({"data": {"name": "gmm2d", "n_train": 200, "n_val": 50,
                                            "n_test": 150}}).data.load(seed=0)
    model = tm.MLPModelConfig(hidden=8).build()
    cfg = evaluation.EvalConfig(nll_samples=5, mi=False, max_points=100, extra_knn_k=[1])
    out = evaluation.evaluate(model, data, cfg, seed=1)
    assert out["n_test"] == 100 and "mi" not in out
    assert out["n_train"] == 200  # the k-NN is fit on all of train_eval (eval.knn_train_points)
    part = evaluation.evaluate(model, data, cfg, seed=1, knn_train_points=50)
    assert part["n_train"] == 50 and part["n_test"] == 100
    assert "knn_acc_k1" in out and out["nll_samples"] == 5
    same = evaluation.evaluate(model, data.test[0], y_test=data.test[1], x_train=data.train_eval[0],
                               y_train=data.train_eval[1], seed=1, nll_samples=5, mi=False,
                               max_points=100, extra_knn_k=[1])
    assert same == out
    with pytest.raises(tm.ConfigError, match="unknown options.*nll_sample"):
        evaluation.evaluate(model, data, nll_sample=5)


def test_eval_threads_are_applied_and_restored(monkeypatch):
    from torchmim import evaluation

    seen = []
    original = evaluation.posterior_variance
    monkeypatch.setattr(evaluation, "posterior_variance",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or original(*a, **k))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        evaluation.evaluate(tm.MLPModelConfig(hidden=4).build(), torch.randn(20, 2), mi=False,
                            nll_samples=2, threads=3)
        assert seen == [3] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_eval_section_keeps_its_keys_through_yaml(tmp_path):
    """EvalConfig moved to torchmim.evaluation; a run config's eval: section has the same keys as
    before (plus threads) and survives a YAML round trip. Fails if a key was renamed or dropped."""
    old_keys = {"max_points", "mi", "ksg_k", "ksg_standardize", "knn_k", "extra_knn_k",
                "nll_samples", "nll_points", "recon_points", "nll_batch_size", "nll_max_pairs",
                "knn_latent"}
    cfg = tm.RunConfig.from_dict({"eval": {"max_points": 123, "extra_knn_k": [1, 3], "threads": 2}})
    assert set(cfg.to_dict()["eval"]) == old_keys | {"threads", "knn_train_points", "mi_rank",
                                                  "consistency", "mi_standardized", "save_points",
                                                  "nll_precision"}
    cfg.save(tmp_path / "c.yaml")
    back = tm.RunConfig.from_file(tmp_path / "c.yaml")
    assert back.eval == cfg.eval and back.eval.max_points == 123 and back.eval.threads == 2
