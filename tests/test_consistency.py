"""The consistency measures of Appendix D.2–D.4: an energy distance between samples, and how far a
model's learned priors are from the marginals of its encoder and decoder."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn
from torch.distributions import Normal

import torchmim as tm
from torchmim.errors import DataError
from torchmim.evaluation import EvalConfig, evaluate
from torchmim.experiments import paper
from torchmim.metrics import energy_distance, prior_consistency


def test_energy_distance_equals_scipy_in_one_dimension():
    # catches: a wrong V-statistic (pairs i = j left out, a missing factor 2, no square root)
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 700), rng.standard_t(3, 900) + 0.3
    assert energy_distance(a, b) == pytest.approx(stats.energy_distance(a, b), rel=1e-10)
    assert energy_distance(a, b, block=64) == pytest.approx(energy_distance(a, b), rel=1e-12)


def test_energy_distance_in_several_dimensions_is_the_pairwise_formula():
    # catches: distances taken per coordinate instead of Euclidean, or blocks dropping rows
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(40, 3)) + [1.0, 0.0, -0.5]

    def mean_dist(u, v):
        return np.linalg.norm(u[:, None] - v[None], axis=-1).mean()

    want = math.sqrt(2 * mean_dist(a, b) - mean_dist(a, a) - mean_dist(b, b))
    assert energy_distance(a, b, block=7) == pytest.approx(want, rel=1e-12)
    assert energy_distance(a, b) == pytest.approx(energy_distance(b, a), rel=1e-12)
    assert energy_distance(a, a) == 0.0
    with pytest.raises(DataError, match="same"):
        energy_distance(a, b[:, :2])
    with pytest.raises(DataError, match="NaN"):
        energy_distance(np.full((5, 3), np.nan), b)


class _LinearGaussian(nn.Module):
    """p(z) = N(0, 1), p(x|z) = N(z, s²); q(x) = N(m, 1 + s²) and the exact posterior
    q(z|x) = N(x / (1 + s²), s² / (1 + s²)): consistent when m = 0."""

    def __init__(self, m: float = 0.0, s: float = 0.5) -> None:
        super().__init__()
        self.m, self.s = m, s
        self.dummy = nn.Parameter(torch.zeros(1))

    def data_distribution(self):
        return Normal(torch.tensor([self.m]), torch.tensor([math.sqrt(1 + self.s**2)]))

    def latent_prior(self):
        return Normal(torch.zeros(1), torch.ones(1))

    def decode(self, z, sample=False):
        return z + self.s * torch.randn_like(z) if sample else z

    def encode(self, x, sample=False):
        v = self.s**2 / (1 + self.s**2)
        mean = x / (1 + self.s**2)
        return mean + math.sqrt(v) * torch.randn_like(x) if sample else mean


def test_a_consistent_model_measures_near_zero_and_a_shifted_prior_does_not():
    # catches: the wrong pair of samples compared (e.g. q(x) against the data, or p(z) against
    # the decoded samples), or samples drawn without the seed
    torch.manual_seed(0)
    ok = prior_consistency(_LinearGaussian(0.0), 5000, seed=1)
    assert ok["consistency_x"] < 0.04 and ok["consistency_z"] < 0.04  # sampling noise only
    assert prior_consistency(_LinearGaussian(0.0), 5000, seed=1) == ok
    # q(x) = N(1, 1.25) against the decoder's marginal N(0, 1.25); the encoding of q(x) is then
    # N(0.8, 1) against p(z) = N(0, 1)
    bad = prior_consistency(_LinearGaussian(1.0), 5000, seed=1)
    rng = np.random.default_rng(2)
    sd = math.sqrt(1.25)
    want_x = stats.energy_distance(rng.normal(1, sd, 200_000), rng.normal(0, sd, 200_000))
    want_z = stats.energy_distance(rng.normal(0.8, 1, 200_000), rng.normal(0, 1, 200_000))
    assert bad["consistency_x"] == pytest.approx(want_x, abs=0.04)
    assert bad["consistency_z"] == pytest.approx(want_z, abs=0.04)
    assert bad["consistency_x"] > 10 * ok["consistency_x"]


def test_a_data_prior_that_cannot_be_sampled_is_a_one_line_error():
    class NoSample(_LinearGaussian):
        def data_distribution(self):
            class D:
                def sample(self, shape):
                    raise NotImplementedError("no sampler")
            return D()

    with pytest.raises(DataError, match="cannot be sampled"):
        prior_consistency(NoSample(), 100)


def test_evaluate_reports_consistency_for_the_one_d_models():
    # catches: the option not wired into evaluate, or the 1-D sweeps not asking for it
    base = paper.appendix_d2().base
    assert base["eval"]["consistency"] is True
    cfg = tm.RunConfig.from_dict({"model": base["model"]})
    torch.manual_seed(0)
    model = cfg.model.build()
    x = torch.randn(400, 1)
    out = evaluate(model, x, EvalConfig(max_points=400, nll_samples=5, consistency=True), seed=0)
    want = prior_consistency(model, 400, seed=3)
    assert out["consistency_x"] == want["consistency_x"] and out["consistency_z"] == want["consistency_z"]
    assert "consistency_x" not in evaluate(model, x, EvalConfig(max_points=400, nll_samples=5))


def test_curves_panel_goes_logarithmic_only_for_values_over_many_decades():
    # catches: a diverging run flattening every other curve of a panel to a line at zero (Fig. 12)
    import matplotlib.pyplot as plt

    from torchmim.figures.sweeps import plot_metric_curves

    rows = [{"objective.name": o, "model.hidden": w, "nll_mean": v, "nll_std": v / 2,
             "mi_mean": m, "mi_std": 0.1}
            for o, vals, mis in (("vae_plus_h", [2.0, 1.9], [4.0, 7.0]),
                                 ("mim_minus_h", [3.0, 4e15], [0.002, 1.7]))
            for w, v, m in zip((5, 500), vals, mis)]
    fig = plot_metric_curves(rows, x="model.hidden", group="objective.name", metrics=["nll", "mi"])
    nll_ax, mi_ax = fig.axes[:2]
    assert nll_ax.get_yscale() == "log" and "(log)" in nll_ax.get_title()
    assert mi_ax.get_yscale() == "linear"  # 0.002 … 7: small values stay linear
    plt.close(fig)


def test_a_curves_figure_may_show_metrics_beyond_the_sweeps_summary():
    # catches: the figure aggregating only the spec's metrics (a KeyError for fig5-mi.png's
    # mi_rank panel when the spec lists fewer)
    import matplotlib.pyplot as plt

    from torchmim.experiments.figures import SWEEP_FIGURES
    from torchmim.experiments.spec import SweepSpec

    spec = SweepSpec(name="t", grid={"model.z_dim": [2, 4], "objective.name": ["mim", "vae"],
                                     "seed": [0, 1]}, x="model.z_dim", metrics=["mi"])
    rows = [{"model.z_dim": z, "objective.name": o, "seed": s, "mi": 1.0 + s, "mi_rank": 2.0 + z}
            for z in (2, 4) for o in ("mim", "vae") for s in (0, 1)]
    fig = SWEEP_FIGURES.get("curves")(spec, None, rows, [], metrics=["mi", "mi_rank"])
    rank_ax = fig.axes[1]
    assert "ranks" in rank_ax.get_title()
    assert list(rank_ax.lines[0].get_ydata()) == [4.0, 6.0]
    plt.close(fig)


def test_consistency_of_a_decoder_defined_data_prior_is_refused_up_front():
    # catches: consistency_x silently reported for the marginal q(x) of Eq. 16 (whose samples
    # are decoded samples of p(z): the measure would be pure sampling noise)
    from torchmim.errors import ConfigError

    model = tm.MLPModelConfig(hidden=8).build()  # data prior: the marginal of Eq. 16
    with pytest.raises(DataError, match="learned data prior"):
        prior_consistency(model, 100)
    with pytest.raises(ConfigError, match="eval.consistency needs a learned data prior"):
        evaluate(model, torch.randn(50, 2), EvalConfig(max_points=50, consistency=True))
    with pytest.raises(ConfigError, match="at least 2"):
        EvalConfig(max_points=1, consistency=True, mi=False, knn_k=1)
    with pytest.raises(DataError, match="samples on both sides"):
        energy_distance(np.zeros((0, 2, 2)), np.ones((3, 4)))
