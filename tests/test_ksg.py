"""The two KSG implementations (issue 11): brute force equals the KD-tree reference exactly, the
auto rule picks where docs/benchmarks.md says, and input validation is unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torchmim.errors import DataError
from torchmim.metrics import _ksg_counts_brute, _ksg_counts_kdtree, ksg_method
from torchmim.metrics import ksg_mutual_information as ksg


def _pairs(n: int, d_x: int, d_z: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_x))
    z = 0.8 * x[:, :1] + 0.6 * rng.standard_normal((n, d_z))  # dependent, so counts vary
    return x, z


@pytest.mark.parametrize("n", [50, 500, 3000])
@pytest.mark.parametrize("d_x, d_z", [(2, 2), (5, 3), (20, 20)])
def test_brute_force_equals_the_kdtree_reference_exactly(n, d_x, d_z):
    """Same ε_i and counts, hence the same float, not merely a close one."""
    x, z = _pairs(n, d_x, d_z, seed=n + 10 * d_x + d_z)
    n_x, n_z = _ksg_counts_brute(x, z, 5, 2)
    ref_x, ref_z = _ksg_counts_kdtree(x, z, 5, 1)
    np.testing.assert_array_equal(n_x, ref_x)
    np.testing.assert_array_equal(n_z, ref_z)
    assert ksg(x, z, method="brute") == ksg(x, z, method="kdtree", workers=1)


@pytest.mark.parametrize("k", [1, 3, 5, 10])
def test_ties_and_duplicates_give_the_same_counts(k):
    """Integer-valued data: many distances equal ε_i exactly, and duplicated points (distance 0,
    ε_i = 0 for some points) — the case where 'strictly closer' and the self-match matter."""
    rng = np.random.default_rng(k)
    x = rng.integers(0, 3, (600, 2)).astype(float)
    z = x[:, :1] + rng.integers(0, 2, (600, 3))
    x[:40] = x[0]  # 40 copies of one joint point: its 10 nearest neighbours are at distance 0
    z[:40] = z[0]
    n_x, n_z = _ksg_counts_brute(x, z, k, 2)
    ref_x, ref_z = _ksg_counts_kdtree(x, z, k, 1)
    np.testing.assert_array_equal(n_x, ref_x)
    np.testing.assert_array_equal(n_z, ref_z)
    # ε_0 = 0 (40 copies), where the reference counts the points at distance 0 (d ≤ nextafter(0, 0)
    # = 0): every other point with the same x, copies or not
    assert n_x[0] == np.all(x == x[0], axis=1).sum() - 1 >= 39
    assert ksg(x, z, k=k, method="brute") == ksg(x, z, k=k, method="kdtree")


def test_strictly_closer_uses_the_next_float_below_epsilon():
    """One point at exactly ε in x must not be counted, one a float below must: a count that used
    ≤ ε (or a tolerance) would differ from the reference here."""
    eps = 0.3
    x = np.array([[0.0], [eps], [np.nextafter(eps, 0)], [5.0], [6.0], [7.0]])
    z = np.array([[0.0], [0.0], [eps], [5.0], [6.0], [7.0]])
    # point 0: joint distances 0.3 (pts 1 and 2), so ε_0 = 0.3 with k = 2; n_x(0) = 1 (point 2)
    n_x, n_z = _ksg_counts_brute(x, z, 2, 1)
    ref_x, ref_z = _ksg_counts_kdtree(x, z, 2, 1)
    np.testing.assert_array_equal(n_x, ref_x)
    np.testing.assert_array_equal(n_z, ref_z)
    assert n_x[0] == 1 and n_z[0] == 1


def test_brute_force_does_not_depend_on_workers_or_row_blocks(monkeypatch):
    """Several threads and blocks of a few rows (the path of large N) give the same counts."""
    x, z = _pairs(700, 3, 4, seed=3)
    ref = _ksg_counts_brute(x, z, 5, 1)
    monkeypatch.setattr("torchmim.metrics._KSG_BLOCK_ENTRIES", 700 * 7)  # 7 rows per block
    for workers in (1, 2, 3):
        n_x, n_z = _ksg_counts_brute(x, z, 5, workers)
        np.testing.assert_array_equal(n_x, ref[0])
        np.testing.assert_array_equal(n_z, ref[1])
    assert torch.get_num_threads() >= 1  # torch's thread setting is restored


def test_standardize_gives_the_same_estimate_with_both_methods():
    x, z = _pairs(1500, 8, 2, seed=7)
    z = z / 10.0
    a = ksg(x, z, standardize=True, method="brute")
    assert a == ksg(x, z, standardize=True, method="kdtree")
    assert a != ksg(x, z, method="brute")


@pytest.mark.parametrize("method", ["kdtree", "brute", "auto"])
@pytest.mark.parametrize("dim, rho", [(1, 0.5), (2, 0.8), (3, 0.6)])
def test_both_methods_match_the_gaussian_closed_form(method, dim, rho):
    """x, z ∈ R^d with corr(x_i, z_i) = ρ: I(x; z) = −(d/2) log(1 − ρ²) nats."""
    rng = np.random.default_rng(dim * 100 + int(rho * 10))
    x = rng.standard_normal((4000, dim))
    z = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((4000, dim))
    exact = -0.5 * dim * math.log(1 - rho**2)
    assert ksg(x, z, method=method) == pytest.approx(exact, abs=0.04 + 0.03 * exact)


@pytest.mark.parametrize("n, d_x, d_z, expected", [
    (10_000, 2, 2, "kdtree"),     # 2-D: the tree is 3–7× faster from N = 1000 on
    (100_000, 2, 2, "kdtree"),
    (1_000, 1, 1, "kdtree"),
    (10_000, 3, 3, "kdtree"),     # 6 dims: the tree still wins at 10k, brute force at 3k
    (3_000, 3, 3, "brute"),
    (10_000, 5, 3, "brute"),      # 8 dims: brute force up to ~12k, the tree at 30k
    (30_000, 4, 4, "kdtree"),
    (30_000, 6, 6, "brute"),
    (1_000, 20, 20, "brute"),     # 20+20: brute force at every N (14× at 10k)
    (10_000, 20, 20, "brute"),
    (100_000, 20, 20, "brute"),
    (100_000, 784, 20, "brute"),  # images: x is the flattened pixels
    (50, 2, 2, "brute"),          # tiny N: one block, both instant
])
def test_auto_picks_the_method_measured_faster(n, d_x, d_z, expected):
    assert ksg_method(n, d_x, d_z) == expected


def test_auto_uses_the_rule(monkeypatch):
    calls = []
    import torchmim.metrics as metrics

    for name in ("_ksg_counts_brute", "_ksg_counts_kdtree"):
        real = getattr(metrics, name)
        monkeypatch.setattr(metrics, name,
                            lambda *a, _real=real, _name=name: calls.append(_name) or _real(*a))
    x, z = _pairs(1200, 1, 1, seed=0)
    ksg(x, z)
    x, z = _pairs(1200, 10, 10, seed=0)
    ksg(x, z)
    assert calls == ["_ksg_counts_kdtree", "_ksg_counts_brute"]


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "ball"}, "method must be one of"),
    ({"workers": 0}, "workers must be a positive integer, -1 or None"),
    ({"workers": 1.5}, "workers must be"),
    ({"k": 0}, "k must be between 1 and N - 1"),
    ({"k": 20}, "k must be between 1 and N - 1"),
])
def test_bad_arguments_raise_one_line_data_errors(kwargs, message):
    x, z = _pairs(20, 2, 2, seed=0)
    with pytest.raises(DataError, match=message) as info:
        ksg(x, z, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("method", ["kdtree", "brute"])
def test_bad_data_raises_data_errors_with_both_methods(method):
    x, z = _pairs(30, 2, 2, seed=0)
    with pytest.raises(DataError, match="same number of samples"):
        ksg(x, z[:-1], method=method)
    x[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN or Inf"):
        ksg(x, z, method=method)
    with pytest.raises(DataError, match="must be numeric"):
        ksg(np.array(["a"] * 30), z, method=method)
