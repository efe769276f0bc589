"""Re-evaluate the trained models of a finished sweep with today's evaluation, side by side (issue 11).

    python bench/reevaluate.py results/fig3 --workers 2 --out /tmp/reeval.json
    python bench/reevaluate.py results/fig3 --compare-seeds 0 --workers 2   # + the plain path

For every cell folder (config.yaml, model.pt, metrics.json) it loads the saved model and data
exactly as the run did and runs :func:`torchmim.evaluation.evaluate` with the run's protocol and
seed, then reports the summed evaluation seconds against the ``eval_seconds`` the sweep recorded,
and the largest difference of every measure from the sweep's ``metrics.json`` (the same draws:
only float rounding and, for KSG, neighbour ties may differ). ``--compare-seeds`` also times, on the
cells of those seeds, the plain path (``fast_paths(folded_tanh=False)`` and decoder blocks of 16,384
pairs, the evaluation before the folded-tanh change) interleaved with today's, in the same worker:
the side-by-side ratio, free of the load difference between the two sessions.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import time
from pathlib import Path

import torch

MEASURES = ("mi", "nll", "recon_error", "recon_mean_rmse", "knn_acc", "posterior_var",
            "active_units")


def _evaluate(cell: Path, plain: bool) -> tuple[dict, float]:
    from torchmim.evaluation import evaluate
    from torchmim.io import load_model
    from torchmim.layers import fast_paths
    from torchmim.runs import RunConfig
    from torchmim.seeding import derive_seed, seed_everything

    config = RunConfig.from_file(cell / "config.yaml")
    seed_everything(derive_seed(config.seed, "data"))
    data = config.data.load(seed=config.seed)
    model = load_model(cell / "model.pt")
    if plain:
        lml = model.log_marginal_likelihood
        model.log_marginal_likelihood = lambda *a, **k: lml(*a, block_pairs=16384, **k)
    start = time.perf_counter()
    with fast_paths(folded_tanh=not plain):
        metrics = evaluate(model, data, config.eval, seed=derive_seed(config.seed, "eval"))
    return metrics, time.perf_counter() - start


def work(job: tuple[str, bool]) -> dict:
    torch.set_num_threads(1)
    cell, compare = Path(job[0]), job[1]
    old = json.loads((cell / "metrics.json").read_text())
    new, seconds = _evaluate(cell, plain=False)
    row = {"cell": cell.name, "old_seconds": old.get("eval_seconds"), "new_seconds": seconds,
           "diff": {k: abs(new[k] - old[k]) for k in MEASURES if k in new and k in old},
           "new": {k: new[k] for k in MEASURES if k in new}}
    if compare:  # plain, today's, plain: today's between two plain runs against load drift
        _, p1 = _evaluate(cell, plain=True)
        _, f1 = _evaluate(cell, plain=False)
        _, p2 = _evaluate(cell, plain=True)
        row.update(plain_seconds=(p1 + p2) / 2, fast_seconds=f1)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep", type=Path)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--compare-seeds", type=int, nargs="*", default=[])
    p.add_argument("--out", default=None)
    a = p.parse_args()
    cells = sorted(c for c in (a.sweep / "cells").iterdir() if (c / "model.pt").exists())
    jobs = [(str(c), any(c.name.endswith(f"_seed-{s}") for s in a.compare_seeds)) for c in cells]
    load0 = os.getloadavg()
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(a.workers) as pool:
        rows = pool.map(work, jobs, chunksize=1)
    wall = time.perf_counter() - start
    old = sum(r["old_seconds"] or 0 for r in rows)
    new = sum(r["new_seconds"] for r in rows)
    print(f"{len(rows)} cells, {a.workers} workers: wall-clock {wall:.0f} s; evaluation summed "
          f"{new:.0f} s (the sweep recorded {old:.0f} s); load {load0} → {os.getloadavg()}")
    for k in MEASURES:
        diffs = [r["diff"][k] for r in rows if k in r["diff"]]
        if diffs:
            print(f"  max |new − recorded| {k}: {max(diffs):.3g}")
    compared = [r for r in rows if "plain_seconds" in r]
    if compared:
        pl, fa = (sum(r[k] for r in compared) for k in ("plain_seconds", "fast_seconds"))
        print(f"  side by side on {len(compared)} cells: plain {pl:.0f} s, today {fa:.0f} s, "
              f"ratio {pl / fa:.2f}")
        for r in compared:
            print(f"    {r['cell']}: plain {r['plain_seconds']:.1f} s, today "
                  f"{r['fast_seconds']:.1f} s, ratio {r['plain_seconds'] / r['fast_seconds']:.2f}")
    if a.out:
        Path(a.out).write_text(json.dumps({"rows": rows, "wall": wall, "workers": a.workers},
                                          indent=2, default=lambda v: None if isinstance(v, float)
                                          and not math.isfinite(v) else str(v)))


if __name__ == "__main__":
    main()
