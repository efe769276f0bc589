"""The trainer: schedules, early stopping, resume, checkpoints, divergence."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

import torchmim as tm
from torchmim import runs
from torchmim.schedules import beta_warmup, lr_warmup_factor
from torchmim.seeding import derive_seed, seed_everything
from torchmim.training import Callback, ProgressBar, Trainer

from .helpers import tiny


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
    trainer = _trainer(epochs=40, objective="vae", patience=1, lr=0.05, min_steps=0)
    x, _ = _data()
    with pytest.warns(UserWarning, match="early stopping ended training"):  # < FEW_STEPS steps
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
    assert [p.name for p in tmp_path.iterdir() if p.name != ".lock"] == ["checkpoint.pt"]


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


# ------------------------------------------------------------------ early stopping on small data
def test_min_steps_keeps_a_small_data_set_training():
    """124 rows at batch 128 is one gradient step per epoch: with patience in epochs alone the run
    ends after a handful of steps (min_steps=0, the old rule), and says so; the default min_steps
    keeps it going to 200 steps. Fails if min_steps is ignored or the warning is not raised."""
    x, _ = _data(124)
    xv, _ = _data(124, seed=1)
    cfg = dict(epochs=400, batch_size=128, progress=False, warmup_epochs=3, lr=0.05)
    model = tm.MLPModelConfig(hidden=8).build()
    old = Trainer(copy.deepcopy(model), tm.get_objective("vae"), tm.TrainerConfig(min_steps=0, **cfg))
    with pytest.warns(UserWarning, match=r"early stopping ended training at epoch \d+ after only "
                                         r"\d+ gradient steps \(1 per epoch\)"):
        old.fit(x, xv)
    assert old.stopped_early and old.steps == old.epoch < 50
    new = Trainer(copy.deepcopy(model), tm.get_objective("vae"), tm.TrainerConfig(**cfg))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        history = new.fit(x, xv)
    assert new.config.min_steps == 200
    assert new.steps >= 200 and history[-1]["steps"] == new.steps == new.epoch
    assert new.epoch > old.epoch


def test_min_steps_leaves_runs_with_enough_steps_unchanged():
    """40 batches per epoch (the paper's protocol at 5,000 points), warm-up 3 and patience 3: the
    earliest stop, epoch 7, is after 280 ≥ 200 steps, so the default min_steps changes nothing —
    the same history, to the bit, as without the floor. Fails if the default is raised above 280
    for such runs (the fig3 sweep would change) or if min_steps altered anything else."""
    x, _ = _data(320)
    xv, _ = _data(128, seed=1)
    runs_ = []
    for min_steps in (0, 200):
        torch.manual_seed(0)
        model = tm.MLPModelConfig(hidden=8).build()
        cfg = tm.TrainerConfig(epochs=30, batch_size=8, warmup_epochs=3, lr=0.05, progress=False,
                               min_steps=min_steps)
        trainer = Trainer(model, tm.get_objective("vae"), cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            runs_.append((trainer, trainer.fit(x, xv)))
    (a, ha), (b, hb) = runs_
    assert a.stopped_early and a.epoch < 30  # early stopping did fire (else the test shows nothing)
    strip = lambda h: [{k: v for k, v in row.items() if k != "seconds"} for row in h]
    assert strip(ha) == strip(hb)


# ------------------------------------------------------------------ data-dependent initialisation
def _images(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 8, 8, generator=g) > 0.5).float()


class _AtFitStart(Callback):
    """Records the VampPrior pseudo-inputs when training starts (after any initialisation)."""

    def on_fit_start(self, trainer):
        self.pseudo_inputs = trainer.model.prior.pseudo_inputs.detach().clone()


def test_a_fresh_fit_initialises_vampprior_pseudo_inputs_and_a_resume_does_not(tmp_path):
    """The README path Trainer(model, MIM()).fit(x): the pseudo-inputs start as the first training
    images (+ noise), drawn under the trainer's seed; a resumed fit keeps the checkpoint's. Fails if
    fit skips the initialisation, uses other examples or another seed, or re-initialises on resume."""
    x = _images()
    torch.manual_seed(0)
    model = tiny("image-mlp", prior="vampprior")
    expected = copy.deepcopy(model)
    seed_everything(derive_seed(3, "init_from_data"))
    expected.initialize_from_data(x)
    before = model.prior.pseudo_inputs.detach().clone()
    probe = _AtFitStart()
    trainer = Trainer(model, tm.MIM(), tm.TrainerConfig(epochs=1, progress=False, seed=3),
                      callbacks=[probe], out_dir=tmp_path)
    trainer.fit(x)
    assert not torch.allclose(before, probe.pseudo_inputs)
    torch.testing.assert_close(probe.pseudo_inputs, expected.prior.pseudo_inputs, rtol=0, atol=0)
    assert (probe.pseudo_inputs - x[:5]).abs().max() < 0.1  # the first 5 images, plus noise 0.01

    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model_state"]
    probe2 = _AtFitStart()
    resumed = Trainer(tiny("image-mlp", prior="vampprior"), tm.MIM(),
                      tm.TrainerConfig(epochs=2, progress=False, seed=3), callbacks=[probe2],
                      out_dir=tmp_path)
    resumed.fit(x, resume=True)
    assert torch.equal(probe2.pseudo_inputs, saved["prior.pseudo_inputs"])


def test_init_from_data_can_be_turned_off():
    model = tiny("image-mlp", prior="vampprior")
    before = model.prior.pseudo_inputs.detach().clone()
    probe = _AtFitStart()
    Trainer(model, tm.MIM(), tm.TrainerConfig(epochs=1, progress=False, init_from_data=False),
            callbacks=[probe]).fit(_images())
    assert torch.equal(probe.pseudo_inputs, before)


def test_a_run_with_an_init_stage_initialises_once(tmp_path, monkeypatch):
    """Appendix D.4: the first stage initialises from data, the main stage starts from its model."""
    calls = []
    original = Trainer.initialize_from_data

    def counting(self, data):
        calls.append(self.objective.name)
        return original(self, data)

    monkeypatch.setattr(Trainer, "initialize_from_data", counting)
    config = runs.RunConfig.from_dict({
        "model": {"name": "mlp", "hidden": 8}, "objective": {"name": "mim"},
        "data": {"name": "gmm2d", "n_train": 256, "n_val": 128, "n_test": 128},
        "train": {"epochs": 1, "warmup_epochs": 0, "progress": False},
        "eval": {"max_points": 128, "nll_samples": 5, "mi": False},
        "init": {"objective": {"name": "ce"}, "epochs": 1}})
    runs.run(config, tmp_path)
    assert calls == ["ce"]


# ------------------------------------------------------------------ progress bar label, threads
def test_progress_bar_label_is_an_argument():
    trainer = Trainer(tm.MLPModelConfig(hidden=4).build(), tm.MIM(), progress_desc="MIM h=4")
    bars = [c for c in trainer.callbacks if isinstance(c, ProgressBar)]
    assert len(bars) == 1 and bars[0].desc == "MIM h=4"
    assert Trainer(tm.MLPModelConfig(hidden=4).build(), tm.VAE()).callbacks[0].desc == "vae"


class _Threads(Callback):
    def on_epoch_end(self, trainer, epoch, logs):
        self.seen = torch.get_num_threads()


@pytest.mark.parametrize("threads, expected", [(3, 3), (None, 1)])
def test_train_threads_are_applied_during_fit_and_restored(threads, expected):
    """train.threads=3 → 3 inside fit; None → 1 for a small model; the caller's setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        probe = _Threads()
        trainer = _trainer(epochs=1, threads=threads)
        trainer.callbacks.append(probe)
        trainer.fit(_data(128)[0])
        assert probe.seen == expected
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    with pytest.raises(tm.ConfigError, match="train.threads"):
        tm.TrainerConfig(threads=0)
