"""Print a sweep's summary.csv as the mean ± std table of docs/experiments.md.

    python scripts/summary_table.py results/appendix-d1
    python scripts/summary_table.py results/fig5-full --metrics mi mi_standardized mi_rank knn_acc

One row per setting (the sweep's x), for each metric one column per objective (or variant), in
the order of the sweep's ``compare``. Values are the means ± standard deviations over seeds that
the sweep (or ``torchmim report``) wrote to ``summary.csv``; ``n`` is the number of seeds.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from torchmim.experiments.tables import read_csv
from torchmim.figures.style import objective_label
from torchmim.metric_names import metric_label


def cell(mean: float, std: float) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    big = abs(mean)
    fmt = ".3g" if big >= 1e4 else ".1f" if big >= 20 else ".2f" if big >= 1 else ".3f"
    return f"{mean:{fmt}} ± {std:{fmt}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--metrics", nargs="+", default=["mi", "nll", "recon_rmse", "knn_acc"])
    args = ap.parse_args()
    for name in ("sweep.json", "summary.csv"):
        if not (args.folder / name).is_file():
            raise SystemExit(f"error: {args.folder / name} does not exist (a finished sweep "
                             "folder has it)")
    spec = json.loads((args.folder / "sweep.json").read_text())
    spec = spec.get("spec", spec)
    group, x = spec.get("group") or "objective.name", spec.get("x")
    rows = read_csv(args.folder / "summary.csv")
    sides = list(spec.get("compare") or ["mim", "vae"])
    sides += [g for g in dict.fromkeys(r[group] for r in rows) if g not in sides]
    missing = [m for m in args.metrics if rows and f"{m}_mean" not in rows[0]]
    if missing:
        raise SystemExit(f"error: {args.folder / 'summary.csv'} has no {', '.join(missing)} "
                         "(the sweep's metrics list says which metrics it summarises)")
    settings = list(dict.fromkeys(r.get(x, "all") for r in rows)) if x else ["all"]
    head = [x or "setting", "seeds"] + [f"{metric_label(m, 'short')} {objective_label(str(s))}"
                                        for m in args.metrics for s in sides]
    print("| " + " | ".join(head) + " |")
    print("|" + "---:|" * len(head))
    for setting in settings:
        by_side = {r[group]: r for r in rows if not x or r.get(x) == setting}
        n = max(int(r["n"]) for r in by_side.values())
        cells = [cell(by_side[s].get(f"{m}_mean"), by_side[s].get(f"{m}_std")) if s in by_side
                 else "—" for m in args.metrics for s in sides]
        print(f"| {setting} | {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
