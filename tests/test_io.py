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
    # integers are numbers (cast as Trainer.fit casts them); complex numbers are refused
    assert torch.equal(model.encode(torch.ones(4, 2, dtype=torch.long)), model.encode(x * 0 + 1))
    with pytest.raises(tm.DataError, match="floating-point"):
        model.encode(torch.ones(4, 2, dtype=torch.complex64))


# ------------------------------------------------------------------ the training checkpoint (io.py)
def test_a_trainer_checkpoint_loads_as_a_model_and_is_validated_by_io(tmp_path):
    """The trainer writes its checkpoint with io.checkpoint_to_dict and reads it with
    io.read_checkpoint; load_model gives its best weights. Fails if the trainer and io disagree on
    the layout (a key renamed on one side) or if a damaged file gives anything but a one-line
    CheckpointError."""
    from torchmim import io

    x = torch.randn(256, 2)
    trainer = tm.Trainer(tm.MLPModelConfig(hidden=6).build(), tm.MIM(),
                         tm.TrainerConfig(epochs=2, progress=False, warmup_epochs=0),
                         out_dir=tmp_path)
    trainer.fit(x)
    path = tmp_path / "checkpoint.pt"
    ckpt = io.read_checkpoint(path)
    assert ckpt["format"] == io.CHECKPOINT_FORMAT and set(io.CHECKPOINT_KEYS) <= set(ckpt)
    loaded = tm.load_model(path)
    assert loaded.config == trainer.model.config
    assert torch.equal(loaded.encode(x), trainer.model.encode(x))  # the best (restored) weights

    def refused(data, match):
        bad = tmp_path / "bad.pt"
        torch.save(data, bad)
        for reader in (io.read_checkpoint, tm.load_model):
            with pytest.raises(tm.CheckpointError, match=match) as err:
                reader(bad)
            assert "\n" not in str(err.value)

    refused({"weights": torch.zeros(2)}, "not a torchmim")
    refused({**ckpt, "version": io.FORMAT_VERSION + 1}, "newer torchmim")
    refused({k: v for k, v in ckpt.items() if k != "optimizer"}, r"missing \['optimizer'\]")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(tm.CheckpointError, match="corrupt") as err:
        io.read_checkpoint(path)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ the user-facing maps
def test_maps_accept_array_likes_and_return_float32_without_gradients():
    """float64 NumPy / lists in → the model's float32 tensors out, equal to the tensor path, with no
    autograd graph; grad=True keeps one. Fails on a raw torch dtype error or a grad_fn."""
    import numpy as np

    torch.manual_seed(0)
    model = tm.MLPModelConfig(hidden=8, z_dim=3).build()
    x64 = np.random.default_rng(0).standard_normal((10, 2))
    x32 = torch.as_tensor(x64, dtype=torch.float32)
    for data in (x64, x64.tolist(), torch.as_tensor(x64)):
        z = model.encode(data)
        assert z.dtype == torch.float32 and z.grad_fn is None and not z.requires_grad
        assert torch.equal(z, model.encode(x32))
        assert torch.equal(model.reconstruct(data), model.reconstruct(x32))
    assert torch.equal(model.decode(model.encode(x64).double().numpy()), model.decode(model.encode(x32)))
    assert model.sample(4).grad_fn is None
    assert model.encode(x32, grad=True).grad_fn is not None
    assert model.encode(x32, sample=True, grad=True).grad_fn is not None  # reparameterised


def test_maps_batch_large_inputs_and_restore_the_mode():
    """Batches of 3 give what one batch gives; eval mode inside, the caller's mode after."""
    torch.manual_seed(0)
    model = tm.MLPModelConfig(hidden=8).build().train()
    x = torch.randn(10, 2)
    torch.testing.assert_close(model.encode(x, batch_size=3), model.encode(x))  # up to BLAS order
    torch.manual_seed(1)
    a = model.reconstruct(x, sample=True, batch_size=3)
    torch.manual_seed(1)
    b = model.reconstruct(x, sample=True, batch_size=3)
    assert torch.equal(a, b) and a.shape == (10, 2)
    assert model.training


def test_maps_check_their_input():
    model = tm.MLPModelConfig(hidden=8).build()
    with pytest.raises(tm.DataError, match=r"x has shape \(4, 3\).*expects \(batch, 2\)"):
        model.encode(torch.randn(4, 3).numpy())
    bad = [[0.0, 1.0], [float("nan"), 0.0]]
    with pytest.raises(tm.DataError, match="NaN or Inf in 1 row.*row 1"):
        model.reconstruct(bad)
    with pytest.raises(tm.DataError, match="not a numeric array"):
        model.encode([["a", "b"]])
    with pytest.raises(tm.DataError, match="floating-point"):
        model.encode(torch.ones(4, 2, dtype=torch.complex64).numpy())
