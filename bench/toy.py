"""Toy training throughput: one model at a time (the plain Trainer loop) against vectorised groups.

    python bench/toy.py                                  # MIM and VAE, widths 5/50/500, groups 10/20/160
    python bench/toy.py --out /tmp/toy.json              # also write the numbers as JSON
    python bench/toy.py --widths 50 --groups 20 --no-sweep   # a quick look
    python bench/toy.py --sweep-workers 2                # the fig3 --quick sweep with 2 workers

For every objective and width it measures, in one process and interleaved (the plain loop before
and after the groups, so that a change of machine load shows as a spread between the two):

* ``alone``: ``Trainer.fit`` of a few models one after the other (the one-model-at-a-time loop),
* ``group M``: ``VectorizedTrainer.fit`` of M models at once,

as training samples per second (members × epochs × points / seconds; every epoch also takes the
validation loss, as in the paper's protocol). Then the wall-clock of ``torchmim sweep fig3 --quick``
with and without ``--vectorize`` (training and evaluation; the ``train_seconds`` and
``eval_seconds`` sums of its results.csv show which dominates). ``--protocol-widths 5 50`` also
trains, at the paper's full protocol (10,000 fresh points per epoch, up to 200 epochs, early
stopping), the 20 fig3 runs of each width (MIM and VAE × 10 seeds) as one group, against the same
width's MIM and VAE seed-0 runs alone (× 10 for the plain loop's estimate); training only, no
evaluation. ``os.getloadavg()`` is printed with
every measurement: on a shared machine, compare ratios measured side by side, not absolute rates.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import torchmim as tm
from torchmim.training import Trainer, TrainerConfig, VectorizedTrainer


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def data(seed: int, n: int, n_val: int) -> tuple[torch.Tensor, torch.Tensor]:
    mix = tm.paper_2d_mixture()
    return mix.sample(n, seed=seed)[0], mix.sample(n_val, seed=10_000 + seed)[0]


def alone(objective: str, width: int, runs: int, cfg: TrainerConfig, n: int, n_val: int) -> float:
    """Samples/s of ``runs`` plain Trainer fits, one after the other."""
    sets = [data(s, n, n_val) for s in range(runs)]
    models = [tm.MLPModelConfig(hidden=width).build() for _ in range(runs)]
    start = time.perf_counter()
    for s, (model, (x, v)) in enumerate(zip(models, sets)):
        Trainer(model, tm.get_objective(objective), dataclasses.replace(cfg, seed=s)).fit(x, v)
    return runs * cfg.epochs * n / (time.perf_counter() - start)


def grouped(objective: str, width: int, m: int, cfg: TrainerConfig, n: int, n_val: int) -> float:
    """Samples/s of one VectorizedTrainer fit of ``m`` models."""
    sets = [data(s, n, n_val) for s in range(m)]
    models = [tm.MLPModelConfig(hidden=width).build() for _ in range(m)]
    vt = VectorizedTrainer(models, tm.get_objective(objective), cfg, seeds=list(range(m)))
    start = time.perf_counter()
    vt.fit([x for x, _ in sets], [v for _, v in sets])
    return m * cfg.epochs * n / (time.perf_counter() - start)


def sweep(vectorize: bool, workers: int) -> dict:
    """Wall-clock of ``torchmim sweep fig3 --quick`` in a fresh folder, and its time sums."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fig3"
        cmd = [sys.executable, "-m", "torchmim", "sweep", "fig3", "--quick", "--out", str(out),
               "--workers", str(workers), "--no-progress",
               "--vectorize" if vectorize else "--no-vectorize"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        wall = time.perf_counter() - start
        rows = list(csv.DictReader((out / "results.csv").open()))
    return {"vectorize": vectorize, "workers": workers, "cells": len(rows), "wall_s": wall,
            "train_s_sum": sum(float(r["train_seconds"]) for r in rows),
            "eval_s_sum": sum(float(r["eval_seconds"]) for r in rows),
            "mi_mean_mim": _mean(rows, "mim", "mi"), "mi_mean_vae": _mean(rows, "vae", "mi"),
            "loadavg": load(), "command": " ".join(cmd[1:])}


def protocol(width: int) -> dict:
    """The fig3 runs of one width at the paper's protocol: one group of 20 against MIM and VAE
    seed 0 alone (training only; data and initial weights seeded as ``run()`` seeds them)."""
    from torchmim.experiments import expand, get_sweep
    from torchmim.seeding import derive_seed, seed_everything

    cells = [c for c in expand(get_sweep("fig3")) if c.config.model.hidden == width]

    def prepare(config):
        seed_everything(derive_seed(config.seed, "data"))
        splits = config.data.load(seed=config.seed)
        seed_everything(derive_seed(config.seed, "init"))
        return splits, config.model.build()

    cfg = dataclasses.replace(cells[0].config.train, progress=False, seed=0)
    single = {}
    for cell in cells:
        if cell.config.seed == 0:
            splits, model = prepare(cell.config)
            start = time.perf_counter()
            trainer = Trainer(model, cell.config.objective, dataclasses.replace(cfg, seed=0))
            trainer.fit(splits.train, splits.val[0])
            single[cell.config.objective.name] = (time.perf_counter() - start, trainer.epoch)
    built = [prepare(c.config) for c in cells]
    vt = VectorizedTrainer([b[1] for b in built], [c.config.objective for c in cells], cfg,
                           seeds=[c.config.seed for c in cells])
    start = time.perf_counter()
    vt.fit([b[0].train for b in built], [b[0].val[0] for b in built])
    wall = time.perf_counter() - start
    plain = 10 * sum(t for t, _ in single.values())
    return {"width": width, "runs": len(cells), "group_s": wall,
            "plain_estimate_s": plain, "speedup": plain / wall,
            "single_s": {k: v[0] for k, v in single.items()},
            "single_epochs": {k: v[1] for k, v in single.items()},
            "group_epochs": [s.epoch for s in vt.members], "loadavg": load()}


def _mean(rows: list[dict], objective: str, key: str) -> float:
    vals = [float(r[key]) for r in rows if r["objective"] == objective]
    return sum(vals) / max(len(vals), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objectives", nargs="+", default=["mim", "vae"])
    ap.add_argument("--widths", nargs="+", type=int, default=[5, 50, 500])
    ap.add_argument("--groups", nargs="+", type=int, default=[10, 20, 160])
    ap.add_argument("--runs", type=int, default=3, help="plain fits per 'alone' measurement")
    ap.add_argument("--n-train", type=int, default=2560, help="training points per epoch")
    ap.add_argument("--n-val", type=int, default=512)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--sweep-workers", type=int, default=1)
    ap.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True,
                    help="also time `torchmim sweep fig3 --quick` with and without --vectorize")
    ap.add_argument("--protocol-widths", nargs="*", type=int, default=[],
                    help="also train fig3's 20 runs of these widths at the paper's protocol")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(1)  # what the trainers choose for these models anyway
    cfg = TrainerConfig(epochs=args.epochs, warmup_epochs=1, early_stopping=False, progress=False,
                        threads=1)
    grouped("mim", 5, 2, cfg, 256, 128)  # warm-up: first-call costs out of the measurements
    alone("mim", 5, 1, cfg, 256, 128)
    rows = []
    print(f"{'objective':9} {'width':>5} {'alone before':>12} {'alone after':>11} "
          + " ".join(f"{'group ' + str(m):>11}" for m in args.groups) + "   speed-up   loadavg")
    for objective in args.objectives:
        for width in args.widths:
            before = alone(objective, width, args.runs, cfg, args.n_train, args.n_val)
            groups = {m: grouped(objective, width, m, cfg, args.n_train, args.n_val)
                      for m in args.groups}
            after = alone(objective, width, args.runs, cfg, args.n_train, args.n_val)
            base = (before + after) / 2
            row = {"objective": objective, "width": width, "alone_before": before,
                   "alone_after": after, "groups": groups,
                   "speedup": {m: r / base for m, r in groups.items()}, "loadavg": load()}
            rows.append(row)
            print(f"{objective:9} {width:5d} {before:12.0f} {after:11.0f} "
                  + " ".join(f"{groups[m]:11.0f}" for m in args.groups) + "   "
                  + " ".join(f"{row['speedup'][m]:.1f}x" for m in args.groups)
                  + f"   {row['loadavg']}", flush=True)
    sweeps = []
    if args.sweep:
        for vectorize in (False, True):
            sweeps.append(sweep(vectorize, args.sweep_workers))
            s = sweeps[-1]
            print(f"sweep fig3 --quick ({s['cells']} cells, {s['workers']} worker(s)), "
                  f"{'--vectorize   ' if vectorize else '--no-vectorize'}: {s['wall_s']:7.1f} s wall "
                  f"(train {s['train_s_sum']:.1f} s + eval {s['eval_s_sum']:.1f} s summed over "
                  f"cells; MI MIM {s['mi_mean_mim']:.2f}, VAE {s['mi_mean_vae']:.2f})   "
                  f"{s['loadavg']}", flush=True)
        print(f"sweep speed-up: {sweeps[0]['wall_s'] / sweeps[1]['wall_s']:.2f}x")
    full = []
    for width in args.protocol_widths:
        full.append(protocol(width))
        f = full[-1]
        print(f"fig3 width {width}, paper protocol, {f['runs']} runs: group {f['group_s']:.0f} s "
              f"(epochs {min(f['group_epochs'])}-{max(f['group_epochs'])}); alone: MIM seed 0 "
              f"{f['single_s']['mim']:.0f} s ({f['single_epochs']['mim']} epochs), VAE seed 0 "
              f"{f['single_s']['vae']:.0f} s ({f['single_epochs']['vae']} epochs), x10 = "
              f"{f['plain_estimate_s']:.0f} s; {f['speedup']:.1f}x   {f['loadavg']}", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "torch": torch.__version__, "args": {k: str(v) for k, v in vars(args).items()},
            "training": rows, "sweeps": sweeps, "protocol": full}, indent=2) + "\n")


if __name__ == "__main__":
    main()
