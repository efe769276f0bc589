"""KSG on per-coordinate ranks (the empirical copula): a scale-invariant second MI estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import torchmim as tm
from torchmim.errors import ConfigError, DataError
from torchmim.evaluation import EvalConfig, evaluate
from torchmim.metrics import ksg_mutual_information, ksg_rank_mutual_information, mutual_information


def _gaussian(n: int, dim: int, rho: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x, z standard normal per coordinate, coordinate i of z correlated ρ with coordinate i of x:
    I(x; z) = −dim/2 · log(1 − ρ²)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim))
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, dim))


def test_invariant_to_monotone_maps_of_coordinates_exactly():
    # catches: ranks not taken per coordinate (or not at all): the raw KSG changes by 0.4 nats here
    x, z = _gaussian(1000, 2, 0.8, seed=0)
    y = np.column_stack([np.exp(3 * x[:, 0]), x[:, 1] ** 3 + 5])  # strictly increasing per column
    w = z * np.array([100.0, 0.01])
    assert ksg_rank_mutual_information(y, w) == ksg_rank_mutual_information(x, z)
    assert abs(ksg_mutual_information(y, w) - ksg_mutual_information(x, z)) > 0.1


@pytest.mark.parametrize("dim, rho", [(1, 0.8), (2, 0.8), (2, 0.5)])
def test_matches_the_gaussian_closed_form(dim, rho):
    # catches: a transform that changes the dependence between x and z (the copula is kept only
    # by per-column monotone maps)
    x, z = _gaussian(2000, dim, rho, seed=dim)
    true = -dim / 2 * math.log(1 - rho**2)
    assert ksg_rank_mutual_information(x, z) == pytest.approx(true, abs=0.06)
    # ... and stays there when z is 20× smaller, where the raw KSG is biased far low
    assert ksg_rank_mutual_information(x, 0.05 * z) == pytest.approx(true, abs=0.06)
    if dim == 2 and rho == 0.8:
        assert ksg_mutual_information(x, 0.05 * z) < true - 0.5


def test_close_to_the_raw_estimate_on_uniform_coordinates():
    # catches: a transform that breaks the pairing of rows (sorted values instead of ranks give
    # perfectly dependent columns) or distorts the joint law; on uniform margins ranks ≈ values
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(2000, 2))
    z = x + 0.3 * rng.uniform(size=(2000, 2))
    raw, ranked = ksg_mutual_information(x, z), ksg_rank_mutual_information(x, z)
    assert ranked == pytest.approx(raw, abs=0.06)


def test_constants_ties_and_bad_input():
    # catches: NaN or a crash for constants; bad input failing inside scipy instead of a DataError
    x, z = _gaussian(200, 1, 0.8, seed=1)
    assert ksg_rank_mutual_information(np.ones((200, 1)), z) == 0.0
    assert math.isfinite(ksg_rank_mutual_information(np.round(x), z))  # many ties: average ranks
    with pytest.raises(DataError, match="NaN"):
        ksg_rank_mutual_information(np.full((200, 1), np.nan), z)
    with pytest.raises(DataError, match="same number of samples"):
        ksg_rank_mutual_information(x[:100], z)
    with pytest.raises(DataError, match="k must be between"):
        ksg_rank_mutual_information(x, z, k=200)


def test_eval_config_reports_mi_rank_on_the_same_pairs():
    # catches: the option not wired into evaluate, or mi_rank computed on other codes than mi
    torch.manual_seed(0)
    model = tm.MLPModelConfig(hidden=8).build()
    x = torch.randn(300, 2)
    out = evaluate(model, x, EvalConfig(max_points=300, nll_samples=5, mi_rank=True), seed=4)
    z = tm.metrics.embed(model, x, sample=True, seed=4)
    assert out["mi_rank"] == ksg_rank_mutual_information(x, z)
    assert out["mi"] == mutual_information(model, x, seed=4)
    assert "mi_rank" not in evaluate(model, x, EvalConfig(max_points=300, nll_samples=5))
    with pytest.raises(ConfigError, match="eval.mi_rank"):
        EvalConfig(mi_rank="yes")
    with pytest.raises(ConfigError, match="ksg_k=5 must be below"):
        EvalConfig(mi=False, mi_rank=True, max_points=5)


def test_eval_config_reports_standardised_mi_next_to_the_raw_one():
    # catches: mi_standardized not wired, computed on other pairs than mi, or replacing the raw mi
    torch.manual_seed(0)
    model = tm.MLPModelConfig(hidden=8).build()
    x = torch.randn(300, 2) * torch.tensor([30.0, 0.1])  # coordinates on very different scales
    out = evaluate(model, x, EvalConfig(max_points=300, nll_samples=5, mi_standardized=True), seed=4)
    assert out["mi"] == mutual_information(model, x, seed=4)
    assert out["mi_standardized"] == mutual_information(model, x, seed=4, standardize=True)
    assert out["mi_standardized"] != out["mi"]
    assert "mi_standardized" not in evaluate(model, x, EvalConfig(max_points=300, nll_samples=5))
    with pytest.raises(ConfigError, match="ksg_k=5 must be below"):
        EvalConfig(mi=False, mi_standardized=True, max_points=5)
