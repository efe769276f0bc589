"""One way to plug in a prior: the ``Prior`` contract, the ``PRIORS`` registry (with aliases), every
model's ``prior`` / ``prior_options``, and the migration of models and configs of torchmim 0.1.

The legacy fixtures in ``tests/data/legacy_v0_1`` were written by the code before the priors were
unified (``make_legacy.py`` there); they must keep loading and giving the same numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from scipy.stats import laplace
from torch import nn
from torch.distributions import Independent, Laplace

import torchmim as tm
from torchmim.config import apply_overrides, from_dict, to_dict
from torchmim.distributions import (
    PRIORS,
    GaussianMixture,
    HierarchicalPrior,
    Prior,
    StandardNormal,
    VampPrior,
    build_prior,
)
from torchmim.errors import ConfigError
from torchmim.models import ConvHVAEConfig, ImageMLPConfig, ModelConfig
from torchmim.registry import Registry

from .helpers import binary_images, tiny, tiny_config

LEGACY = Path(__file__).parent / "data" / "legacy_v0_1"
REFERENCE = json.loads((LEGACY / "reference.json").read_text())


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_every_parameter_has_a_gradient(model: nn.Module) -> None:
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


# ============================================================================ legacy models
# what each legacy model's config must read as now
LEGACY_PRIORS = {
    "mlp-gmm": ("gmm", {"num_components": 3}),
    "convhvae-vampprior": ("vampprior", {"num_pseudo_inputs": 5, "noise": 0.01}),
    "convhvae-standard": ("normal", {}),
    "pixelhvae-vampprior": ("vampprior", {"num_pseudo_inputs": 5, "noise": 0.01}),
    "image-mlp-vampprior": ("vampprior", {"num_pseudo_inputs": 5, "noise": 0.01}),
}


@pytest.mark.parametrize("name", sorted(LEGACY_PRIORS))
def test_legacy_models_load_and_give_the_same_numbers(name):
    """A renamed state_dict key would fail the load (CheckpointError); a prior built from the old
    keys with other options (e.g. K = 500 instead of 5) would fail it too (shape mismatch); a prior
    wired differently (e.g. the VampPrior not through q(z2|x)) would change log p(z)."""
    model = tm.load_model(LEGACY / f"{name}.pt").eval()
    ref = REFERENCE[name]
    x = torch.tensor(ref["x"]).reshape(ref["x_shape"])
    with torch.no_grad():
        z = model.encode(x)
        log_pz = model.prior().log_prob(z)
    assert z.flatten().tolist() == pytest.approx(ref["z_mean"], abs=1e-5)
    assert log_pz.tolist() == pytest.approx(ref["log_pz_at_mean"], abs=1e-5)
    prior, options = LEGACY_PRIORS[name]
    assert (model.config.prior, model.config.prior_options) == (prior, options)
    saved = tm.to_dict(model.config)
    assert "num_pseudo_inputs" not in saved and "pseudo_input_noise" not in saved  # the new form


def test_a_seed_builds_the_same_weights_as_torchmim_0_1():
    """make_legacy.py built these models in this order right after torch.manual_seed(0): the new
    code must consume the RNG identically (building the prior in another order, or validating it
    in __post_init__ with the global RNG, would change every weight)."""
    torch.manual_seed(0)
    built = {
        "mlp-gmm": tm.build_model(name="mlp", x_dim=2, z_dim=2, hidden=8, prior="gmm",
                                  prior_options={"num_components": 3}),
        "convhvae-vampprior": tiny("convhvae", prior="vampprior"),
        "convhvae-standard": tiny("convhvae", prior="standard"),
        "pixelhvae-vampprior": tiny("pixelhvae", prior="vampprior"),
        "image-mlp-vampprior": tiny("image-mlp", prior="vampprior"),
    }
    for name, model in built.items():
        saved = torch.load(LEGACY / f"{name}.pt", weights_only=True)["state_dict"]
        state = model.state_dict()
        assert list(state) == list(saved), name
        assert all(torch.equal(state[k], saved[k]) for k in saved), name


def test_legacy_run_configs_load_in_the_new_form():
    config = tm.RunConfig.from_file(LEGACY / "run-convhvae-vampprior.yaml")
    expected = tm.from_dict(tm.ModelConfig, {
        "name": "convhvae", "prior": "vampprior",
        "prior_options": {"num_pseudo_inputs": 20, "noise": 0.01}})
    assert type(config.model) is ConvHVAEConfig and config.model == expected
    # written back in the new form, which reads back to the same config
    data = config.to_dict()
    assert data["model"]["prior_options"] == {"num_pseudo_inputs": 20, "noise": 0.01}
    assert not {"num_pseudo_inputs", "pseudo_input_noise"} & set(data["model"])
    assert tm.RunConfig.from_dict(data) == config
    # the standard prior: the unused VampPrior keys are dropped, "standard" reads as "normal"
    config = tm.RunConfig.from_file(LEGACY / "run-image-mlp-standard.yaml")
    assert config.model == ImageMLPConfig()
    assert (config.model.prior, config.model.prior_options) == ("normal", {})


def test_old_vampprior_keys_move_into_prior_options_and_may_not_contradict_them():
    base = {"name": "image-mlp", "prior": "vampprior"}
    cfg = tm.from_dict(tm.ModelConfig, {**base, "num_pseudo_inputs": 7})
    assert cfg.prior_options == {"num_pseudo_inputs": 7}  # noise keeps the VampPrior's default
    cfg = tm.from_dict(tm.ModelConfig, {**base, "pseudo_input_noise": 0.1,
                                        "prior_options": {"num_pseudo_inputs": 7}})
    assert cfg.prior_options == {"num_pseudo_inputs": 7, "noise": 0.1}
    same = tm.from_dict(tm.ModelConfig, {**base, "num_pseudo_inputs": 7,
                                         "prior_options": {"num_pseudo_inputs": 7}})
    assert same.prior_options == {"num_pseudo_inputs": 7}
    with pytest.raises(ConfigError, match="num_pseudo_inputs"):
        tm.from_dict(tm.ModelConfig, {**base, "num_pseudo_inputs": 7,
                                      "prior_options": {"num_pseudo_inputs": 8}})
    # with any other prior they were unused, and are dropped
    cfg = tm.from_dict(tm.ModelConfig, {"name": "convhvae", "prior": "gmm",
                                        "num_pseudo_inputs": 7, "pseudo_input_noise": 0.1})
    assert cfg.prior_options == {}
    # the hook runs only for the classes that define it: elsewhere the keys are still unknown
    with pytest.raises(ConfigError, match="model.num_pseudo_inputs: unknown key"):
        tm.from_dict(tm.ModelConfig, {"name": "mlp", "num_pseudo_inputs": 7}, where="model")


# ============================================================================ registry
def test_standard_is_an_alias_of_normal():
    assert PRIORS.get("standard") is PRIORS.get("Standard") is StandardNormal
    assert "standard" in PRIORS and "standard" not in PRIORS.names()
    assert "normal" in PRIORS.names() and "vampprior" in PRIORS.names()
    assert PRIORS.name_of(StandardNormal(2)) == "normal"
    assert PRIORS.canonical("standard") == "normal"
    for name in ("convhvae", "pixelhvae", "image-mlp"):
        cfg = tm.from_dict(tm.ModelConfig, {"name": name, "prior": "standard"})
        assert cfg.prior == "normal" and tm.to_dict(cfg)["prior"] == "normal"
    assert tm.from_dict(tm.ModelConfig, {"name": "mlp", "prior": "standard"}).prior == "normal"


def test_registry_aliases_are_checked():
    reg: Registry[type] = Registry("thing")
    reg.register("new", int)
    reg.alias("old", "new")
    assert reg.get("OLD") is int and reg.names() == ["new"] and reg.name_of(3) == "new"
    reg.alias("old", "new")  # the same alias twice is harmless
    with pytest.raises(ConfigError, match="no thing 'nothing'"):
        reg.alias("x", "nothing")
    reg.register("other", str)
    with pytest.raises(ConfigError, match="already registered"):
        reg.alias("old", "other")  # an alias cannot be repointed silently
    with pytest.raises(ConfigError, match="already registered"):
        reg.alias("other", "new")  # nor shadow a registered name
    with pytest.raises(ConfigError, match="alias"):
        reg.register("old", float)
    with pytest.raises(ConfigError, match="Did you mean 'new'.*old -> new"):
        reg.get("olf")  # a typo of an alias suggests the registered name


# ============================================================================ config errors
@pytest.mark.parametrize("name", ["convhvae", "pixelhvae", "image-mlp", "mlp"])
def test_an_unknown_prior_is_a_one_line_config_error_naming_the_key(name):
    with pytest.raises(ConfigError) as e:
        tm.from_dict(tm.ModelConfig, {"name": name, "prior": "vamprior"})
    message = str(e.value)
    assert message.startswith("model.prior: unknown prior 'vamprior'")
    assert "Did you mean 'vampprior'?" in message and "\n" not in message


@pytest.mark.parametrize(("options", "match"), [
    ({"num_component": 3}, r"model.prior_options.num_component: .*Did you mean 'num_components'"),
    ({"num_components": 3, "means": [[0.0, 0.0]]}, r"model.prior_options: prior 'gmm': means"),
    ([3], r"model.prior_options: expected a mapping"),
])
def test_bad_prior_options_are_config_errors_when_the_config_is_read(options, match):
    """Names are checked against the prior's signature, values by building it once (with the RNG
    state restored: see test_a_seed_builds_the_same_weights_as_torchmim_0_1)."""
    with pytest.raises(ConfigError, match=match) as e:
        tm.from_dict(tm.ModelConfig, {"name": "convhvae", "prior": "gmm", "prior_options": options},
                     where="model")
    assert "\n" not in str(e.value)


def test_prior_options_are_checked_against_the_chosen_prior():
    # the VampPrior's options do not belong to N(0, I); K = 0 is caught before any build
    with pytest.raises(ConfigError, match="num_pseudo_inputs: not an option of prior 'normal'"):
        tm.from_dict(tm.ModelConfig, {"name": "image-mlp",
                                      "prior_options": {"num_pseudo_inputs": 3}})
    with pytest.raises(ConfigError, match="model.prior_options: prior 'vampprior': num_pseudo"):
        tm.from_dict(tm.ModelConfig, {"name": "pixelhvae", "prior": "vampprior",
                                      "prior_options": {"num_pseudo_inputs": 0}})
    with pytest.raises(ConfigError, match="model.data_prior_options.num_sample"):
        tm.from_dict(tm.ModelConfig, {"name": "mlp", "data_prior_options": {"num_sample": 3}})


def test_vampprior_defaults_live_in_the_prior_and_need_the_observation_shape():
    prior = build_prior("vampprior", 4, {}, x_shape=(1, 3, 3))
    assert isinstance(prior, VampPrior) and prior.num_pseudo_inputs == 500 and prior.noise == 0.01
    assert prior.pseudo_inputs.shape == (500, 1, 3, 3) and prior.latent_shape == (4,)
    model = build_model_with_prior("image-mlp", "vampprior", {"num_pseudo_inputs": 20})
    assert model.prior.num_pseudo_inputs == 20
    with pytest.raises(ConfigError, match="x_shape"):
        VampPrior.from_config(4)


def build_model_with_prior(name: str, prior: str, options: dict) -> tm.LatentVariableModel:
    return tm.build_model(tiny_config(name, prior=prior, prior_options=options))


# ========================================================================== any prior, any model
@pytest.mark.parametrize("name", ["image-mlp", "convhvae"])
def test_a_gmm_prior_set_from_the_command_line_trains(name):
    """``-s model.prior=gmm -s model.prior_options.num_components=3``: the registry's GMM is p(z)
    (image-mlp) or p(z2) below a p(z1|z2) network (convhvae), and one symmetric-MIM step sends a
    gradient to every parameter — a prior left out of the model (or its parameters not registered)
    would have no gradient, and a GMM whose learnable weights were silently "reparameterised"
    would lose theirs (its samples go through REINFORCE instead)."""
    data = apply_overrides({"model": tiny_config(name)},
                           ["model.prior=gmm", "model.prior_options.num_components=3"])
    config = tm.RunConfig.from_dict(data)
    assert config.model.prior == "gmm" and config.model.prior_options == {"num_components": 3}
    torch.manual_seed(0)
    model = config.model.build()
    gmm = model.prior if name == "image-mlp" else model.prior.top
    assert isinstance(gmm, GaussianMixture) and gmm.num_components == 3
    assert gmm.loc.shape == (3, 3 if name == "image-mlp" else 2)  # over z, or over z2 only
    if name == "convhvae":
        assert isinstance(model.prior, HierarchicalPrior)
        assert {k for k in model.state_dict() if k.startswith("prior.top")} == {
            "prior.top.loc", "prior.top.logvar", "prior.top.logits"}
    x = binary_images(8)
    model.initialize_from_data(x)  # a no-op for a GMM, but must not fail
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = tm.MIM()(model, x, 1.0)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert_every_parameter_has_a_gradient(model)
    opt.step()
    assert all(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_initialize_from_data_reaches_a_vampprior_inside_a_hierarchical_prior_once(monkeypatch):
    """The model calls the hook on every submodule; the hierarchical prior must not forward it too
    (a second call would redraw the pseudo-input noise and shift the RNG)."""
    model = tiny("convhvae", prior="vampprior")
    calls = []
    original = VampPrior.initialize_from_data
    monkeypatch.setattr(VampPrior, "initialize_from_data",
                        lambda self, x: calls.append(1) or original(self, x))
    x = binary_images(5)
    model.initialize_from_data(x)
    assert len(calls) == 1
    assert torch.allclose(model.prior.top.inputs(), x, atol=0.1)  # initialised from the data
    normal = tiny("convhvae")
    state = {k: v.clone() for k, v in normal.state_dict().items()}
    normal.initialize_from_data(x)  # Prior's default hook: nothing changes
    assert all(torch.equal(v, normal.state_dict()[k]) for k, v in state.items())


# ============================================================================ the contract
def test_prior_is_an_abstract_base_class():
    with pytest.raises(TypeError, match="abstract"):
        Prior()

    class NoForward(Prior):
        pass

    with pytest.raises(TypeError, match="forward"):
        NoForward()


class LaplacePrior(Prior):
    """The custom prior of the docs (docs/design.md, "Adding a prior"): factorised Laplace(0, b)
    with a learnable scale b; Laplace's rsample is exact and pathwise."""

    def __init__(self, shape: int, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.full((shape,), math.log(scale)))

    def forward(self) -> Independent:
        return Independent(Laplace(self.loc, self.log_scale.exp()), 1)


@pytest.fixture
def laplace_registered():
    PRIORS.register("test-laplace", LaplacePrior)
    yield "test-laplace"
    del PRIORS._entries["test-laplace"]  # keep the global registry as the other tests expect


@pytest.mark.parametrize("objective", ["mim", "vae"])
def test_a_custom_prior_works_by_name(laplace_registered, objective, float64, tmp_path):
    model = tm.build_model(name="mlp", x_dim=2, z_dim=2, hidden=8, prior=laplace_registered,
                           prior_options={"scale": 0.5})
    assert isinstance(model.prior, LaplacePrior) and model.config.prior == "test-laplace"
    z = torch.randn(5, 2)
    expected = laplace.logpdf(z.numpy(), scale=0.5).sum(-1)  # the model uses this prior's density
    assert model.prior().log_prob(z).detach().numpy() == pytest.approx(expected, rel=1e-12)
    x = torch.randn(16, 2)
    out = tm.get_objective(objective)(model, x, 1.0)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.prior.log_scale.grad is not None and model.prior.log_scale.grad.abs().sum() > 0
    assert_every_parameter_has_a_gradient(model)
    # saved by name, rebuilt from the registry
    tm.save_model(model, tmp_path / "m.pt")
    loaded = tm.load_model(tmp_path / "m.pt")
    assert isinstance(loaded.prior, LaplacePrior)
    assert torch.equal(loaded.prior.log_scale, model.prior.log_scale)
    # its options are checked like the built-in ones
    with pytest.raises(ConfigError, match="Did you mean 'scale'"):
        tm.build_model(name="mlp", prior=laplace_registered, prior_options={"scal": 0.5})


@pytest.mark.parametrize("name", ["convhvae", "pixelhvae", "image-mlp"])
def test_image_models_take_a_latent_anchor_like_the_mlp(name):
    """`latent_anchor` has the same keys on every model: with `normal`, symmetric MIM's decoder
    path samples a fixed N(0, I) over the whole z instead of the learned prior (docs/flow.md: a
    flow prior MIM samples itself can shrink with the encoder). Fails if the image configs drop
    the field, build the anchor over z2 only, or leave MIM sampling p(z)."""
    cfg = from_dict(ModelConfig, tiny_config(name, prior="flow", latent_anchor="normal"))
    model = cfg.build()
    z_dim = model.z_shape[0]
    anchor = model.anchor()
    assert anchor.event_shape == (z_dim,) and anchor is not model.prior
    z = anchor.sample((20000,))
    assert z.mean(0).abs().max() < 0.05 and (z.std(0) - 1).abs().max() < 0.05
    # the default stays the paper's: P(z) = p(z), and old configs (no key) load with it
    assert tiny(name).latent_anchor is None
    again = from_dict(ModelConfig, to_dict(cfg), where="model")
    assert again.latent_anchor == "normal"
    with pytest.raises(ConfigError, match=r"model\.latent_anchor: unknown prior 'nromal'"):
        from_dict(ModelConfig, tiny_config(name, latent_anchor="nromal"))
