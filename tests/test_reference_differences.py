"""Where torchmim follows the authors' image reference code (issue 12, section 1): the top-level
β warm-up of the two-level priors, the PixelHVAE guard of symmetric MIM, and the VampPrior's
pseudo-input initialisation. Tiny models; each test says what breakage it catches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torchmim as tm
from torchmim.data.images import BinarizedImages
from torchmim.errors import ConfigError
from torchmim.models import ConvHVAEConfig
from torchmim.training import Trainer, TrainerConfig

from .helpers import binary_images, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def _grads(model, objective, x, beta, seed=0):
    """{name: gradient} of one loss evaluation under a fixed seed (the same samples at every β)."""
    model.zero_grad()
    torch.manual_seed(seed)
    objective(model, x, beta).loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


# ---------------------------------------------------------------------------- β warm-up
def test_top_warmup_is_the_references_log_pz():
    """With ``prior_warmup: top`` (the default) MIM's log p(z) is log p(z1|z2) + β log p(z2), in
    the terms and inside the encoder-path log q(x) (the reference's ``log_p_z1 + beta *
    log_p_z2``), so the encoder-path loss is −½(1+β)(log p(x|z) + log p_β(z)). Fails if β weighs
    another level, or the whole log p(z), or is not passed into the loss at all."""
    model = tiny("convhvae")
    assert model.config.prior_warmup == "top"
    x = binary_images(6)
    beta = 0.3
    torch.manual_seed(1)
    out = tm.AMIM()(model, x, beta)
    torch.manual_seed(1)  # the same z, drawn the same way
    z = model.posterior(x).rsample()
    log_top, log_cond = model.prior().log_prob_levels(z)
    terms = out.terms["encoder"]
    torch.testing.assert_close(terms.log_pz, log_cond + beta * log_top)
    torch.testing.assert_close(terms.log_qx, terms.log_px_z + terms.log_pz - terms.log_qz_x)
    torch.testing.assert_close(out.loss, (-0.5 * (1 + beta) * (terms.log_px_z + terms.log_pz)).mean())


@pytest.mark.parametrize("objective", [tm.AMIM(), tm.MIM(decoder_path_min_beta=0.0)],
                         ids=["amim", "mim-both-paths"])
def test_beta_changes_the_mim_gradient_only_through_the_top_prior(objective):
    """Per unit of (1+β), the MIM gradient at β = 0.2 and β = 0.9 must differ for the encoder
    (the top-level weight moves q(z2|x) and the p(z1|z2) network) and be the same for the decoder
    on the encoder path (log p(x|z) does not see β). The A-MIM case fails if the warm-up is inert
    (the bug of issue 12; checked by making ``warmed_up`` return ``self``) or leaks into
    log p(x|z); with both paths β also weighs the decoder path, so that case is a plain check."""
    model = tiny("convhvae")
    x = binary_images(6)
    g = {b: {n: v / (1 + b) for n, v in _grads(model, objective, x, b).items()} for b in (0.2, 0.9)}
    enc = [n for n in g[0.2] if n.startswith("encoder.")]
    diff = max(float((g[0.2][n] - g[0.9][n]).abs().max() / (g[0.9][n].abs().max() + 1e-12))
               for n in enc)
    assert diff > 1e-2
    if isinstance(objective, tm.AMIM):
        for n in g[0.2]:
            if n.startswith("decoder."):
                torch.testing.assert_close(g[0.2][n], g[0.9][n], rtol=1e-5, atol=1e-8)


def test_without_top_warmup_beta_only_rescales_mim():
    """``prior_warmup: none``: with the marginal q(x), β of Eq. (18) cancels from the encoder path
    and only rescales the A-MIM gradient by (1 + β) — what issue 12 measured (parameters within
    1e-7 after 10 steps at β = 0.01 and 0.99). Fails if the flag does not turn the warm-up off."""
    model = tiny("convhvae", prior_warmup="none")
    x = binary_images(6)
    g1 = _grads(model, tm.AMIM(), x, 0.01)
    g2 = _grads(model, tm.AMIM(), x, 0.99)
    for n in g1:
        torch.testing.assert_close(g1[n] / 1.01, g2[n] / 1.99, rtol=1e-4, atol=1e-7)


def test_top_warmup_changes_nothing_at_beta_one_and_nothing_for_the_vae():
    """At β = 1 the warmed-up prior is the prior (so the validation loss and every run after the
    warm-up are unchanged), and the VAE's β stays on its whole KL term as in the reference: the
    flag must not change either loss. Fails if the warm-up applies at β = 1 or to the VAE."""
    x = binary_images(6)
    for objective, beta in ((tm.MIM(), 1.0), (tm.VAE(), 0.3)):
        losses = []
        for mode in ("top", "none"):
            torch.manual_seed(0)
            model = tiny("convhvae", prior_warmup=mode)
            torch.manual_seed(1)
            losses.append(float(objective(model, x, beta).loss.detach()))
        assert losses[0] == losses[1]
    # and the VAE's β does change its gradient
    model = tiny("convhvae")
    g1, g2 = _grads(model, tm.VAE(), x, 0.2), _grads(model, tm.VAE(), x, 0.9)
    assert any(not torch.allclose(g1[n], g2[n]) for n in g1 if n.startswith("encoder."))


def test_prior_warmup_option_is_checked():
    """A misspelt option is a one-line ConfigError when the config is read."""
    with pytest.raises(ConfigError, match="prior_warmup"):
        ConvHVAEConfig(prior_warmup="top-level")


# ---------------------------------------------------------------------------- PixelHVAE guard
def test_symmetric_mim_refuses_pixelhvae_with_batch_norm_in_training_mode():
    """The decoder path would draw x with batch norm in eval mode and score it in training mode:
    a clear error before any sampling. A-MIM (the paper's choice), eval mode (the validation loss)
    and a PixelHVAE without batch norm are fine. Fails if the guard is dropped or too broad."""
    model = tiny("pixelhvae", (1, 4, 4))
    x = binary_images(4, (1, 4, 4))
    with pytest.raises(ConfigError, match="amim"):
        tm.MIM()(model, x, 1.0)
    assert torch.isfinite(tm.AMIM()(model, x, 1.0).loss)
    assert torch.isfinite(tm.MIM()(model, x, 0.5).loss)  # warm-up: A-MIM until β = 1
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(tm.MIM()(model, x, 1.0).loss)
    plain = tiny("pixelhvae", (1, 4, 4), pixelcnn_batch_norm=False)
    assert torch.isfinite(tm.MIM()(plain, x, 1.0).loss)


# ---------------------------------------------------------------------------- VampPrior init
def _grey(n=5, shape=(8, 8)):
    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, size=(n, *shape)).astype(np.uint8)
    g[:, :2] = 0  # a black background band, as in MNIST
    return g


def test_vampprior_initialises_from_grey_levels_plus_unreflected_noise():
    """The reference (``--use_training_data_init``): pseudo-inputs = the first K grey-level
    training images + N(0, 0.01²), added as is (so background pixels at 0 go below 0 about half
    the time). Fails if the noise is reflected or the images binarised by default."""
    model = tiny("convhvae", prior="vampprior")
    vamp = model.prior.top
    g = torch.as_tensor(_grey()).float().div(255).unsqueeze(1)
    torch.manual_seed(0)
    model.initialize_from_data(g)
    u = vamp.pseudo_inputs.detach()
    noise = u - g
    assert float(noise.std()) == pytest.approx(0.01, rel=0.15)
    assert float(noise.mean()) == pytest.approx(0.0, abs=2e-3)
    assert 0.3 < float((u[:, :, :2] < 0).float().mean()) < 0.7  # unreflected at the background


def test_vampprior_init_options_binarize_and_reflect():
    """``init_binarize``: Bernoulli draws of the grey levels (binary + noise); ``reflect_noise``:
    every pixel inside [0, 1]. Fails if either option is ignored."""
    g = torch.as_tensor(_grey()).float().div(255).unsqueeze(1)
    model = tiny("convhvae", prior="vampprior",
                 prior_options={"num_pseudo_inputs": 5, "init_binarize": True,
                                "reflect_noise": True})
    model.initialize_from_data(g)
    u = model.prior.top.pseudo_inputs.detach()
    assert ((u > 0) & (u < 1)).all()
    assert ((u.round() - u).abs() < 0.05).all()  # within noise of 0 or 1
    with pytest.raises(ConfigError, match="init_binarize"):
        tiny("convhvae", prior="vampprior", prior_options={"init_binarize": "yes"})


def test_trainer_hands_grey_levels_of_binarised_images_to_the_initialisation():
    """Dynamically binarised training images: the trainer initialises from their grey levels
    (``BinarizedImages.initialization_data``), not from a binarised draw. Fails if the trainer
    passes binary images (the pseudo-inputs would then sit near 0 and 1 only)."""
    images = _grey(12)
    data = BinarizedImages(images, np.zeros(12, dtype=np.int64), binarize="dynamic")
    model = tiny("convhvae", prior="vampprior")
    trainer = Trainer(model, tm.AMIM(), TrainerConfig(epochs=1, progress=False))
    trainer.initialize_from_data(data)
    u = model.prior.top.pseudo_inputs.detach()
    grey = torch.as_tensor(images[:5]).float().div(255).unsqueeze(1)
    assert (u - grey).abs().max() < 0.06


# ---------------------------------------------------------------------------- decoder-path log q(x)
def test_reencode_option_is_checked_and_not_vectorised():
    """``data_prior_options.decoder_estimate``: a bad value is a one-line ConfigError when the
    config is read, and ``reencode`` is trained by the plain trainer only (the vectorised one
    implements Algorithm 2's line 10). Fails if the vectorised trainer would silently ignore it."""
    from torchmim.training.vectorized import unsupported_reason

    with pytest.raises(ConfigError, match="decoder_estimate"):
        tm.MLPModelConfig(data_prior_options={"decoder_estimate": "encoder"})
    cfg = tm.MLPModelConfig(data_prior_options={"decoder_estimate": "reencode"})
    assert "re-encodes" in unsupported_reason(cfg, tm.MIM(), TrainerConfig())
    assert unsupported_reason(tm.MLPModelConfig(), tm.MIM(), TrainerConfig()) is None
    assert cfg.build().data_prior.decoder_estimate == "reencode"
