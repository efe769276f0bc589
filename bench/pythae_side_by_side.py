"""One toy model alone: torchmim's ``Trainer`` against Pythae's VAE trainer, side by side (issue 11).

Pythae is not a dependency of torchmim; run this in an environment that has both:

    python3 -m venv /tmp/pyvenv && /tmp/pyvenv/bin/pip install torch==2.13.0 && \
        /tmp/pyvenv/bin/pip install pythae zuko click pyyaml tqdm matplotlib pillow
    PYTHONPATH=src /tmp/pyvenv/bin/python bench/pythae_side_by_side.py --out /tmp/pythae.json

The same data (the paper's 2-D mixture: 10,000 training and 2,000 validation points), the same
network (2 → width tanh → latent 2, and back), batch 128, Adam at lr 1e-3, a validation pass every
epoch, no early stopping, one torch thread, in one process, interleaved rounds (the order flips every
round). Pythae trains its ``VAE`` with its ``BaseTrainer`` (MSE reconstruction, i.e. a Gaussian
decoder of fixed variance); torchmim trains its VAE objective with its ``Trainer`` (a Gaussian decoder
that also regresses its log-variance: 4 outputs instead of 2) and, for the second row, MIM (two
paths per step). Reported: training samples/s (epochs × 10,000 / seconds of the whole ``fit``) and
the ratio torchmim / Pythae (> 1: torchmim faster).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from pythae.data.datasets import BaseDataset
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.trainers import BaseTrainer, BaseTrainerConfig
from torch import nn

import torchmim as tm
from torchmim.training import Trainer, TrainerConfig

N_TRAIN, N_VAL, BATCH = 10_000, 2_000, 128


class Encoder(BaseEncoder):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(2, width), nn.Tanh())
        self.mean, self.log_var = nn.Linear(width, 2), nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.hidden(x)
        return ModelOutput(embedding=self.mean(h), log_covariance=self.log_var(h))


class Decoder(BaseDecoder):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, 2))

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=self.net(z))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    mix = tm.paper_2d_mixture()
    return (torch.as_tensor(mix.sample(N_TRAIN, seed=0)[0], dtype=torch.float32),
            torch.as_tensor(mix.sample(N_VAL, seed=1)[0], dtype=torch.float32))


def pythae_fit(width: int, epochs: int, x: torch.Tensor, v: torch.Tensor) -> float:
    model = VAE(VAEConfig(input_dim=(2,), latent_dim=2, reconstruction_loss="mse"),
                encoder=Encoder(width), decoder=Decoder(width))
    with tempfile.TemporaryDirectory() as out:
        cfg = BaseTrainerConfig(output_dir=out, num_epochs=epochs, learning_rate=1e-3,
                                per_device_train_batch_size=BATCH,
                                per_device_eval_batch_size=1024, no_cuda=True, steps_saving=None)
        trainer = BaseTrainer(model, BaseDataset(x, torch.zeros(len(x))),
                              BaseDataset(v, torch.zeros(len(v))), training_config=cfg)
        sink = io.StringIO()  # its progress bars and log lines (still drawn, not shown)
        start = time.perf_counter()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            trainer.train()
        return epochs * N_TRAIN / (time.perf_counter() - start)


def torchmim_fit(objective: str, width: int, epochs: int, x: torch.Tensor, v: torch.Tensor) -> float:
    model = tm.MLPModelConfig(hidden=width).build()
    cfg = TrainerConfig(epochs=epochs, batch_size=BATCH, warmup_epochs=0, lr_schedule="constant",
                        early_stopping=False, progress=False, threads=1)
    start = time.perf_counter()
    Trainer(model, tm.get_objective(objective), cfg).fit(x, v)
    return epochs * N_TRAIN / (time.perf_counter() - start)


def interleave(contestants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {name: [] for name in contestants}
    for r in range(rounds):
        names = list(contestants) if r % 2 == 0 else list(reversed(contestants))
        for name in names:
            rates[name].append(contestants[name]())
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", type=int, nargs="+", default=[20, 500])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None, help="write the numbers as JSON")
    a = p.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("pythae").setLevel(logging.WARNING)
    import pythae

    x, v = data()
    rows = []
    print(f"torch {torch.__version__}, pythae {pythae.__version__ if hasattr(pythae, '__version__') else '?'}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, 1 thread")
    print("| width | Pythae VAE | torchmim VAE | torchmim MIM | VAE ratio | MIM ratio | load |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for width in a.widths:
        l0 = "/".join(f"{u:.1f}" for u in os.getloadavg())
        rates = interleave({
            "pythae_vae": lambda w=width: pythae_fit(w, a.epochs, x, v),
            "torchmim_vae": lambda w=width: torchmim_fit("vae", w, a.epochs, x, v),
            "torchmim_mim": lambda w=width: torchmim_fit("mim", w, a.epochs, x, v),
        }, a.rounds)
        med = {k: statistics.median(r) for k, r in rates.items()}
        row = {"width": width, **med, "rates": rates,
               "vae_ratio": med["torchmim_vae"] / med["pythae_vae"],
               "mim_ratio": med["torchmim_mim"] / med["pythae_vae"],
               "load": f"{l0} → " + "/".join(f"{u:.1f}" for u in os.getloadavg())}
        rows.append(row)
        print(f"| {width} | {med['pythae_vae']:,.0f} | {med['torchmim_vae']:,.0f} | "
              f"{med['torchmim_mim']:,.0f} | {row['vae_ratio']:.2f} | {row['mim_ratio']:.2f} | "
              f"{row['load']} |", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"rows": rows, "epochs": a.epochs, "rounds": a.rounds,
                       "np": np.__version__}, f, indent=2)


if __name__ == "__main__":
    main()
