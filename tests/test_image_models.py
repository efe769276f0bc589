"""The image models of Section 6.3: blocks, two-level latents, VampPrior, PixelHVAE sampling.

Tiny widths and latents throughout (the point is the math and the plumbing, not the sizes); the
full-size sizes are checked on the encoder alone.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import norm
from torch import nn

import torchmim as tm
from torchmim import layers
from torchmim.distributions import HierarchicalDistribution, VampPrior
from torchmim.distributions.vampprior import gaussian_mixture_log_prob
from torchmim.errors import ConfigError, DataError
from torchmim.layers import GatedConv2d, GatedDense, MaskedConv2d, PixelCNN, pixelcnn_mask
from torchmim.models import ConvHVAEConfig, ImageMLPConfig, PixelHVAEConfig
from torchmim.models.hvae_networks import ConvHierarchicalEncoder

from .helpers import binary_images, tiny

ARCHS = ["convhvae", "pixelhvae", "image-mlp"]


pytestmark = pytest.mark.usefixtures("one_thread")


def randomise_batch_norm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            nn.init.normal_(m.weight)
            nn.init.normal_(m.bias)


# ============================================================================ building blocks
def test_masks_are_the_spec_masks():
    a = pixelcnn_mask("A", 1, 1, 3)[0, 0]
    b = pixelcnn_mask("B", 1, 1, 3)[0, 0]
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    a5 = pixelcnn_mask("A", 2, 3, 5)
    assert a5[:, :, 2].tolist() == [[[1, 1, 0, 0, 0]] * 3] * 2
    assert (a5[:, :, 3:] == 0).all() and (a5[:, :, :2] == 1).all()
    cond = pixelcnn_mask("A", 2, 3, 3, conditioning_channels=2)
    assert (cond[:, 1:] == 1).all() and (cond[:, 0, 1, 1] == 0).all()
    for mask_type, kernel_size in [("C", 3), ("A", 4)]:
        with pytest.raises(ConfigError):
            pixelcnn_mask(mask_type, 1, 1, kernel_size)


def test_gated_layers_are_h_times_sigmoid_g_with_he_init():
    layer = GatedDense(200, 300)
    x = torch.randn(4, 7, 200)
    expected = layer.h(x) * torch.sigmoid(layer.g(x))
    assert torch.allclose(layer(x), expected) and layer(x).shape == (4, 7, 300)
    assert layer.h.weight.std().item() == pytest.approx(math.sqrt(2 / 200), rel=0.05)
    conv = GatedConv2d(1, 3, 3, 2, 1)
    img = torch.randn(2, 1, 9, 9)
    assert torch.allclose(conv(img), conv.h(img) * torch.sigmoid(conv.g(img)))
    assert conv(img).shape[-1] == conv.output_size(9) == 5
    masked = MaskedConv2d("B", 2, 3, 3)
    assert masked(torch.randn(1, 2, 6, 5)).shape == (1, 3, 6, 5)
    assert "mask" not in masked.state_dict()


def _dependence(net: PixelCNN, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """D[i, j] = max |change of the logits at pixel j| when input pixel i (of x, or of the maps)
    is perturbed (pixels in raster order); one forward pass on a batch of perturbed copies."""
    x = torch.bernoulli(torch.full((1, net.x_channels, h, w), 0.5))
    maps = torch.randn(1, net.cond_channels, h, w)
    bump = torch.eye(h * w).reshape(h * w, 1, h, w)  # image i: pixel i (all channels) + 1

    def change(xs: torch.Tensor, ms: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            diff = (net(xs, ms) - net(x, maps)).abs().amax(1)  # (inputs, H, W)
        return diff.reshape(h * w, h * w)

    n = h * w
    return (change(x + bump, maps.expand(n, -1, -1, -1)),
            change(x.expand(n, -1, -1, -1), maps + bump))


@pytest.mark.parametrize("unmasked", [False, True])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_pixelcnn_is_autoregressive_in_raster_order(float64, unmasked, kernel_size):
    """A type-A layer then type-B layers: output pixel j depends on x only at pixels i < j."""
    net = PixelCNN(2, 3, channels=6, num_layers=3, kernel_size=kernel_size,
                   unmasked_conditioning=unmasked)
    randomise_batch_norm(net)
    net.eval()
    dx, dm = _dependence(net, 5, 6)  # dx[i, j]: effect of input pixel i on output pixel j
    assert (dx.tril() < 1e-12).all(), "an output depends on the same or a later pixel of x"
    assert (dx.triu(1).amax(0)[1:] > 1e-6).all()  # ... and every pixel j > 0 on earlier ones
    if unmasked:  # maps seen at and around pixel j
        assert (dm.diagonal() > 1e-6).all() and (dm.tril(-1) > 1e-6).any()
    else:
        assert (dm.tril() < 1e-12).all()  # the reference masks the z maps like x
    # the same without batch norm, in training mode
    net = PixelCNN(1, 2, channels=4, num_layers=2, batch_norm=False).train()
    dx, _ = _dependence(net, 4, 4)
    assert (dx.tril() < 1e-12).all() and (dx.triu(1) > 1e-6).any()


@pytest.mark.parametrize("unmasked", [False, True])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_sampler_probabilities_equal_teacher_forced_ones(unmasked, kernel_size):
    """The row-cached sampler computes exactly the logits of a full pass on its own sample."""
    net = PixelCNN(2, 3, channels=5, num_layers=3, kernel_size=kernel_size,
                   unmasked_conditioning=unmasked)
    randomise_batch_norm(net)
    net.eval()
    maps = torch.randn(4, 3, 7, 6)
    x, probs = net.sample(maps)
    assert set(x.unique().tolist()) <= {0.0, 1.0} and x.shape == (4, 2, 7, 6)
    with torch.no_grad():
        assert torch.allclose(probs, torch.sigmoid(net(x, maps)), atol=1e-6)
    with pytest.raises(RuntimeError, match="eval mode"):
        net.train().sample(maps)


# ============================================================================ sizes and shapes
def test_full_size_encoder_feature_sizes_follow_the_input_shape():
    assert ConvHierarchicalEncoder((1, 28, 28)).feature_size == 6 * 7 * 7 == 294
    assert ConvHierarchicalEncoder((1, 20, 20), channels=(4, 4, 6)).feature_size == 6 * 5 * 5
    assert ConvHierarchicalEncoder((3, 32, 32), channels=(4, 4, 6)).feature_size == 6 * 8 * 8


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("x_shape", [(1, 28, 28), (1, 20, 20), (2, 6, 5)])
def test_shapes(name, x_shape):
    model = tiny(name, x_shape)
    zd = model.z_shape[0]
    x = binary_images(3, x_shape)
    q = model.posterior(x)
    assert q.mean.shape == q.variance.shape == q.stddev.shape == (3, zd)
    assert q.batch_shape == (3,) and q.event_shape == (zd,) and q.has_rsample
    zs = q.sample((4,))
    assert zs.shape == (4, 3, zd) and q.log_prob(zs).shape == (4, 3)
    pz = model.prior()
    assert pz.log_prob(zs).shape == (4, 3) and pz.sample((5,)).shape == (5, zd)
    assert pz.rsample((2, 5)).shape == (2, 5, zd)
    z = q.rsample()
    px = model.likelihood(z)
    assert px.batch_shape == (3,) and px.event_shape == x_shape and not px.has_rsample
    assert px.log_prob(x).shape == (3,)
    assert model.decoder(zs).log_prob(x).shape == (4, 3)  # x broadcast over the sample dimension
    flat = zs.reshape(12, zd)
    assert model.decoder(flat).log_prob(x.repeat(4, 1, 1, 1)).shape == (12,)
    if name == "pixelhvae":
        assert px.logits(x).shape == (3, *x_shape)
    else:
        assert px.base_dist.logits.shape == (3, *x_shape)
    sample = px.sample()  # autoregressive for PixelHVAE
    assert sample.shape == (3, *x_shape) and set(sample.unique().tolist()) <= {0.0, 1.0}
    assert px.mean.shape == (3, *x_shape)
    assert model.sample(2).shape == (2, *x_shape)
    lml = model.log_marginal_likelihood(x, 4)
    assert lml.shape == (3,) and torch.isfinite(lml).all()


def test_convhvae_decoder_is_independent_bernoulli_with_logits():
    model = tiny("convhvae", (1, 6, 6))
    p = model.likelihood(torch.randn(2, 5))
    assert isinstance(p.base_dist, torch.distributions.Bernoulli)
    assert torch.allclose(p.mean, torch.sigmoid(p.base_dist.logits))
    assert len(p.event_shape) == 3


# ============================================================================ two-level densities
def _gauss_logpdf(z, dist) -> np.ndarray:
    base = dist.base_dist
    return norm.logpdf(z.detach().numpy(), base.loc.detach().numpy(),
                       base.scale.detach().numpy()).sum(-1)


def test_two_level_log_prob_is_the_sum_of_the_levels(float64):
    model = tiny("convhvae", (1, 8, 8), prior="standard")
    enc = model.encoder
    x = binary_images(3)
    z = model.posterior(x).sample((2,))  # (2, 3, 5): extra leading sample dimension
    z1, z2 = z[..., :3], z[..., 3:]
    # encoder: log q(z2|x) + log q(z1|x, z2), the heads' clamp and exp by hand
    h2 = enc.q_z2_features(x)
    mean2 = enc.q_z2_head.mean(h2)
    std2 = torch.exp(0.5 * enc.q_z2_head.logvar(h2).clamp(-6, 2))
    log_q2 = norm.logpdf(z2.numpy(), mean2.detach().numpy(), std2.detach().numpy()).sum(-1)
    hx = enc.q_z1_x_features(x).expand(2, 3, -1)
    h1 = enc.q_z1_joint(torch.cat([hx, enc.q_z1_z2(z2)], -1))
    mean1 = enc.q_z1_head.mean(h1)
    std1 = torch.exp(0.5 * enc.q_z1_head.logvar(h1).clamp(-6, 2))
    log_q1 = norm.logpdf(z1.numpy(), mean1.detach().numpy(), std1.detach().numpy()).sum(-1)
    assert model.posterior(x).log_prob(z).detach().numpy() == pytest.approx(log_q2 + log_q1)
    # prior: log N(z2; 0, I) + log p(z1|z2)
    expected = norm.logpdf(z2.numpy()).sum(-1) + _gauss_logpdf(z1, model.prior.conditional(z2))
    assert model.prior().log_prob(z).detach().numpy() == pytest.approx(expected)
    levels = model.prior().log_prob_levels(z)
    assert levels[0].detach().numpy() == pytest.approx(norm.logpdf(z2.numpy()).sum(-1))


def test_rsample_then_log_prob_reuses_the_z1_network_and_agrees(float64):
    model = tiny("convhvae")
    calls = []
    model.encoder.q_z1_joint.register_forward_hook(lambda *a: calls.append(1))
    q = model.posterior(binary_images(4))
    z = q.rsample()
    n = len(calls)
    cached = q.log_prob(z)
    assert len(calls) == n  # no second pass of the z1 network
    fresh = q.log_prob(z.clone())
    assert len(calls) == n + 1 and torch.allclose(cached, fresh)
    with torch.no_grad():
        z.add_(0.5)  # changed in place: the cache must not be used
    assert torch.allclose(q.log_prob(z), q.log_prob(z.detach().clone()))
    assert not torch.allclose(q.log_prob(z), cached)


def test_hierarchical_mean_and_variance_are_the_plug_in_moments(float64):
    model = tiny("convhvae")
    q = model.posterior(binary_images(2))
    z2_mean = q.top.mean
    cond = q.conditional(z2_mean)
    assert torch.allclose(q.mean, torch.cat([cond.mean, z2_mean], -1))
    assert torch.allclose(q.variance, torch.cat([cond.variance, q.top.variance], -1))
    with pytest.raises(DataError, match="z1, z2"):
        q.log_prob(torch.zeros(2, 4))


# ============================================================================ VampPrior
def _pseudo_posterior(model, u) -> tuple[np.ndarray, np.ndarray]:
    top = getattr(model.encoder, "top_posterior", model.encoder)(u)
    return top.base_dist.loc.detach().numpy(), top.base_dist.scale.detach().numpy()


def test_vampprior_log_density_is_the_mixture_of_posteriors(float64):
    model = tiny("convhvae", prior="vampprior")
    vamp = model.prior.top
    assert isinstance(vamp, VampPrior) and vamp.num_pseudo_inputs == 5
    with torch.no_grad():
        vamp.pseudo_inputs.uniform_(-0.2, 1.2)  # some outside [0, 1]: the prior reads them clamped
    loc, scale = _pseudo_posterior(model, vamp.pseudo_inputs.clamp(0, 1))
    z2 = torch.randn(6, 2) * 0.5
    per_k = np.stack([norm.logpdf(z2.numpy(), loc[k], scale[k]).sum(-1) for k in range(5)], -1)
    expected = logsumexp(per_k, axis=-1) - np.log(5)
    assert vamp().log_prob(z2).detach().numpy() == pytest.approx(expected, rel=1e-10)
    # the two-level prior adds log p(z1|z2)
    z = torch.cat([torch.randn(6, 3), z2], -1)
    expected_joint = expected + _gauss_logpdf(z[:, :3], model.prior.conditional(z2))
    assert model.prior().log_prob(z).detach().numpy() == pytest.approx(expected_joint)
    # chunked evaluation is the same function
    lz, sz = torch.tensor(loc), torch.tensor(scale)
    zs = torch.randn(3, 7, 2)
    assert torch.allclose(gaussian_mixture_log_prob(zs, lz, sz, chunk_elements=1),
                          gaussian_mixture_log_prob(zs, lz, sz))


def test_one_level_vampprior_uses_the_encoder(float64):
    model = tiny("image-mlp", prior="vampprior")
    loc, scale = _pseudo_posterior(model, model.prior.inputs())
    z = torch.randn(4, 3)
    per_k = np.stack([norm.logpdf(z.numpy(), loc[k], scale[k]).sum(-1) for k in range(5)], -1)
    expected = logsumexp(per_k, axis=-1) - np.log(5)
    assert model.prior().log_prob(z).detach().numpy() == pytest.approx(expected)


def test_vampprior_samples_have_the_mixture_moments(float64):
    model = tiny("convhvae", prior="vampprior")
    p = model.prior.top()
    z = p.rsample((40_000,))
    assert z.mean(0).detach().numpy() == pytest.approx(p.mean.detach().numpy(), abs=0.03)
    assert z.var(0).detach().numpy() == pytest.approx(p.variance.detach().numpy(), rel=0.05)


@pytest.mark.parametrize("prior", ["standard", "vampprior"])
def test_prior_rsample_sends_gradients_into_the_prior(prior):
    model = tiny("convhvae", prior=prior)
    model.initialize_from_data(binary_images(5))
    z = model.prior().rsample((64,))
    (z**2).sum().backward()
    for p in model.prior.conditional.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    if prior == "vampprior":
        assert model.prior.top.pseudo_inputs.grad.abs().sum() > 0
        for p in model.encoder.q_z2_head.parameters():  # through q(z2|u_k)
            assert p.grad is not None and p.grad.abs().sum() > 0


def test_pseudo_inputs_are_initialised_from_data_inside_the_unit_box():
    model = tiny("convhvae", prior="vampprior",  # the option; the reference adds the noise as is
                 prior_options={"num_pseudo_inputs": 5, "reflect_noise": True})
    vamp = model.prior.top
    x = binary_images(3)
    model.initialize_from_data(x)  # fewer images than pseudo-inputs: cycled
    u = vamp.pseudo_inputs.detach()
    assert ((u > 0) & (u < 1)).all()  # reflected noise: every pixel receives gradient
    assert (u - x[torch.arange(5) % 3]).abs().max() < 0.1
    assert (u - x[torch.arange(5) % 3]).abs().mean() == pytest.approx(0.01 * math.sqrt(2 / math.pi),
                                                                      rel=0.2)
    vamp.initialize_from_data(x.reshape(3, -1))  # flat images are accepted
    with pytest.raises(DataError):
        vamp.initialize_from_data(torch.rand(3, 10))
    own = [k for k in model.state_dict() if k.startswith("prior.top")]
    assert own == ["prior.top.pseudo_inputs"]


def test_vampprior_without_a_model_is_a_clear_error():
    with pytest.raises(RuntimeError, match="encoder"):
        VampPrior((1, 4, 4), 3)()


# ============================================================================ PixelHVAE
def _all_binary_images(x_shape) -> torch.Tensor:
    n = math.prod(x_shape)
    bits = list(itertools.product([0.0, 1.0], repeat=n))
    return torch.tensor(bits).reshape(len(bits), *x_shape)


@pytest.mark.parametrize("unmasked_z", [False, True])
def test_pixelhvae_decoder_is_a_normalised_distribution(float64, unmasked_z):
    model = tiny("pixelhvae", (1, 3, 3), unmasked_z=unmasked_z).eval()
    randomise_batch_norm(model.decoder)
    px = model.likelihood(torch.randn(1, 5))
    log_p = px.log_prob(_all_binary_images((1, 3, 3)))  # all 512 images against one z
    assert torch.logsumexp(log_p, 0).item() == pytest.approx(0.0, abs=1e-10)


def test_pixelhvae_sample_frequencies_match_log_prob(float64):
    model = tiny("pixelhvae", (1, 2, 2)).eval()
    randomise_batch_norm(model.decoder)
    px = model.likelihood(torch.randn(1, 5))
    images = _all_binary_images((1, 2, 2))
    probs = px.log_prob(images).exp().detach()
    samples = px.sample((20_000,)).reshape(20_000, 4)
    index = (samples * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(-1).long()
    freq = torch.bincount(index, minlength=16).double() / 20_000
    assert (freq - probs).abs().max() < 0.015
    torch.manual_seed(3)
    a = px.sample((4,))
    torch.manual_seed(3)
    assert torch.equal(a, px.sample((4,)))  # deterministic under a seed


def test_pixelhvae_sampling_uses_eval_mode_and_mean_is_one_pass_of_probabilities():
    model = tiny("pixelhvae", (1, 5, 4)).train()
    randomise_batch_norm(model.decoder)
    px = model.likelihood(torch.randn(2, 5))
    torch.manual_seed(1)
    x, probs = px.sample_with_probs()
    assert model.training and model.decoder.pixelcnn.training  # the mode is restored
    model.eval()
    with torch.no_grad():
        expected = torch.sigmoid(px.logits(x))
    assert torch.allclose(probs, expected, atol=1e-6)
    assert px.mean is px.mean and px.mean.shape == (2, 1, 5, 4)
    assert torch.allclose(px.variance, px.mean * (1 - px.mean))
    assert torch.isfinite(px.log_prob(x)).all()


# ============================================================================ training
def _mim_loss(model, x, seeds=range(3)) -> float:
    total = 0.0
    for s in seeds:
        torch.manual_seed(100 + s)
        with torch.no_grad():
            total += tm.MIM(decoder_path_min_beta=0.0)(model, x, 1.0).loss.item()
    return total / len(seeds)


def test_tiny_convhvae_mim_training_decreases_the_loss():
    model = tiny("convhvae", (1, 8, 8), prior="vampprior")
    x = binary_images(32)
    model.initialize_from_data(x)
    before = _mim_loss(model, x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        out = tm.MIM(decoder_path_min_beta=0.0)(model, x, 1.0)  # symmetric: REINFORCE for p(x|z)
        out.loss.backward()
        opt.step()
    after = _mim_loss(model, x)
    assert after < before - 3.0, (before, after)


def _assert_every_parameter_has_a_gradient(model):
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


@pytest.mark.parametrize("prior", ["standard", "vampprior"])
def test_mim_gradients_reach_every_parameter_of_convhvae(prior):
    model = tiny("convhvae", prior=prior)
    x = binary_images(8)
    model.initialize_from_data(x)
    out = tm.MIM()(model, x, 1.0)
    assert set(out.terms) == {"encoder", "decoder"}
    out.loss.backward()
    _assert_every_parameter_has_a_gradient(model)


@pytest.mark.parametrize("prior", ["standard", "vampprior"])
def test_pixelhvae_amim_step(prior):
    model = tiny("pixelhvae", (1, 8, 8), prior=prior)
    x = binary_images(8)
    model.initialize_from_data(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out = tm.AMIM()(model, x, 0.5)
    assert set(out.terms) == {"encoder"} and torch.isfinite(out.loss)
    out.loss.backward()
    _assert_every_parameter_has_a_gradient(model)
    opt.step()


def test_pixelhvae_symmetric_mim_step_runs_through_autoregressive_samples():
    # without batch norm: symmetric MIM refuses it in training mode (samples drawn in eval mode)
    model = tiny("pixelhvae", (1, 4, 4), prior="vampprior", pixelcnn_batch_norm=False)
    x = binary_images(6, (1, 4, 4))
    model.initialize_from_data(x)
    out = tm.MIM()(model, x, 1.0)
    out.loss.backward()
    _assert_every_parameter_has_a_gradient(model)


def test_image_mlp_mim_step():
    model = tiny("image-mlp", prior="vampprior")
    x = binary_images(8)
    model.initialize_from_data(x)
    tm.MIM()(model, x, 1.0).loss.backward()
    _assert_every_parameter_has_a_gradient(model)


# ============================================================================ saving, configs
@pytest.mark.parametrize("name", ARCHS)
def test_save_load_round_trip(tmp_path, name):
    model = tiny(name, prior="vampprior")
    x = binary_images(6)
    model.initialize_from_data(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tm.AMIM()(model, x, 1.0).loss.backward()  # moves batch-norm statistics too
    opt.step()
    tm.save_model(model, tmp_path / "m.pt")
    loaded = tm.load_model(tmp_path / "m.pt")
    assert type(loaded.config) is type(model.config) and loaded.config == model.config
    model.eval(), loaded.eval()
    z = torch.randn(4, model.z_shape[0])
    with torch.no_grad():
        assert torch.equal(model.encode(x), loaded.encode(x))
        assert torch.equal(model.likelihood(z).log_prob(x[:4]),
                           loaded.likelihood(z).log_prob(x[:4]))
        assert torch.equal(model.prior().log_prob(z), loaded.prior().log_prob(z))
    keys = list(model.state_dict())
    assert len(keys) == len(set(keys))
    assert not any(k.startswith("prior") and "q_z" in k for k in keys)  # encoder not duplicated


@pytest.mark.parametrize("name", ["convhvae", "pixelhvae"])
def test_importance_sampled_nll_is_finite(name, monkeypatch):
    monkeypatch.setattr(layers, "EVAL_CHUNK", 5)  # exercise the chunked no-grad evaluation
    model = tiny(name, prior="vampprior")
    x = binary_images(6)
    model.initialize_from_data(x)
    nll = tm.metrics.importance_sampled_nll(model, x, num_samples=7, batch_size=4)
    assert math.isfinite(nll) and nll > 0


def test_chunked_evaluation_equals_one_pass(monkeypatch):
    model = tiny("pixelhvae").eval()
    z, x = torch.randn(11, 5), binary_images(11)
    with torch.no_grad():
        whole = model.likelihood(z).log_prob(x)
        monkeypatch.setattr(layers, "EVAL_CHUNK", 3)
        assert torch.allclose(model.likelihood(z).log_prob(x), whole, atol=1e-5)


def test_configs_are_registered_and_round_trip():
    for name, cls in [("convhvae", ConvHVAEConfig), ("pixelhvae", PixelHVAEConfig),
                      ("image-mlp", ImageMLPConfig)]:
        cfg = tm.from_dict(tm.ModelConfig, {"name": name})
        assert type(cfg) is cls and cfg.x_shape == (1, 28, 28) and cfg.prior == "normal"
        assert cfg.prior_options == {} and cfg.logvar_clamp == (-6.0, 2.0)
        data = tm.to_dict(cfg)
        assert data["name"] == name and tm.from_dict(tm.ModelConfig, data) == cfg
    cfg = ConvHVAEConfig()
    assert (cfg.z1_dim, cfg.z2_dim, cfg.hidden, cfg.decoder_channels) == (40, 40, 300, 64)
    assert (PixelHVAEConfig().pixelcnn_channels, PixelHVAEConfig().pixelcnn_layers) == (64, 8)
    cfg = tm.from_dict(tm.ModelConfig, {"name": "convhvae", "x_shape": [1, 20, 20]})
    assert cfg.x_shape == (1, 20, 20)


@pytest.mark.parametrize("bad", [{"prior": "vamp"}, {"x_shape": [28, 28]},
                                 {"likelihood": "gaussian"}, {"z1_dim": 0},
                                 {"logvar_clamp": [2, -6]}, {"pixelcnn_kernel_size": 4}])
def test_bad_configs_are_config_errors(bad):
    with pytest.raises(ConfigError):
        tm.from_dict(tm.ModelConfig, {"name": "pixelhvae", **bad})


def test_bad_inputs_are_data_errors():
    model = tiny("convhvae")
    with pytest.raises(DataError):
        model.posterior(torch.zeros(2, 64))
    with pytest.raises(DataError):
        model.encoder(torch.zeros(2, 1, 7, 8))
    with pytest.raises(DataError):
        model.decoder(torch.zeros(2, 4))
    with pytest.raises(DataError):
        tiny("pixelhvae").likelihood(torch.zeros(2, 5)).log_prob(torch.zeros(2, 1, 4, 4))
    assert isinstance(model.posterior(binary_images(2)), HierarchicalDistribution)
