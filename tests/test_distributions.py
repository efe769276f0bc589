"""Densities against scipy and closed forms; reparameterised mixture samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm
from torch import nn

import torchmim as tm
from torchmim.distributions import ReparameterizedMixture


def test_conditional_gaussian_floor_and_clamp(float64):
    net = nn.Identity()
    out = torch.tensor([[0.5, -1.0, -40.0, 10.0]])  # mean (0.5, -1), logvar (-40, 10)
    q = tm.ConditionalGaussian(net, std_floor=1e-6)(out)
    assert q.stddev[0].numpy() == pytest.approx([np.exp(-20) + 1e-6, np.exp(5) + 1e-6])
    q = tm.ConditionalGaussian(net, std_floor=0.0, logvar_clamp=(-6, 2))(out)
    assert q.stddev[0].numpy() == pytest.approx([np.exp(-3), np.exp(1)])
    x = torch.tensor([[0.1, 0.2]])
    expected = norm.logpdf(0.1, 0.5, np.exp(-3)) + norm.logpdf(0.2, -1.0, np.exp(1))
    assert q.log_prob(x).item() == pytest.approx(expected)
    assert q.has_rsample and q.event_shape == (2,)


def test_conditional_bernoulli_is_stable_and_not_reparameterised(float64):
    p = tm.ConditionalBernoulli(nn.Identity())(torch.tensor([[50.0, -50.0, 0.0]]))
    assert not p.has_rsample
    lp = p.log_prob(torch.tensor([[0.0, 1.0, 1.0]])).item()
    assert np.isfinite(lp) and lp == pytest.approx(-50 - 50 - np.log(2), abs=1e-9)


def test_gaussian_mixture_prior_log_prob_matches_scipy(float64):
    means = [[0.0, 1.0], [2.0, -1.0], [-1.0, 0.5]]
    stds = [[0.5, 1.0], [1.5, 0.3], [1.0, 1.0]]
    weights = [0.2, 0.5, 0.3]
    prior = tm.GaussianMixture(2, 3, means=means, stds=stds, weights=weights, std_floor=0.0)
    x = torch.randn(7, 2)
    expected = np.log(sum(w * multivariate_normal(m, np.diag(np.square(s))).pdf(x.numpy())
                          for w, m, s in zip(weights, means, stds)))
    assert prior().log_prob(x).detach().numpy() == pytest.approx(expected)


def test_standard_normal_prior(float64):
    p = tm.StandardNormal(3)()
    z = torch.randn(4, 3)
    assert p.log_prob(z).numpy() == pytest.approx(norm.logpdf(z.numpy()).sum(1))


def test_mixture_with_fixed_weights_has_exact_pathwise_gradient(float64):
    """E[z] = Σ_k π_k μ_k: the rsample gradient w.r.t. μ_k must average to π_k."""
    loc = torch.tensor([[-2.0, 0.0], [1.0, 3.0]], requires_grad=True)
    comps = torch.distributions.Independent(torch.distributions.Normal(loc, torch.ones(2, 2)), 1)
    weights = torch.distributions.Categorical(probs=torch.tensor([0.3, 0.7]))
    mix = ReparameterizedMixture(weights, comps)
    assert mix.has_rsample
    z = mix.rsample((100_000,))
    assert z.shape == (100_000, 2)
    (grad,) = torch.autograd.grad(z.sum(0).sum() / 100_000, loc)
    assert grad.numpy() == pytest.approx(np.array([[0.3, 0.3], [0.7, 0.7]]), abs=0.01)


def test_univariate_mixture_implicit_reparameterisation_reaches_the_weights(float64):
    """d E[g(x)] / d logits by implicit reparameterisation equals the exact derivative, for g(x) = x²."""
    logits = torch.tensor([0.2, -0.4, 0.1], requires_grad=True)
    loc = torch.tensor([[-2.0], [0.5], [3.0]], requires_grad=True)
    scale = torch.tensor([[0.5], [1.0], [0.7]])

    def mixture():
        comps = torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)
        return ReparameterizedMixture(torch.distributions.Categorical(logits=logits), comps)

    mix = mixture()
    assert mix.has_rsample
    x = mix.rsample((200_000,))
    (g_logits, g_loc) = torch.autograd.grad(x.pow(2).mean(), (logits, loc))
    # exact: E[x²] = Σ π_k (μ_k² + σ_k²)
    exact = (torch.softmax(logits, 0) * (loc.squeeze(1) ** 2 + scale.squeeze(1) ** 2)).sum()
    (e_logits, e_loc) = torch.autograd.grad(exact, (logits, loc))
    assert g_logits.numpy() == pytest.approx(e_logits.numpy(), abs=0.05)
    assert g_loc.numpy() == pytest.approx(e_loc.numpy(), abs=0.05)


def test_multivariate_mixture_with_learnable_weights_is_honest():
    prior = tm.GaussianMixture(2, 3)  # learnable weights, 2-D components
    dist = prior()
    assert not dist.has_rsample
    with pytest.raises(NotImplementedError, match="learnable mixing weights"):
        dist.rsample()
    assert dist.sample((5,)).shape == (5, 2)


def test_conditional_gmm_shapes_and_sampling():
    cfg = tm.MLPModelConfig(x_dim=1, z_dim=1, hidden=10, activation="swish", posterior="gmm",
                            likelihood="gmm", conditional_options={"num_components": 10})
    model = cfg.build()
    q = model.posterior(torch.randn(6, 1))
    assert q.has_rsample and q.rsample().shape == (6, 1)
    out = tm.MIM(decoder_path_min_beta=0)(model, torch.randn(6, 1))
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_marginal_prior_requires_a_model():
    prior = tm.MarginalDataPrior()
    with pytest.raises(RuntimeError, match="LatentVariableModel"):
        prior()
