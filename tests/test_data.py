"""The paper's toy data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torchmim as tm
from torchmim.data import GMM2DConfig, GMM20DConfig, ResampledMixtureDataset


def test_2d_mixture_matches_the_reference():
    mix = tm.paper_2d_mixture()
    angles = np.deg2rad([0, 72, 144, 216])
    expected = np.vstack([[0, 0], np.c_[np.cos(angles), np.sin(angles)]])
    assert mix.means == pytest.approx(expected)
    assert mix.stds == pytest.approx(np.full((5, 2), 0.25))
    assert mix.weights == pytest.approx(np.full(5, 0.2))


def test_20d_mixture_matches_the_reference():
    mix = tm.paper_20d_mixture()
    assert mix.means.shape == (5, 20)
    assert mix.means[:, 2:] == pytest.approx(np.linspace(-50, 50, 100).reshape(5, 20)[:, 2:])
    assert mix.means[:, :2] == pytest.approx(tm.paper_2d_mixture().means)


def test_samples_have_the_right_statistics_and_labels():
    mix = tm.paper_2d_mixture()
    x, y = mix.sample(50_000, seed=0)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    for k in range(5):
        xs = x[y == k].numpy()
        assert xs.mean(0) == pytest.approx(mix.means[k], abs=0.02)
        assert xs.std(0) == pytest.approx([0.25, 0.25], abs=0.01)
    assert np.bincount(y.numpy()) / len(y) == pytest.approx(np.full(5, 0.2), abs=0.01)


def test_log_prob_integrates_to_one():
    mix = tm.paper_2d_mixture()
    g = np.linspace(-3, 3, 301)
    gx, gy = np.meshgrid(g, g)
    p = mix.log_prob(np.c_[gx.ravel(), gy.ravel()]).exp().numpy()
    assert p.sum() * (g[1] - g[0]) ** 2 == pytest.approx(1.0, abs=1e-3)


def test_splits_are_independent_and_reproducible():
    a = GMM2DConfig(n_train=100, n_val=50, n_test=60).load(seed=3)
    b = GMM2DConfig(n_train=100, n_val=50, n_test=60).load(seed=3)
    assert torch.equal(a.test[0], b.test[0]) and torch.equal(a.val[0], b.val[0])
    assert not torch.equal(a.test[0][:50], a.val[0])
    assert a.x_shape == (2,) and a.num_classes == 5
    assert GMM20DConfig(n_train=10, n_val=10, n_test=10).load().x_shape == (20,)


def test_resampled_training_set_changes_each_epoch_deterministically():
    ds = ResampledMixtureDataset(tm.paper_2d_mixture(), 100, seed=1)
    first = ds.x.clone()
    ds.set_epoch(2)
    assert not torch.equal(first, ds.x)
    ds.set_epoch(1)
    assert torch.equal(first, ds.x)


def test_user_mixtures_are_validated():
    cfg = tm.RunConfig.from_dict({"data": {"name": "gmm", "means": [[0, 0, 0], [3, 3, 3]],
                                           "std": [0.1, 0.5]}, "model": {"x_dim": 3}})
    splits = cfg.data.load()
    assert splits.x_shape == (3,) and splits.num_classes == 2
    with pytest.raises(tm.ConfigError, match="std"):
        tm.RunConfig.from_dict({"data": {"name": "gmm", "means": [[0, 0]], "std": [0.1, 0.2, 0.3]}})
    with pytest.raises(tm.ConfigError, match="positive"):
        tm.RunConfig.from_dict({"data": {"name": "gmm", "means": [[0, 0]], "std": -1}})


def test_a_standardised_mixture_has_exact_unit_moments_and_the_same_labels():
    # catches: the moments of a mixture computed without the between-component spread (Σ w μ²),
    # or standardised draws that are not the same draws rescaled
    import numpy as np

    from torchmim.data.toy import GMM20DConfig, paper_20d_mixture

    mix = paper_20d_mixture()
    mean, std = mix.moments()
    x, _ = mix.sample(200_000, seed=0)
    np.testing.assert_allclose(mean, x.double().mean(0).numpy(), atol=0.3)
    np.testing.assert_allclose(std, x.double().std(0).numpy(), rtol=0.01)
    z = mix.standardized()
    zm, zs = z.moments()
    np.testing.assert_allclose(zm, 0.0, atol=1e-12)
    np.testing.assert_allclose(zs, 1.0, rtol=1e-12)
    xs, ys = z.sample(1000, seed=3)
    x0, y0 = mix.sample(1000, seed=3)
    assert ys.equal(y0)
    np.testing.assert_allclose(xs.numpy(), ((x0.double().numpy() - mean) / std), rtol=1e-5, atol=1e-5)
    splits = GMM20DConfig(standardize=True, n_train=50, n_val=50, n_test=50).load(seed=0)
    assert "standardised" in splits.description
    assert float(splits.test[0].abs().max()) < 6  # not ±50
