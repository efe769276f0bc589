"""The image tables of several ``image-tables`` sweep folders as one Markdown report.

    python scripts/image_report.py results/image-cpu-mnist results/image-cpu-omniglot ...

Prints, for the folders' finished cells together: Table 1 (test NLL) and Table 2 (5-NN accuracy)
next to the paper's (:func:`torchmim.experiments.images.paper_table`, one row pair per data set);
every run's other measures (1/3/10-NN, active units, best / last epoch, training and evaluation
seconds); and each folder's claims paired over test images (``claims_test_points.csv``, written by
the sweep or by ``scripts/image_points.py``). docs/images.md quotes this output.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from torchmim.errors import TorchMIMError
from torchmim.experiments.images import ARCHS, PIXEL, image_tables, paper_table
from torchmim.experiments.statistics import format_p

_ORDER = {a["label"]: i for i, a in enumerate(ARCHS)}
_OBJ = {"mim": "MIM", "amim": "A-MIM", "vae": "VAE"}


def _read(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _num_rows(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """CSV strings → numbers where they are numbers (paper_table aggregates them)."""
    out = []
    for r in rows:
        conv: dict[str, Any] = {}
        for k, v in r.items():
            f = _float(v)
            conv[k] = v if f != f and v not in ("nan", "NaN") else f
        out.append(conv)
    return out


def runs_table(rows: list[dict[str, Any]]) -> str:
    """Every run: the other k, active units, best / last epoch, seconds."""
    lines = ["| data | model | objective | NLL | 1-NN | 3-NN | 5-NN | 10-NN | active units | "
             "best / last epoch | train s | eval s |", "|---|---|---|" + "---:|" * 6 + "---|---:|---:|"]
    rows = sorted(rows, key=lambda r: (r["data"], _ORDER.get(r["model"], 99),
                                       r["objective.name"] == "vae"))
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['model']} | {_OBJ.get(r['objective.name'], r['objective.name'])} "
            f"| {r['nll']:.2f} | {r['knn_acc_k1']:.3f} | {r['knn_acc_k3']:.3f} | "
            f"{r['knn_acc']:.3f} | {r['knn_acc_k10']:.3f} | {int(r['active_units'])} | "
            f"{int(r['best_epoch'])} / {int(r['epochs'])} | {r['train_seconds']:.0f} | "
            f"{r['eval_seconds']:.0f} |")
    return "\n".join(lines)


def claims_table(folders: list[Path]) -> str:
    """The folders' claims paired over test images, one row per (data, model, metric)."""
    lines = ["| data | model | metric | test images | MIM (A-MIM) | VAE | difference [95% CI] | "
             "test | p | verdict |", "|---|---|---|---:|---:|---:|---|---|---:|---|"]
    found = False
    for folder in folders:
        path = folder / "claims_test_points.csv"
        if not path.is_file():
            print(f"note: {path} does not exist (run scripts/image_points.py {folder})",
                  file=sys.stderr)
            continue
        for r in sorted(_read(path), key=lambda r: (_ORDER.get(r["model"], 99), r["metric"])):
            found = True
            digits = 2 if r["metric"] == "nll" else 3
            test = r["test"]
            if r.get("a_only"):
                test += f" ({int(float(r['a_only']))} vs {int(float(r['b_only']))} discordant)"
            name = "NLL" if r["metric"] == "nll" else "5-NN accuracy"
            lines.append(
                f"| {r['data']} | {r['model']} | {name} | {r['n']} | "
                f"{float(r['a_mean']):.{digits}f} | {float(r['b_mean']):.{digits}f} | "
                f"{float(r['diff_mean']):+.{digits}f} [{float(r['ci_low']):+.{digits}f}, "
                f"{float(r['ci_high']):+.{digits}f}] | {test} | {format_p(float(r['p']))} | "
                f"{r['verdict']} |")
    return "\n".join(lines) if found else "(no claims_test_points.csv in these folders)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="image-tables sweep folders")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for folder in args.folders:
        path = folder / "results.csv"
        if not path.is_file():
            print(f"error: {path} does not exist (not a finished image-tables sweep folder)",
                  file=sys.stderr)
            return 2
        rows += _num_rows(_read(path))
    if not rows:
        print("error: the folders hold no finished cells", file=sys.stderr)
        return 2
    try:
        spec = image_tables()
        for table, metric in ((1, "nll"), (2, "knn_acc")):
            print(paper_table(spec, Path("."), rows, [], metric=metric, table=table))
            print()
    except TorchMIMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("Every run (A-MIM for " + ", ".join(PIXEL) + "):\n")
    print(runs_table(rows))
    print("\nClaims paired over test images (each folder's claims_test_points.csv):\n")
    print(claims_table(list(args.folders)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
