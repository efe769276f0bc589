"""The objectives against hand computations of the paper's equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

import torchmim as tm
from torchmim.objectives import ce_per_sample, decoder_path, encoder_path, mim_per_sample


def _tiny_model(data_prior: str = "marginal", **kw) -> tm.LatentVariableModel:
    """A 1D-x, 1D-z model with linear 'networks' (depth 0): mean and log-variance affine in input."""
    cfg = tm.MLPModelConfig(x_dim=1, z_dim=1, depth=0, data_prior=data_prior, std_floor=0.0, **kw)
    model = cfg.build()
    with torch.no_grad():
        # encoder: [mean, logvar] = [0.8 x + 0.1, -0.5 x - 1.0]; decoder: [1.2 z - 0.2, 0.3 z - 0.7]
        model.encoder.network[0].weight.copy_(torch.tensor([[0.8], [-0.5]]))
        model.encoder.network[0].bias.copy_(torch.tensor([0.1, -1.0]))
        model.decoder.network[0].weight.copy_(torch.tensor([[1.2], [0.3]]))
        model.decoder.network[0].bias.copy_(torch.tensor([-0.2, -0.7]))
    return model


def _enc(x):  # (mean, std) of q(z|x) of the tiny model
    return 0.8 * x + 0.1, np.exp(0.5 * (-0.5 * x - 1.0))


def _dec(z):  # (mean, std) of p(x|z)
    return 1.2 * z - 0.2, np.exp(0.5 * (0.3 * z - 0.7))


def _noise(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The standard-normal draws the objective makes, in its documented order: the encoder's ε,
    then the anchor's z ∼ N(0, 1), then the decoder's ε."""
    torch.manual_seed(seed)
    return tuple(torch.randn(n, 1).squeeze(1).numpy() for _ in range(3))


def test_mim_loss_matches_algorithm_2_by_hand(float64):
    """MIM with the marginal q(x): Algorithm 2 lines 6, 11 and 13 computed with scipy."""
    model = _tiny_model()
    x = np.array([-1.0, 0.3, 0.9, 2.0])
    eps_enc, z_anchor, eps_dec = _noise(len(x), seed=7)

    # encoder path: z ∼ q(z|x); line 6: −(log p(x|z) + log p(z))
    mq, sq = _enc(x)
    z = mq + sq * eps_enc
    mp, sp = _dec(z)
    line6 = -(norm.logpdf(x, mp, sp) + norm.logpdf(z)).mean()
    # decoder path: z ∼ P(z), x ∼ p(x|z); line 11
    mp, sp = _dec(z_anchor)
    xd = mp + sp * eps_dec
    mq, sq = _enc(xd)
    line11 = -(norm.logpdf(z_anchor, mq, sq) + 2 * norm.logpdf(xd, mp, sp)
               + norm.logpdf(z_anchor)).mean() / 2
    expected = 0.5 * (line6 + line11)  # line 13

    torch.manual_seed(7)
    out = tm.MIM()(model, torch.tensor(x).unsqueeze(1), beta=1.0)
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)
    assert set(out.terms) == {"encoder", "decoder"}


def test_mim_loss_matches_eq15_with_parametric_q_x(float64):
    """Eq. (15) with a Gaussian-mixture q(x): −1/(2N) Σ_{D_enc ∪ D_dec} log q(x,z) + log p(x,z)."""
    model = _tiny_model(data_prior="gmm", data_prior_options={"num_components": 2, "std_floor": 0.0})
    with torch.no_grad():
        model.data_prior.loc.copy_(torch.tensor([[-0.5], [1.0]]))
        model.data_prior.logvar.copy_(torch.tensor([[0.2], [-0.4]]))
        model.data_prior.logits.copy_(torch.tensor([0.3, -0.1]))
    w = np.exp([0.3, -0.1]) / np.exp([0.3, -0.1]).sum()

    def log_qx(v):
        return np.logaddexp(np.log(w[0]) + norm.logpdf(v, -0.5, np.exp(0.1)),
                            np.log(w[1]) + norm.logpdf(v, 1.0, np.exp(-0.2)))

    x = np.array([-0.7, 0.2, 1.4])
    eps_enc, z_anchor, eps_dec = _noise(len(x), seed=3)
    mq, sq = _enc(x)
    z = mq + sq * eps_enc
    xs, zs = [x], [z]
    mp, sp = _dec(z_anchor)
    xs.append(mp + sp * eps_dec)
    zs.append(z_anchor)
    X, Z = np.concatenate(xs), np.concatenate(zs)
    mq, sq = _enc(X)
    mp, sp = _dec(Z)
    log_q = norm.logpdf(Z, mq, sq) + log_qx(X)
    log_p = norm.logpdf(X, mp, sp) + norm.logpdf(Z)
    expected = -(log_q + log_p).sum() / (2 * len(X))

    torch.manual_seed(3)
    out = tm.MIM(decoder_path_min_beta=0.0)(model, torch.tensor(x).unsqueeze(1))
    assert out.loss.item() == pytest.approx(expected, rel=1e-12)


def test_beta_weights_only_the_encoder_terms(float64):
    """Eq. (18): ℓ = −½[log p(x|z) + log p(z) + β(log q(z|x) + log q(x))]."""
    terms = tm.models.JointTerms(*(torch.tensor([v]) for v in (-1.0, -2.0, 0.5, -3.0)))
    assert mim_per_sample(terms, 0.25).item() == pytest.approx(-0.5 * (-3.0 + 0.25 * (-2.5)))


def test_mim_uses_the_decoder_path_only_from_beta_one():
    model = _tiny_model()
    x = torch.randn(8, 1)
    assert set(tm.MIM()(model, x, beta=0.5).terms) == {"encoder"}
    assert set(tm.MIM()(model, x, beta=1.0).terms) == {"encoder", "decoder"}
    assert set(tm.MIM(decoder_path_min_beta=0.0)(model, x, beta=0.1).terms) == {"encoder", "decoder"}
    assert set(tm.AMIM()(model, x, beta=1.0).terms) == {"encoder"}


def test_vae_loss_is_the_negative_elbo_by_hand(float64):
    model = _tiny_model()
    x = np.array([0.4, -1.1])
    torch.manual_seed(11)
    eps = torch.randn(2, 1).squeeze(1).numpy()
    mq, sq = _enc(x)
    z = mq + sq * eps
    mp, sp = _dec(z)
    beta = 0.5
    expected = -(norm.logpdf(x, mp, sp) + beta * (norm.logpdf(z) - norm.logpdf(z, mq, sq))).mean()
    torch.manual_seed(11)
    assert tm.VAE()(model, torch.tensor(x).unsqueeze(1), beta).loss.item() == pytest.approx(expected)


def test_ae_loss_uses_the_posterior_mean(float64):
    model = _tiny_model()
    x = np.array([0.4, -1.1])
    mp, sp = _dec(_enc(x)[0])
    out = tm.AE()(model, torch.tensor(x).unsqueeze(1))
    assert out.loss.item() == pytest.approx(-norm.logpdf(x, mp, sp).mean())
    mse = tm.AE(reconstruction="mse")(model, torch.tensor(x).unsqueeze(1))
    assert mse.loss.item() == pytest.approx(((x - mp) ** 2).mean())


def test_ce_is_the_log_mixture_and_below_mim(float64):
    """L_CE (Eq. 7) = −log ½(q + p), computed stably, and L_MIM − L_CE = R_MIM ≥ 0 per sample (Eq. 12)."""
    terms = tm.models.JointTerms(log_px_z=torch.tensor([-800.0, -1.0]), log_pz=torch.tensor([0.0, -2.0]),
                                 log_qz_x=torch.tensor([-1.0, 0.5]), log_qx=torch.tensor([-2.0, -0.2]))
    ce = ce_per_sample(terms)
    log_q, log_p = np.array([-3.0, 0.3]), np.array([-800.0, -3.0])
    assert torch.isfinite(ce).all()  # exp(−800) underflows in float32/64; logaddexp does not
    assert ce.numpy() == pytest.approx(-(np.logaddexp(log_q, log_p) - math.log(2)))
    assert (mim_per_sample(terms) >= ce).all()


@pytest.mark.parametrize("name", ["mim", "amim", "vae", "ae", "ce"])
def test_gradients_reach_every_parameter(name):
    model = tm.MLPModelConfig(hidden=8).build()
    if name == "ce":  # CE needs a parametric q(x) to be interesting; use the GMM
        model = tm.MLPModelConfig(hidden=8, data_prior="gmm", prior="gmm").build()
    objective = tm.get_objective(name)
    x = torch.randn(16, 2)
    objective(model, x, beta=1.0).loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        if name != "ae" or "encoder.network.0" in pname or "decoder" in pname:
            assert p.grad.abs().sum() > 0, pname


def test_reinforce_path_for_bernoulli_decoder_is_unbiased(float64):
    """Eq. (17): the decoder path with a Bernoulli p(x|z) estimates the exact gradient of
    E_{z∼P(z), x∼p(x|z)}[ℓ] (here with a discrete z-free model: p(x) = Bernoulli(σ(θ)) per pixel)."""
    from torchmim.objectives.base import path_loss

    theta = torch.tensor([0.3, -1.2], requires_grad=True)

    def f(x):  # a per-sample loss depending on the sample and on θ directly
        return ((x - 0.25) ** 2).sum(-1) + (theta**2).sum() * x.sum(-1)

    dist = torch.distributions.Independent(torch.distributions.Bernoulli(logits=theta), 1)
    # exact expectation over the 4 outcomes
    outcomes = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    exact = (dist.log_prob(outcomes).exp() * f(outcomes)).sum()
    (g_exact,) = torch.autograd.grad(exact, theta)
    torch.manual_seed(0)
    x = dist.sample((200_000,))
    loss = path_loss(f(x), dist.log_prob(x))
    (g_est,) = torch.autograd.grad(loss, theta)
    assert loss.item() == pytest.approx(f(x).mean().item())  # the surrogate leaves the value unchanged
    assert g_est.numpy() == pytest.approx(g_exact.numpy(), abs=0.02)


def test_paths_return_score_terms_only_when_not_reparameterised():
    gauss = tm.MLPModelConfig(hidden=4).build()
    bern = tm.MLPModelConfig(hidden=4, x_dim=3, likelihood="bernoulli").build()
    assert encoder_path(gauss, torch.randn(5, 2))[1] is None
    assert decoder_path(gauss, 5)[1] is None
    terms, score = decoder_path(bern, 5)
    assert score is terms.log_px_z


def test_unknown_objective_names_are_clear():
    with pytest.raises(tm.ConfigError, match="Did you mean 'mim'"):
        tm.get_objective("mimm")
    with pytest.raises(tm.ConfigError, match="unknown key"):
        tm.get_objective({"name": "mim", "symetric": True})


def test_two_path_objectives_share_one_sample_set(float64):
    """MIM, CE and MIM − H are built by one helper (two_path_loss) on the same anchored sample set:
    with the same seed, L_{MIM−H} = L_MIM − L_CE exactly (the path means are linear in the
    per-sample loss). Fails if one objective draws its samples differently (order, count, or a
    second p(z)) or averages its paths differently."""
    from torchmim.objectives import MIMMinusEntropy, two_path_loss

    model = _tiny_model()
    x = torch.tensor([[-1.0], [0.3], [0.9], [2.0]])
    losses = {}
    for name, objective in (("mim", tm.MIM()), ("ce", tm.CE()), ("mim_h", MIMMinusEntropy())):
        torch.manual_seed(3)
        losses[name] = objective(model, x, beta=1.0).loss.item()
    assert losses["mim_h"] == pytest.approx(losses["mim"] - losses["ce"], rel=1e-12)
    torch.manual_seed(3)
    by_hand = two_path_loss(model, x, mim_per_sample, symmetric=True).loss.item()
    assert by_hand == losses["mim"]
    torch.manual_seed(3)
    amim = two_path_loss(model, x, mim_per_sample, symmetric=False)
    assert set(amim.terms) == {"encoder"}
    torch.manual_seed(3)
    assert amim.loss.item() == tm.AMIM()(model, x).loss.item()
