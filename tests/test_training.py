"""The trainer: schedules, early stopping, resume, checkpoints, divergence."""

from __future__ import annotations

import math

import pytest
import torch

import torchmim as tm
from torchmim.schedules import beta_warmup, lr_warmup_factor
from torchmim.training import Callback


def test_beta_warmup_eq18():
    assert [beta_warmup(e, 3) for e in (1, 2, 3, 4, 50)] == pytest.approx([1 / 3, 2 / 3, 1, 1, 1])
    assert beta_warmup(1, 0) == 1.0


def test_lr_warmup_of_reference_37():
    """lr(e)/lr0 = √3 · min(e·3^−1.5, e^−0.5): linear rise to 1 at e = 3, then ∝ 1/√e."""
    assert [lr_warmup_factor(e, 3) for e in (1, 2, 3)] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert lr_warmup_factor(12, 3) == pytest.approx(math.sqrt(3 / 12))
    assert lr_warmup_factor(7, 0) == 1.0


def _data(n=512, seed=0):
    x, y = tm.paper_2d_mixture().sample(n, seed=seed)
    return x, y


def _trainer(tmp_path=None, epochs=4, objective="mim", **cfg):
    model = tm.MLPModelConfig(hidden=16).build()
    config = tm.TrainerConfig(epochs=epochs, batch_size=64, progress=False, warmup_epochs=2, **cfg)
    return tm.Trainer(model, tm.get_objective(objective), config, out_dir=tmp_path)


class _StopAfter(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    x, _ = _data()
    xv, _ = _data(256, seed=1)
    torch.manual_seed(5)
    full = _trainer(tmp_path / "full", epochs=5, early_stopping=False)
    full.fit(x, xv)

    torch.manual_seed(5)
    first = _trainer(tmp_path / "part", epochs=5, early_stopping=False)
    first.callbacks.append(_StopAfter(2))
    with pytest.raises(KeyboardInterrupt):
        first.fit(x, xv)
    torch.manual_seed(123)  # a different model init: resume must overwrite it from the checkpoint
    second = _trainer(tmp_path / "part", epochs=5, early_stopping=False)
    second.fit(x, xv, resume=True)

    assert second.epoch == full.epoch == 5
    for (n, a), (_, b) in zip(full.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), n
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]
    assert strip(second.history) == strip(full.history)


def test_early_stopping_rule_and_best_model():
    """Stop once the validation loss at β = 1 has not improved for more than `patience` epochs; the
    counter is idle during warm-up; the best-validation weights are restored."""
    trainer = _trainer(epochs=40, objective="vae", patience=1, lr=0.05)
    x, _ = _data()
    history = trainer.fit(x, _data(256, seed=1)[0])
    best = min((h for h in history if h["beta"] >= 1), key=lambda h: h["val_loss"])
    assert trainer.best_epoch == best["epoch"]
    assert trainer.stopped_early
    assert history[-1]["epoch"] == trainer.best_epoch + 2  # patience 1 → 2 epochs without gain
    assert trainer.evaluate_loss(_data(256, seed=1)[0], seed=0) == pytest.approx(
        trainer.evaluate_loss(_data(256, seed=1)[0], seed=0))
    assert all(h["beta"] < 1 for h in history if h["epoch"] < 2)


def test_training_decreases_the_loss():
    trainer = _trainer(epochs=6, early_stopping=False)
    history = trainer.fit(*_data(1024)[:1])
    assert history[-1]["train_loss"] < history[2]["train_loss"]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    x, _ = _data()
    trainer = _trainer(tmp_path, epochs=5, early_stopping=False)

    class _Poison(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 2:
                with torch.no_grad():
                    trainer.model.decoder.network[0].weight.fill_(float("nan"))

    trainer.callbacks.append(_Poison())
    with pytest.raises(tm.TrainingDivergedError, match="epoch 3.*last good checkpoint \\(epoch 2\\)"):
        trainer.fit(x)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model_state"].values())


def test_checkpoints_are_atomic(tmp_path, monkeypatch):
    """A crash while writing leaves the previous checkpoint intact and no stray file."""
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit(_data()[0])
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_bad_training_data_is_named():
    trainer = _trainer(epochs=1)
    x, _ = _data()
    with pytest.raises(tm.DataError, match=r"shape \(64, 3\)"):
        trainer.fit(torch.randn(512, 3))
    x[100, 0] = float("inf")
    with pytest.raises(tm.DataError, match="training data contains Inf.*row 100"):
        trainer.fit(x)
    with pytest.raises(tm.DataError, match="not a numeric array|must be numeric"):
        trainer.fit([["a", "b"]])


def test_fit_accepts_arrays_datasets_and_loaders():
    x, y = _data(256)
    ds = torch.utils.data.TensorDataset(x, y)
    for data in (x.numpy(), (x, y), ds, torch.utils.data.DataLoader(ds, batch_size=32)):
        trainer = _trainer(epochs=1)
        assert len(trainer.fit(data)) == 1


def test_corrupt_or_foreign_checkpoints_are_refused(tmp_path):
    trainer = _trainer(tmp_path, epochs=1)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(tm.CheckpointError, match="corrupt"):
        trainer.fit(_data()[0], resume=True)
    with pytest.raises(tm.CheckpointError, match="not found"):
        trainer.fit(_data()[0], resume=tmp_path / "missing.pt")
    other = _trainer(tmp_path / "b", epochs=1, objective="vae")
    other.fit(_data()[0])
    with pytest.raises(tm.CheckpointError, match="objective"):
        _trainer(tmp_path / "b", epochs=2).fit(_data()[0], resume=True)


def test_cuda_request_without_cuda_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(tm.ConfigError, match="CUDA is not available"):
        _trainer(device="cuda")


def test_max_seconds_stops_between_epochs_and_a_resume_with_more_time_continues(tmp_path):
    """train.max_seconds: the epoch that spends the budget finishes and is checkpointed; a resume
    under the same budget runs nothing more, one without a budget continues to ``epochs``."""
    x, _ = _data()
    xv, _ = _data(256, seed=1)
    first = _trainer(tmp_path, epochs=5, early_stopping=False, max_seconds=1e-9)
    first.fit(x, xv)
    assert first.epoch == 1 and first.out_of_time
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 1
    again = _trainer(tmp_path, epochs=5, early_stopping=False, max_seconds=1e-9)
    again.fit(x, xv, resume=True)
    assert again.epoch == 1
    more = _trainer(tmp_path, epochs=5, early_stopping=False)
    more.fit(x, xv, resume=True)
    assert more.epoch == 5 and len(more.history) == 5
    assert more.elapsed_seconds == pytest.approx(sum(h["seconds"] for h in more.history))
    with pytest.raises(tm.ConfigError, match="max_seconds"):
        tm.TrainerConfig(max_seconds=0)
