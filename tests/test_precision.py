"""``train.precision="bf16-mixed"``: networks in bfloat16 under ``torch.autocast``, every
log-density, the loss, the parameters and the optimiser in float32 (torchmim.precision)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import torchmim as tm
from torchmim.errors import ConfigError
from torchmim.evaluation import evaluate_points
from torchmim.models.latent_variable_model import JointTerms
from torchmim.precision import autocast, check_precision, check_terms, full_precision
from torchmim.training import Trainer, TrainerConfig, VectorizedTrainer

from .helpers import binary_images, tiny

# (model, objective, data) of every density family whose network output becomes distribution
# parameters: Gaussian heads (MLP, GaussianHead, the hierarchical z1|z2), Bernoulli logits (conv
# and MLP image decoders), the PixelCNN's teacher-forced logits, the VampPrior (the encoder at the
# pseudo-inputs), a mixture prior and a mixture-of-Gaussians conditional.
CASES = {
    "mlp": (lambda: tm.build_model(name="mlp", x_dim=2, z_dim=2, hidden=16), "mim", "toy"),
    "mlp-gmm-prior": (lambda: tm.build_model(name="mlp", x_dim=2, z_dim=2, hidden=16, prior="gmm",
                                             prior_options={"num_components": 3}), "mim", "toy"),
    "mlp-gmm-conditionals": (lambda: tm.build_model(
        name="mlp", x_dim=2, z_dim=2, hidden=16, posterior="gmm", likelihood="gmm",
        conditional_options={"num_components": 3}), "vae", "toy"),
    "mlp-bernoulli": (lambda: tm.build_model(name="mlp", x_dim=64, z_dim=2, hidden=16,
                                             likelihood="bernoulli"), "mim", "flat-images"),
    "convhvae": (lambda: tiny("convhvae"), "mim", "images"),
    "convhvae-vampprior": (lambda: tiny("convhvae", prior="vampprior"), "mim", "images"),
    "pixelhvae": (lambda: tiny("pixelhvae"), "amim", "images"),
    "image-mlp": (lambda: tiny("image-mlp"), "mim", "images"),
}


def _data(kind: str, n: int = 64) -> torch.Tensor:
    if kind == "toy":
        return tm.paper_2d_mixture().sample(n, seed=0)[0]
    if kind == "flat-images":
        return binary_images(n).flatten(1)
    return binary_images(n)


class _Bf16Seen:
    """Counts outputs of Linear/Conv2d modules that came out in bfloat16."""

    def __init__(self, model: nn.Module) -> None:
        self.bf16 = self.calls = 0
        self.handles = [m.register_forward_hook(self) for m in model.modules()
                        if isinstance(m, (nn.Linear, nn.Conv2d))]

    def __call__(self, module, inputs, output) -> None:
        self.calls += 1
        self.bf16 += int(output.dtype == torch.bfloat16)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _reduced_parameters(dist, path: str = "") -> list[str]:
    """Every floating tensor held by ``dist`` (and the distributions inside it) that is not float32:
    a distribution's parameters must all be float32 under bf16-mixed. The PixelCNN density holds
    its conditioning maps (the network's own input, rightly bfloat16) and is checked through its
    logits instead."""
    from torchmim.distributions.autoregressive import AutoregressiveBernoulli

    if isinstance(dist, AutoregressiveBernoulli):
        return []
    out = []
    for name, value in vars(dist).items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            if value.dtype != torch.float32:
                out.append(f"{path}{type(dist).__name__}.{name}")
        elif isinstance(value, torch.distributions.Distribution):
            out += _reduced_parameters(value, f"{path}{type(dist).__name__}.")
    return out


def test_full_precision_casts_only_reduced_precision():
    for dtype in (torch.float32, torch.float64):
        t = torch.ones(3, dtype=dtype)
        assert full_precision(t) is t
    assert full_precision(torch.ones(3, dtype=torch.bfloat16)).dtype == torch.float32
    assert full_precision(torch.ones(3, dtype=torch.float16)).dtype == torch.float32


@pytest.mark.parametrize("case", list(CASES))
def test_networks_run_in_bfloat16_and_every_density_in_float32(case):
    build, objective, kind = CASES[case]
    torch.manual_seed(0)
    model = build()
    x = _data(kind)
    model.initialize_from_data(x)
    obj = tm.get_objective(objective)
    torch.manual_seed(1)
    full = obj(model, x, 1.0)
    seen = _Bf16Seen(model)
    torch.manual_seed(1)
    with autocast("bf16-mixed", "cpu"):
        mixed = obj(model, x, 1.0)
    seen.remove()
    assert seen.calls > 0 and seen.bf16 == seen.calls  # every network layer ran in bfloat16
    assert mixed.loss.dtype == torch.float32
    # the distributions' parameters (a float32 operand would promote a forgotten cast silently)
    with torch.no_grad(), autocast("bf16-mixed", "cpu"):
        posterior = model.posterior(x)
        z = posterior.sample()
        likelihood = model.likelihood(z)
        dists = {"posterior": posterior, "likelihood": likelihood, "prior": model.prior()}
        logits = getattr(likelihood, "logits", None)
        if callable(logits):  # the PixelCNN density: its teacher-forced logits
            assert logits(x).dtype == torch.float32
            assert likelihood.log_prob(x).dtype == torch.float32
    for what, dist in dists.items():
        assert not _reduced_parameters(dist), (what, _reduced_parameters(dist))
    check_terms(mixed.terms, "bf16-mixed")  # no term left in bfloat16
    for path, terms in mixed.terms.items():
        for name, value in vars(terms).items():
            if value is not None:
                assert value.dtype == torch.float32, (path, name)
    # the same function up to bfloat16's rounding of the networks (not bit-identical: the
    # networks did run in bfloat16), batch means within 1%
    a, b = full.loss.item(), mixed.loss.item()
    assert a != b
    assert abs(a - b) <= 0.01 * abs(a) + 0.05
    mixed.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def test_trainer_bf16_mixed_trains_float32_parameters_with_bf16_networks():
    x = binary_images(96)
    torch.manual_seed(0)
    model = tiny("convhvae")
    seen = _Bf16Seen(model)
    cfg = TrainerConfig(epochs=4, batch_size=32, warmup_epochs=1, progress=False,
                        precision="bf16-mixed")
    trainer = Trainer(model, "mim", cfg)
    trainer.fit(x[:64], x[64:])
    seen.remove()
    assert seen.bf16 > 0 and seen.bf16 == seen.calls  # training and validation steps
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(s.dtype == torch.float32 for st in trainer.optimizer.state.values()
               for s in st.values() if torch.is_tensor(s) and s.is_floating_point())
    losses = [h["train_loss"] for h in trainer.history]
    assert all(map(lambda v: v == v, losses)) and losses[-1] < losses[0]
    # the same run in full precision starts from the same weights and data: its first epoch's
    # loss agrees to bfloat16's rounding
    torch.manual_seed(0)
    ref = Trainer(tiny("convhvae"), "mim", TrainerConfig(epochs=1, batch_size=32, warmup_epochs=1,
                                                         progress=False))
    ref.fit(x[:64], x[64:])
    assert ref.history[0]["train_loss"] == pytest.approx(losses[0], rel=1e-2)
    assert ref.history[0]["train_loss"] != losses[0]


def test_full_precision_default_runs_no_bfloat16():
    x = binary_images(64)
    torch.manual_seed(0)
    model = tiny("convhvae")
    seen = _Bf16Seen(model)
    Trainer(model, "vae", TrainerConfig(epochs=1, batch_size=32, progress=False)).fit(x)
    seen.remove()
    assert seen.calls > 0 and seen.bf16 == 0


def test_flow_prior_and_float64_models_are_refused_before_any_work():
    flow = tm.build_model(name="mlp", prior="flow", prior_options={"transforms": 2})
    with pytest.raises(ConfigError, match="FlowPrior"):
        Trainer(flow, "mim", TrainerConfig(precision="bf16-mixed", progress=False))
    Trainer(flow, "mim", TrainerConfig(progress=False))  # full precision is fine
    double = tm.build_model(name="mlp").double()
    with pytest.raises(ConfigError, match="float32"):
        check_precision(double, "bf16-mixed")
    check_precision(double, "full")


def test_precision_option_is_checked_and_round_trips():
    with pytest.raises(ConfigError, match="precision"):
        TrainerConfig(precision="bf16")
    cfg = tm.RunConfig.from_dict({"train": {"precision": "bf16-mixed"}})
    assert tm.RunConfig.from_dict(cfg.to_dict()).train.precision == "bf16-mixed"


def test_a_term_left_in_bfloat16_is_named():
    ok = JointTerms(torch.zeros(2), torch.zeros(2), None, None)
    bad = JointTerms(torch.zeros(2), torch.zeros(2, dtype=torch.bfloat16), None, None)
    check_terms({"encoder": ok}, "bf16-mixed")
    check_terms({"encoder": bad}, "full")  # nothing is checked in full precision
    with pytest.raises(ConfigError, match="decoder/log_pz came out in torch.bfloat16"):
        check_terms({"encoder": ok, "decoder": bad}, "bf16-mixed")


def test_a_density_that_does_not_cast_is_caught_after_the_first_step(monkeypatch):
    import torchmim.distributions.conditional as conditional

    # Gaussian heads that forget the cast: σ and z = μ + σ·ε stay in bfloat16, and so log q(z|x)
    monkeypatch.setattr(conditional, "full_precision", lambda t: t)
    x = binary_images(64)
    model = tiny("convhvae")
    trainer = Trainer(model, "vae", TrainerConfig(epochs=3, batch_size=32, progress=False,
                                                  precision="bf16-mixed"))
    with pytest.raises(ConfigError, match="encoder/log_qz_x came out in torch.bfloat16"):
        trainer.fit(x)
    assert trainer.steps == 0  # refused before the first update


def test_vectorized_groups_stay_in_full_precision():
    models = [tm.MLPModelConfig(hidden=8).build() for _ in range(2)]
    with pytest.raises(ConfigError, match="precision"):
        VectorizedTrainer(models, tm.MIM(), TrainerConfig(precision="bf16-mixed"), seeds=[0, 1])
    cfg = tm.RunConfig.from_dict({"train": {"precision": "bf16-mixed"}})
    from torchmim.training.vectorized import group_key

    assert group_key(cfg) is None
    assert group_key(tm.RunConfig.from_dict({})) is not None


def test_a_run_config_refuses_a_flow_with_bf16_before_anything_is_written(tmp_path):
    # catches: the refusal only in Trainer, after the data were loaded and the run folder started
    with pytest.raises(ConfigError, match="model.prior='flow'"):
        tm.RunConfig.from_dict({"model": {"prior": "flow"}, "train": {"precision": "bf16-mixed"}})
    with pytest.raises(ConfigError, match="model.data_prior='flow'"):
        tm.RunConfig.from_dict({"model": {"data_prior": "flow"},
                                "train": {"precision": "bf16-mixed"}})
    tm.RunConfig.from_dict({"model": {"prior": "flow"}})  # full precision is fine
    from click.testing import CliRunner

    from torchmim.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("model: {prior: flow}\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(config), "--out", str(out), "-s",
                                       "train.precision=bf16-mixed"])
    assert result.exit_code != 0 and "model.prior='flow'" in result.output
    assert not out.exists()


# ------------------------------------------------------------------------- the NLL's precision
@pytest.mark.parametrize("case", ["convhvae", "convhvae-vampprior", "pixelhvae"])
def test_nll_in_bf16_mixed_runs_the_networks_in_bf16_and_stays_close(case):
    build, _, kind = CASES[case]
    torch.manual_seed(0)
    model = build()
    x = _data(kind, 16)
    model.initialize_from_data(x)
    full = tm.metrics.importance_sampled_nll(model, x, 50, reduction="none")
    seen = _Bf16Seen(model)
    mixed = tm.metrics.importance_sampled_nll(model, x, 50, reduction="none",
                                              precision="bf16-mixed")
    seen.remove()
    assert seen.calls > 0 and seen.bf16 == seen.calls
    # the same draws: per image within bfloat16's rounding of the networks, not bit-identical
    assert not np.array_equal(full, mixed)
    np.testing.assert_allclose(mixed, full, rtol=0, atol=0.05 * float(np.abs(full).mean()))
    assert torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")  # left as found


def test_nll_precision_is_recorded_checked_and_compared_like_with_like():
    torch.manual_seed(0)
    model = tiny("convhvae")
    x = binary_images(40)
    y = torch.arange(40) % 2
    opts = dict(mi=False, nll_samples=10, knn_k=1)
    data = dict(y_test=y[20:], x_train=x[:20], y_train=y[:20])
    full, p_full = evaluate_points(model, x[20:], tm.EvalConfig(**opts), **data)
    mixed, p_mixed = evaluate_points(model, x[20:], tm.EvalConfig(nll_precision="bf16-mixed",
                                                                  **opts), **data)
    assert str(p_full["nll_precision"]) == "full" and str(p_mixed["nll_precision"]) == "bf16-mixed"
    assert mixed["nll"] != full["nll"] and mixed["nll"] == pytest.approx(full["nll"], rel=2e-2)
    assert mixed["recon_error"] == full["recon_error"]  # the other metrics: full precision
    from torchmim.errors import DataError
    from torchmim.experiments.statistics import compare_points

    with pytest.raises(DataError, match="different precisions"):
        compare_points(p_full, p_mixed)
    old = {k: v for k, v in p_full.items() if k != "nll_precision"}  # points written before it
    compare_points(old, p_full)  # both full precision
    with pytest.raises(DataError, match="different precisions"):
        compare_points(p_mixed, old)
    flow = tm.build_model(name="mlp", prior="flow", prior_options={"transforms": 2})
    with pytest.raises(ConfigError, match="precision='bf16-mixed' is not supported with FlowPrior"):
        tm.metrics.importance_sampled_nll(flow, torch.zeros(4, 2), 5, precision="bf16-mixed")
    with pytest.raises(ConfigError, match="eval.nll_precision='bf16-mixed' is not supported"):
        evaluate_points(flow, torch.zeros(8, 2), tm.EvalConfig(nll_precision="bf16-mixed",
                                                               mi=False, nll_samples=5))
    with pytest.raises(ConfigError, match="eval.nll_precision='bf16-mixed' is not supported"):
        tm.RunConfig.from_dict({"model": {"prior": "flow"},
                                "eval": {"nll_precision": "bf16-mixed"}})
    with pytest.raises(ConfigError, match="nll_precision"):
        tm.EvalConfig(nll_precision="half")
