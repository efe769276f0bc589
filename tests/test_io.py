"""Saving and loading models by registry name + config + weights."""

from __future__ import annotations

import pytest
import torch

import torchmim as tm


def test_save_load_round_trip(tmp_path):
    model = tm.MLPModelConfig(hidden=7, prior="gmm", prior_options={"num_components": 3}).build()
    path = tmp_path / "m.pt"
    tm.save_model(model, path)
    loaded = tm.load_model(path)
    assert loaded.config == model.config
    x = torch.randn(5, 2)
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert torch.equal(loaded.decode(loaded.encode(x)), model.decode(model.encode(x)))
    data = torch.load(path, weights_only=True)  # no pickled code: plain data only
    assert data["model"]["name"] == "mlp" and data["model"]["hidden"] == 7


def test_hand_assembled_models_explain_how_to_save():
    from torchmim.networks import MLP

    model = tm.LatentVariableModel(tm.ConditionalGaussian(MLP(2, 4)), tm.ConditionalGaussian(MLP(2, 4)),
                                   tm.StandardNormal(2), x_shape=2, z_shape=2)
    with pytest.raises(tm.ConfigError, match="assembled by hand"):
        tm.save_model(model, "x.pt")


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(tm.CheckpointError, match="not found"):
        tm.load_model(tmp_path / "missing.pt")
    trunc = tmp_path / "trunc.pt"
    tm.save_model(tm.MLPModelConfig(hidden=4).build(), trunc)
    trunc.write_bytes(trunc.read_bytes()[:100])
    with pytest.raises(tm.CheckpointError, match="corrupt"):
        tm.load_model(trunc)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(tm.CheckpointError, match="not a torchmim model"):
        tm.load_model(other)


def test_model_methods_and_shapes():
    model = tm.MLPModelConfig(hidden=8, z_dim=3).build()
    x = torch.randn(4, 2)
    assert model.encode(x).shape == (4, 3) and model.encode(x, sample=True).shape == (4, 3)
    assert model.reconstruct(x).shape == (4, 2)
    xs, zs = model.sample(6, return_latent=True)
    assert xs.shape == (6, 2) and zs.shape == (6, 3)
    z = model.encode(x)
    assert model.log_p_joint(x, z).shape == (4,)
    assert model.log_q_joint(x, z).shape == (4,)
    with pytest.raises(tm.DataError, match=r"z has shape \(4, 2\)"):
        model.decode(torch.randn(4, 2))
    with pytest.raises(tm.DataError, match="floating-point"):
        model.encode(torch.ones(4, 2, dtype=torch.long))
