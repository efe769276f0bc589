"""CUDA paths: the same training, evaluation, checkpoints and sampling on a GPU.

Skipped where there is no GPU (CI has none); run on a GPU machine with
``python -m pytest tests/test_cuda.py``. Each test compares the GPU against the CPU or against a
property that must hold on any device (finite, in the right place, reproducible under a seed).
``TORCHMIM_TEST_DEVICE=cpu`` runs the same tests on the CPU (a dry run of the test code itself).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

import torchmim as tm
from torchmim.data.idx import write_idx

from .helpers import tiny

DEVICE = os.environ.get("TORCHMIM_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                reason="needs a CUDA GPU")

ARCHS = ["convhvae", "pixelhvae", "image-mlp"]


def _images(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.bernoulli(torch.full((n, 1, 8, 8), 0.3), generator=g)


def _toy_config(**train) -> tm.RunConfig:
    return tm.RunConfig.from_dict({
        "model": {"hidden": 50}, "objective": {"name": "mim"},
        "data": {"n_train": 3000, "n_val": 1000, "n_test": 1000},
        "train": {"epochs": 6, "progress": False, "device": DEVICE, **train},
        "eval": {"nll_samples": 50}, "seed": 1})


def test_auto_device_picks_the_gpu():
    assert tm.training.resolve_device("auto").type == torch.device(DEVICE).type


def test_toy_run_trains_and_evaluates_on_the_gpu(tmp_path):
    result = tm.run(_toy_config(epochs=25), tmp_path / "run")
    assert next(result.model.parameters()).device.type == torch.device(DEVICE).type
    m = result.metrics
    for key in ("mi", "nll", "recon_rmse", "knn_acc"):
        assert math.isfinite(m[key]), key
    assert m["mi"] > 1.0 and m["knn_acc"] > 0.5  # MIM learns informative codes on the GPU too
    # the saved model loads on the CPU (map_location) and gives the same posterior means
    cpu = tm.load_model(tmp_path / "run" / "model.pt")
    assert next(cpu.parameters()).device.type == "cpu"
    x, _ = tm.paper_2d_mixture().sample(64, seed=1)
    with torch.no_grad():
        torch.testing.assert_close(cpu.encode(x), result.model.encode(x.to(DEVICE)).cpu(),
                                   rtol=1e-4, atol=1e-5)


def test_resume_on_the_gpu_reproduces_the_uninterrupted_run(tmp_path):
    """Seeded epochs make a resumed GPU run continue exactly (up to GPU reduction order)."""
    full = tm.run(_toy_config(early_stopping=False), tmp_path / "full")
    tm.run(_toy_config(early_stopping=False, epochs=3), tmp_path / "part")
    resumed = tm.run(_toy_config(early_stopping=False), tmp_path / "part", resume=True)
    assert [h["epoch"] for h in resumed.history] == list(range(1, 7))
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4, abs=1e-5)
    for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("objective", ["mim", "amim", "vae"])
def test_image_objectives_run_on_the_gpu_and_reach_every_parameter(name, objective):
    """Posterior, prior and likelihood densities agree with the CPU (float64, eval mode); a training
    step of each objective runs on the GPU and sends gradients to every parameter."""
    torch.manual_seed(0)
    model = tiny(name, prior="vampprior").double()
    x = _images(8).double()
    model.initialize_from_data(x)
    model.eval()  # batch-norm with running statistics: the same function on both devices
    values = []
    for device in ("cpu", DEVICE):
        m = model.to(device)
        xd = x.to(device)
        with torch.no_grad():
            q = m.posterior(xd)
            z = q.mean
            values.append([t.cpu() for t in (z, q.log_prob(z), m.prior().log_prob(z),
                                             m.likelihood(z).log_prob(xd))])
    for a, b in zip(*values, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    model.train().to(DEVICE)
    out = tm.get_objective(objective)(model, x.to(DEVICE), 1.0)
    assert out.loss.device.type == torch.device(DEVICE).type and torch.isfinite(out.loss)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


@pytest.mark.parametrize("name", ARCHS)
def test_image_nll_and_metrics_on_the_gpu_match_the_cpu(name):
    """IS-NLL with common random numbers: the GPU estimate is close to the CPU one (float64)."""
    torch.manual_seed(0)
    model = tiny(name, prior="vampprior").double()
    x = _images(12).double()
    model.initialize_from_data(x)
    model.eval()
    cpu = tm.metrics.importance_sampled_nll(model, x, num_samples=200, seed=5)
    gpu = tm.metrics.importance_sampled_nll(model.to(DEVICE), x.to(DEVICE), num_samples=200, seed=5)
    assert math.isfinite(gpu) and gpu > 0
    # different RNG streams on the two devices: agreement within the Monte-Carlo error
    assert gpu == pytest.approx(cpu, rel=0.05)
    y = torch.arange(12) % 2
    m = tm.metrics.evaluate(model, x.to(DEVICE), y, x_train=x.to(DEVICE), y_train=y, mi=False,
                            nll_samples=10)
    assert {"nll", "knn_acc", "recon_rmse"} <= m.keys() and all(
        math.isfinite(m[k]) for k in ("nll", "knn_acc", "recon_rmse"))


@pytest.mark.parametrize("name", ARCHS)
def test_sampling_stays_on_the_gpu(name):
    model = tiny(name, prior="vampprior").to(DEVICE).eval()
    with torch.no_grad():
        x = model.sample(3)
        z = model.encode(_images(3).to(DEVICE))
        r = model.reconstruct(_images(3).to(DEVICE))
    assert x.device.type == z.device.type == r.device.type == torch.device(DEVICE).type
    assert x.shape == r.shape == (3, 1, 8, 8) and set(x.unique().tolist()) <= {0.0, 1.0}


def test_image_run_on_the_gpu_from_idx_files(tmp_path):
    """A whole image run (data set from IDX files, VampPrior convHVAE, MIM) trains and evaluates
    on the GPU, under a time budget (train.max_seconds)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for split, n in (("train", 300), ("t10k", 100)):
        write_idx(folder / f"{split}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz",
                  rng.integers(0, 10, n, dtype=np.uint8))
    cfg = tm.RunConfig.from_dict({
        "model": {"name": "convhvae", "prior": "vampprior", "num_pseudo_inputs": 20},
        "objective": {"name": "mim"},
        "data": {"name": "fashion-mnist", "root": str(folder), "n_val": 100, "n_train_eval": 200},
        "train": {"epochs": 50, "batch_size": 100, "progress": False, "device": DEVICE,
                  "warmup_epochs": 1, "max_seconds": 1e-6},
        "eval": {"mi": False, "nll_samples": 10, "max_points": 100}, "seed": 0})
    result = tm.run(cfg, tmp_path / "run")
    assert result.metrics["epochs"] == 1  # the time budget stopped it after the first epoch
    assert math.isfinite(result.metrics["nll"]) and result.metrics["nll"] > 0
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


@pytest.mark.parametrize("name", ARCHS)
def test_bf16_mixed_training_on_the_gpu_keeps_densities_in_float32(name):
    """train.precision="bf16-mixed" on the GPU: autocast("cuda", bfloat16) around each step, the
    parameters and every log-density in float32, the first epoch's loss within bfloat16's
    rounding of the full-precision one (same weights, data and seed)."""
    x = _images(64)
    losses = {}
    for precision in ("full", "bf16-mixed"):
        torch.manual_seed(0)
        model = tiny(name)
        trainer = tm.Trainer(model, "mim" if name != "pixelhvae" else "amim", tm.TrainerConfig(
            epochs=1, batch_size=32, progress=False, device=DEVICE, precision=precision))
        trainer.fit(x)
        assert all(p.dtype == torch.float32 and p.device.type == torch.device(DEVICE).type
                   for p in model.parameters())
        losses[precision] = trainer.history[0]["train_loss"]
    assert math.isfinite(losses["bf16-mixed"])
    assert losses["bf16-mixed"] == pytest.approx(losses["full"], rel=2e-2)
