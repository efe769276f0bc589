"""Raw vs standardised KSG mutual information of a finished fig3/fig4/fig5 sweep.

Reads ``results/SWEEP/results.csv`` (raw KSG, as the reference computes it) and the
``metrics-ksg-standardized.json`` that ``torchmim evaluate ... -s eval.ksg_standardize=true --out``
wrote into each cell folder; prints a Markdown table of the means over the seeds that have both.
Used for docs/experiments.md:

    python scripts/ksg_standardized_table.py results/fig5
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean


def main(folder: str) -> None:
    root = Path(folder)
    rows = list(csv.DictReader(open(root / "results.csv")))
    # the swept parameter: the latent size (fig4, fig5) or the hidden width (fig3)
    swept = next(k for k in ("model.z_dim", "model.hidden") if len({r[k] for r in rows}) > 1)
    groups: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        path = root / "cells" / row["cell"] / "metrics-ksg-standardized.json"
        if path.exists():
            key = (int(row[swept]), row["objective.name"])
            groups[key].append((float(row["mi"]), json.loads(path.read_text())["mi"]))
    print(f"| {swept} | seeds | MI MIM, raw | MI VAE, raw | MI MIM, standardised | MI VAE, standardised |")
    print("|---:|---:|---:|---:|---:|---:|")
    for z in sorted({z for z, _ in groups}):
        mim, vae = groups.get((z, "mim"), []), groups.get((z, "vae"), [])
        if not mim or not vae:
            continue
        vals = [mean(v[i] for v in g) for i in (0, 1) for g in (mim, vae)]
        print(f"| {z} | {min(len(mim), len(vae))} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/fig5")
