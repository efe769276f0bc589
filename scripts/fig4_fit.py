"""Why Fig. 4's reconstructions are poor: how well each trained decoder fits the 20D mixture.

    python scripts/fig4_fit.py results/fig4-clean results/fig4-constant-lr results/fig4-1000-epochs \\
        --z-dim 2 10 20 --seeds 0 1 2 3 4

For every cell of the given latent sizes and seeds in each sweep folder: the RMSE of the *mean*
reconstruction E[x | z = E[z|x]] on 10,000 test points drawn as the run's data was (standardised
when it was), separately for coordinates 1–2 (the pentagon, spread ~1) and 3–20 (component means
spread over [−50, 50]), each divided by the data's spread on those coordinates (1.0: the decoder
predicts the average), the decoder's mean standard deviation on coordinates 3–20 (same units), the learning rate summed over all optimiser steps (Adam moves a
weight by at most about that much), the epochs trained and the best epoch. Printed as a Markdown
table, mean over the seeds per sweep, objective and latent size.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import torchmim as tm
from torchmim.experiments.tables import read_csv
from torchmim.io import load_model
from torchmim.schedules import lr_warmup_factor
from torchmim.trained import model_file


def lr_sum(row: dict) -> float:
    """Σ over the optimiser steps of the learning rate (per-epoch schedule, steps per epoch)."""
    steps = math.ceil(int(row["data.n_train"]) / int(row["train.batch_size"]))
    lr0, warm = float(row["train.lr"]), int(row["train.warmup_epochs"])
    warmup = row.get("train.lr_schedule") in ("warmup", None)  # the default when absent
    return steps * sum(lr0 * (lr_warmup_factor(e, warm) if warmup else 1.0)
                       for e in range(1, int(row["epochs"]) + 1))


def fit(model, x: torch.Tensor) -> tuple[float, float, float]:
    """Relative mean-reconstruction RMSE on coordinates 1–2 and 3–20, relative decoder std."""
    spread = x.std(0)
    with torch.no_grad():
        z = model.encode(x)
        dist = model.likelihood(z)
        err = ((dist.mean - x) / spread) ** 2
        std = (dist.stddev / spread)[:, 2:].mean()
    return (float(err[:, :2].mean().sqrt()), float(err[:, 2:].mean().sqrt()), float(std))


def test_points(standardize: bool) -> torch.Tensor:
    mix = tm.data.toy.paper_20d_mixture()
    mix = mix.standardized() if standardize else mix
    return torch.as_tensor(mix.sample(10_000, seed=12345)[0], dtype=torch.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--z-dim", nargs="+", type=int, default=[2, 10, 20])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    spread = test_points(False).std(0)
    print(f"data: std of coordinates 1–2 {spread[:2].mean():.2f}, of 3–20 {spread[2:].mean():.1f}; "
          "within-component std 0.25\n")
    table: dict[tuple, list[list[float]]] = defaultdict(list)
    for folder in args.folders:
        if not (folder / "results.csv").is_file():
            raise SystemExit(f"error: {folder / 'results.csv'} does not exist (a finished sweep "
                             "folder has it)")
        for row in read_csv(folder / "results.csv"):
            if row["model.z_dim"] not in args.z_dim or row["seed"] not in args.seeds:
                continue
            model = load_model(model_file(folder / "cells" / row["cell"],
                                          checkpoint_fallback=False)).eval()
            rmse12, rmse320, std320 = fit(model, test_points(bool(row.get("data.standardize"))))
            table[(folder.name, row["objective.name"], row["model.z_dim"])].append(
                [rmse12, rmse320, std320, lr_sum(row), row["epochs"], row["best_epoch"],
                 row["recon_error"]])
    print("| sweep | objective | latent | seeds | rel. RMSE x1–2 | rel. RMSE x3–20 | rel. decoder "
          "std x3–20 | Σ lr | epochs | best epoch | recon. error |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (name, obj, zd), vals in table.items():
        m = np.mean(np.asarray(vals, dtype=float), axis=0)
        print(f"| {name} | {obj} | {zd} | {len(vals)} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | "
              f"{m[3]:.2f} | {m[4]:.0f} | {m[5]:.0f} | {m[6]:.1f} |")


if __name__ == "__main__":
    main()
