"""The normalizing-flow prior (``prior: flow``, ``data_prior: flow``): its density is the change of
variables, its sample is pathwise and follows that density, and every model trains with it.

Each test says in a comment how it fails. The math checks run in float64 and use flows pushed far
from their near-identity initialisation (``_scramble``): at initialisation a flow is ≈ N(0, I), so a
wrong log-determinant or a sample drawn through the wrong direction would hide in the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch.autograd.functional import jacobian

import torchmim as tm
from torchmim.distributions import PRIORS, FlowPrior, StandardNormal
from torchmim.errors import ConfigError

KINDS = ["nsf", "maf", "realnvp"]


def _scramble(prior: FlowPrior, scale: float = 0.15) -> FlowPrior:
    """Random parameters of size ``scale``: 0.3–3 nats of KL from N(0, I) at d = 2 to 5 (clearly
    non-Gaussian) with Jacobians still well conditioned (cond < 100; larger scales saturate the
    splines and affine scales, and float64 slogdet of the composed map loses digits)."""
    with torch.no_grad():
        for p in prior.parameters():
            p.copy_(scale * torch.randn_like(p))
    return prior


def _flow(dim: int, kind: str = "nsf", **options) -> FlowPrior:
    return _scramble(FlowPrior(dim, flow=kind, **options)).double()


def _normal_log_prob(u: torch.Tensor) -> torch.Tensor:
    return (-0.5 * u.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)


# --------------------------------------------------------------------------- the density
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dim", [2, 5])
def test_log_prob_is_the_change_of_variables(kind, dim):
    # Fails if zuko's (or our) log-density differs from log N(f(x)) + log|det ∂f/∂x| with the
    # Jacobian computed by autograd in float64, e.g. a sign error in the log-determinant.
    prior = _flow(dim, kind)
    dist = prior()
    x = 1.5 * torch.randn(7, dim, dtype=torch.float64)
    f = dist.transform  # data → base noise, so p(x) = N(f(x)) |det J_f(x)|
    for xi, lp in zip(x, dist.log_prob(x), strict=True):
        J = jacobian(lambda v: f(v.unsqueeze(0)).squeeze(0), xi)
        by_hand = _normal_log_prob(f(xi.unsqueeze(0)).squeeze(0)) + torch.linalg.slogdet(J)[1]
        torch.testing.assert_close(lp, by_hand, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_density_integrates_to_one_in_2d(kind):
    # Fails if the density is not normalised (a missing or doubled log-determinant term): the
    # Riemann sum of exp(log_prob) over [-8, 8]² would be far from 1.
    prior = _flow(2, kind)
    g = torch.linspace(-8, 8, 321, dtype=torch.float64)
    grid = torch.cartesian_prod(g, g)
    with torch.no_grad():
        mass = prior().log_prob(grid).exp().sum() * (g[1] - g[0]) ** 2
    assert abs(mass.item() - 1) < 5e-3


def test_log_prob_takes_leading_dimensions_and_is_float32_finite():
    # Fails if the contract's (*lead, d) → (*lead,) is broken, or float32 overflows in the tails.
    prior = FlowPrior(4)
    z = torch.randn(3, 5, 4) * 6
    lp = prior().log_prob(z)
    assert lp.shape == (3, 5) and lp.dtype == torch.float32 and torch.isfinite(lp).all()
    assert prior().event_shape == (4,) and prior().batch_shape == ()


@pytest.mark.parametrize("kind", KINDS)
def test_initialisation_is_close_to_the_standard_normal(kind):
    # Fails if the near-identity initialisation is dropped: zuko's own initialisation is 1–4 nats
    # of KL away from N(0, I) at d = 40 (module docstring); here it must be below 0.01.
    prior = FlowPrior(40, flow=kind)
    with torch.no_grad():
        z = prior().sample((2000,))
        kl = (prior().log_prob(z) - _normal_log_prob(z)).mean()
    assert abs(kl.item()) < 1e-2
    exact = FlowPrior(3, flow=kind, init_scale=0.0)  # init_scale 0: exactly N(0, I)
    z = torch.randn(10, 3)
    torch.testing.assert_close(exact().log_prob(z), StandardNormal(3)().log_prob(z))


# --------------------------------------------------------------------------- the sample
@pytest.mark.parametrize("kind", KINDS)
def test_rsample_is_the_inverse_transform_of_a_base_sample(kind):
    # Fails if rsample does not invert the density's transform exactly (f(z) must give back the
    # base noise u that produced z), e.g. too few passes of an autoregressive inverse.
    prior = _flow(5, kind)
    dist = prior()
    torch.manual_seed(1)
    z = dist.rsample((64,))
    torch.manual_seed(1)
    u = dist.base.rsample((64,))
    torch.testing.assert_close(dist.transform(z), u, rtol=1e-7, atol=1e-7)
    assert dist.has_rsample and z.requires_grad


@pytest.mark.parametrize("kind", KINDS + ["maf-autoregressive"])
def test_rsample_gradient_matches_finite_differences(kind):
    # Fails if the sample is not pathwise (detached: zero gradient; wrong path: a gradient that
    # disagrees with central differences of the same loss on the same base noise, in float64).
    # SiLU hyper-networks: with ReLU a step along a random direction in all parameters moves
    # some pre-activations across the kink, and central differences lose their accuracy there
    # (measured: 1e-4 relative at eps = 1e-6); every parameter getting a gradient is checked
    # with the default ReLU in the model tests below.
    options = {"passes": None} if kind == "maf-autoregressive" else {}
    prior = _flow(3, kind.split("-")[0], activation="silu", **options)
    params = [p for p in prior.parameters()]

    def loss() -> torch.Tensor:
        torch.manual_seed(2)  # the same base noise at every evaluation
        z = prior().rsample((256,))
        return (torch.sin(z) + 0.3 * z.pow(2)).sum(-1).mean()

    grads = torch.autograd.grad(loss(), params)
    assert all(g.abs().sum() > 0 for g in grads)  # every parameter is on the sample's path
    direction = [torch.randn_like(p) for p in params]
    eps = 1e-6
    with torch.no_grad():
        for p, d in zip(params, direction, strict=True):
            p.add_(eps * d)
        up = loss()
        for p, d in zip(params, direction, strict=True):
            p.sub_(2 * eps * d)
        down = loss()
        for p, d in zip(params, direction, strict=True):
            p.add_(eps * d)
    numeric = (up - down) / (2 * eps)
    analytic = sum((g * d).sum() for g, d in zip(grads, direction, strict=True))
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-8)


def _cdf_on_grid(log_prob, grid: torch.Tensor) -> torch.Tensor:
    density = log_prob.exp()
    step = grid[1] - grid[0]
    cdf = torch.cumsum((density[1:] + density[:-1]) / 2 * step, 0)  # trapezoid rule
    return torch.cat([cdf.new_zeros(1), cdf])


@pytest.mark.parametrize("dim", [1, 2])
def test_samples_follow_the_density(dim):
    # Fails if samples do not come from the density log_prob describes (e.g. drawn through the
    # transform instead of its inverse): a KS test of each coordinate's samples against the
    # marginal CDF integrated numerically from log_prob rejects. The same samples against N(0, 1)
    # must be rejected, showing the test has the power to see a wrong distribution.
    torch.manual_seed(3)
    prior = _flow(dim, "nsf")
    g = torch.linspace(-9, 9, 1801 if dim == 1 else 721, dtype=torch.float64)
    with torch.no_grad():
        if dim == 1:
            marginals = [prior().log_prob(g[:, None])]
        else:
            lp = prior().log_prob(torch.cartesian_prod(g, g)).reshape(len(g), len(g))
            step = g[1] - g[0]
            marginals = [torch.logsumexp(lp, dim=1 - i) + step.log() for i in range(2)]
        z = prior().sample((4000,))
    for i, log_marginal in enumerate(marginals):
        cdf = _cdf_on_grid(log_marginal, g).numpy()
        assert abs(cdf[-1] - 1) < 5e-3  # the grid holds the mass

        def flow_cdf(v, cdf=cdf):
            return np.interp(v, g.numpy(), cdf / cdf[-1])

        assert stats.kstest(z[:, i].numpy(), flow_cdf).pvalue > 1e-3
        assert stats.kstest(z[:, i].numpy(), "norm").pvalue < 1e-3


# --------------------------------------------------------------------------- module behaviour
def test_seeded_construction_is_deterministic_and_moves_with_to():
    # Fails if construction draws from an unseeded source or a buffer does not follow .to().
    torch.manual_seed(5)
    a = FlowPrior(4, randperm=True)
    torch.manual_seed(5)
    b = FlowPrior(4, randperm=True)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    a64 = a.to(torch.float64)
    z = torch.randn(3, 4, dtype=torch.float64)
    assert a64().log_prob(z).dtype == torch.float64 and a64().sample((2,)).dtype == torch.float64
    torch.manual_seed(6)
    s1 = a64().sample((5,))
    torch.manual_seed(6)
    torch.testing.assert_close(a64().sample((5,)), s1, rtol=0, atol=0)


def test_state_dict_round_trip():
    # Fails if a parameter or buffer (e.g. a random feature order) is not in the state_dict.
    torch.manual_seed(7)
    a = _scramble(FlowPrior(3, randperm=True))
    torch.manual_seed(8)  # a different random order and initialisation
    b = FlowPrior(3, randperm=True)
    b.load_state_dict(a.state_dict())
    z = torch.randn(6, 3)
    torch.testing.assert_close(b().log_prob(z), a().log_prob(z), rtol=0, atol=0)


def test_registered_and_built_by_name():
    # Fails if importing torchmim.distributions does not register the flow prior.
    assert PRIORS.get("flow") is FlowPrior
    model = tm.build_model(name="mlp", prior="flow", prior_options={"flow": "maf", "transforms": 2})
    assert isinstance(model.prior, FlowPrior) and model.prior.kind == "maf"


@pytest.mark.parametrize(("options", "named"), [
    ({"flow": "glow"}, "flow"),
    ({"transforms": 0}, "transforms"),
    ({"hidden_features": [64, 0]}, "hidden_features"),
    ({"hidden_features": "64"}, "hidden_features"),
    ({"passes": 0}, "passes"),
    ({"flow": "realnvp", "passes": 3}, "passes"),
    ({"flow": "maf", "bins": 8}, "bins"),
    ({"bins": 1}, "bins"),
    ({"init_scale": -1.0}, "init_scale"),
    ({"randperm": "yes"}, "randperm"),
    ({"activation": "gelu"}, "activation"),
    ({"transfroms": 3}, "transfroms"),
])
def test_bad_options_are_one_line_config_errors(options, named):
    # Fails if a bad option builds silently, raises something else, or the message does not name
    # the option.
    with pytest.raises(ConfigError) as info:
        tm.build_model(name="mlp", prior="flow", prior_options=options)
    assert named in str(info.value) and "\n" not in str(info.value)


def test_event_shape_must_be_a_vector():
    # Fails if a non-vector event shape is accepted (the zuko flows act on vectors).
    with pytest.raises(ConfigError, match="vector"):
        FlowPrior((2, 3))


# --------------------------------------------------------------------------- models
def _assert_trains(model, objective: str, x: torch.Tensor) -> None:
    out = tm.get_objective(objective)(model, x, 1.0)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    bad = [n for n, p in model.named_parameters()
           if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0]
    assert not bad, f"{objective}: no finite non-zero gradient for {bad}"
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.optim.Adam(model.parameters(), lr=1e-3).step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


@pytest.mark.parametrize("objective", ["mim", "amim", "vae"])
def test_mlp_trains_with_a_flow_prior(objective):
    # Fails if the model does not build the flow by name, or the flow is not in the loss (every
    # flow, encoder and decoder parameter must get a finite non-zero gradient, and an Adam step
    # must move it). MIM (P(z) = p(z)) samples z ~ p(z) on its decoder path; that this sample is
    # pathwise is checked above (here log p(z) alone would already reach every flow parameter).
    model = tm.build_model(name="mlp", prior="flow", prior_options={"transforms": 2})
    assert any(n.startswith("prior.") for n, _ in model.named_parameters())
    _assert_trains(model, objective, torch.randn(32, 2))


def test_mlp_trains_with_a_flow_data_prior():
    # Fails if the parametric q(x) is not used by MIM (its parameters get no gradient) or if its
    # anchored log-density is not its log_prob.
    model = tm.build_model(name="mlp", data_prior="flow", data_prior_options={"flow": "maf"})
    assert isinstance(model.data_prior, FlowPrior)
    x = torch.randn(32, 2)
    zeros = torch.zeros(32)
    torch.testing.assert_close(
        model.data_prior.anchored_log_prob(x, path="encoder", log_px_z=zeros, log_pz=zeros,
                                           log_qz_x=zeros),
        model.data_prior().log_prob(x))
    _assert_trains(model, "mim", x)


def test_save_load_round_trip(tmp_path):
    # Fails if the saved model rebuilds its flows without their trained weights (a fresh build is
    # seeded differently and the weights are scrambled, so the log-densities would differ).
    torch.manual_seed(11)
    model = tm.build_model(name="mlp", prior="flow", data_prior="flow",
                           prior_options={"flow": "realnvp", "randperm": True})
    _scramble(model.prior, 0.3)
    _scramble(model.data_prior, 0.3)
    tm.save_model(model, tmp_path / "m.pt")
    torch.manual_seed(12)
    loaded = tm.load_model(tmp_path / "m.pt")
    z, x = torch.randn(9, 2), torch.randn(9, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.prior().log_prob(z), model.prior().log_prob(z),
                                   rtol=0, atol=0)
        torch.testing.assert_close(loaded.data_prior().log_prob(x), model.data_prior().log_prob(x),
                                   rtol=0, atol=0)
        torch.testing.assert_close(loaded.log_p_joint(x, z), model.log_p_joint(x, z), rtol=0,
                                   atol=0)


IMAGE_MODELS = {
    "convhvae": {"z1_dim": 3, "z2_dim": 2, "hidden": 8, "encoder_channels": (4, 4, 2),
                 "decoder_channels": 4},
    "image-mlp": {"z_dim": 3, "hidden": 8},
}


@pytest.mark.parametrize("objective", ["mim", "vae"])
@pytest.mark.parametrize("name", list(IMAGE_MODELS))
def test_image_models_train_with_a_flow_prior(name, objective):
    # Fails if the image models do not build ``prior: flow`` from the registry (ConfigError), or
    # if the flow on the top level (convHVAE's p(z2)) or on z (image-mlp) gets no gradient.
    model = tm.build_model(name=name, x_shape=(1, 8, 8), prior="flow",
                           prior_options={"transforms": 2, "hidden_features": [8]},
                           **IMAGE_MODELS[name])
    assert any(isinstance(m, FlowPrior) for m in model.modules())
    x = (torch.rand(8, 1, 8, 8) > 0.5).float()
    _assert_trains(model, objective, x)
