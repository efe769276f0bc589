"""Side by side: the same image cells trained in full precision and with bf16-mixed.

    python scripts/precision_table.py full=results/image-cpu-mnist \\
        bf16-mixed=results/image-cpu-mnist-bf16 "full, seed 1=results/image-cpu-mnist-seed1"

Each argument is ``label=folder`` (a sweep folder with ``results.csv``). Prints one Markdown row per
(model, objective, folder) with the metrics of the cells present in every folder's model/objective
set, and, per model and objective, the difference bf16 − full at the same seed next to the
difference between two full-precision seeds (how far a metric moves from seed to seed) when the
folders give both; then the same two differences over the test images of the cells' ``points.npz``
(``torchmim.experiments.statistics.compare_points``: mean difference, its bootstrap interval and
the two-sided p of the paired t-test for the per-image NLL, of McNemar's test for 5-NN).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from torchmim.experiments.statistics import compare_points

METRICS = [("nll", "NLL", "{:.1f}"), ("recon_error", "recon.", "{:.3f}"),
           ("knn_acc", "5-NN", "{:.3f}"), ("active_units", "active units", "{:.0f}"),
           ("best_epoch", "best epoch", "{:.0f}"), ("train_seconds", "train s", "{:.0f}")]


def main(argv: list[str]) -> None:
    if not argv or any("=" not in a for a in argv):
        sys.exit(__doc__)
    folders = [(a.split("=", 1)[0], Path(a.split("=", 1)[1])) for a in argv]
    rows = {}
    for label, folder in folders:
        for r in csv.DictReader(open(folder / "results.csv")):
            if (r["model"], r["objective"], label) in rows:
                sys.exit(f"{folder} holds several runs of {r['model']} {r['objective']} (seeds or "
                         "settings): give folders with one run per model and objective")
            rows[(r["model"], r["objective"], label)] = r
    keys = sorted(set.intersection(*({(m, o) for m, o, lab in rows if lab == label}
                                     for label, _ in folders)))
    print("| model | objective | run | seed | " + " | ".join(h for _, h, _ in METRICS) + " |")
    print("|---|---|---|---:|" + "---:|" * len(METRICS))
    for m, o in keys:
        for label, _ in folders:
            r = rows.get((m, o, label))
            if r is not None:
                print(f"| {m} | {o} | {label} | {r['seed']} | "
                      + " | ".join(f.format(float(r[k])) for k, _, f in METRICS) + " |")
    labels = [label for label, _ in folders]
    if len(labels) >= 3:
        full, mixed, other = labels[:3]
        print(f"\n| model | objective | metric | {mixed} − {full} | {other} − {full} |")
        print("|---|---|---|---:|---:|")
        for m, o in keys:
            a, b, c = (rows.get((m, o, label)) for label in (full, mixed, other))
            if a is None or b is None or c is None:
                continue
            for k, h, _ in METRICS[:4]:
                print(f"| {m} | {o} | {h} | {float(b[k]) - float(a[k]):+.3f} | "
                      f"{float(c[k]) - float(a[k]):+.3f} |")
        print(f"\nPer test image (points.npz): mean difference [95% interval], two-sided p\n\n"
              f"| model | objective | metric | {mixed} − {full} | {other} − {full} |\n"
              "|---|---|---|---|---|")
        folder = dict(folders)
        for m, o in keys:
            pts = {}
            for label in (full, mixed, other):
                r = rows[(m, o, label)]
                path = folder[label] / "cells" / r["cell"] / "points.npz"
                pts[label] = dict(np.load(path)) if path.exists() else None
            if any(v is None for v in pts.values()):
                continue
            claims = {"nll": "lower", "knn_acc": "higher"}
            one = {r["metric"]: r for r in compare_points(pts[mixed], pts[full], claims=claims)}
            two = {r["metric"]: r for r in compare_points(pts[other], pts[full], claims=claims)}
            for metric in claims:
                cells = [f"{x['diff_mean']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}], "
                         f"p = {x['p']:.2g}" for x in (one[metric], two[metric])]
                print(f"| {m} | {o} | {metric} (n = {one[metric]['n']}) | {cells[0]} | "
                      f"{cells[1]} |")


if __name__ == "__main__":
    main(sys.argv[1:])
