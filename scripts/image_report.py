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
import math
import sys
from pathlib import Path
from typing import Any

from torchmim.errors import TorchMIMError
from torchmim.experiments.images import ARCHS, PIXEL, image_tables, paper_table
from torchmim.experiments.statistics import claim_text, format_p
from torchmim.experiments.tables import read_csv
from torchmim.figures.style import objective_label
from torchmim.metric_names import metric_label

_ORDER = {a["label"]: i for i, a in enumerate(ARCHS)}
#: The measures of the table of every run, in order (a sweep without one prints "–" for it).
RUN_METRICS = ("nll", "knn_acc_k1", "knn_acc_k3", "knn_acc", "knn_acc_k10")


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(value: Any, spec: str = "") -> str:
    """``value`` formatted by ``spec`` (``"d"``: an int), or "–" when missing or NaN."""
    v = _float(value)
    if not math.isfinite(v):
        return "–"
    return str(int(v)) if spec == "d" else format(v, spec)


def _seed_key(r: dict[str, Any]) -> float:
    seed = _float(r.get("seed"))
    return seed if math.isfinite(seed) else -1.0


def runs_table(rows: list[dict[str, Any]]) -> str:
    """Every run: NLL, the k-NN accuracies, active units, best / last epoch, seconds ("–" for a
    measure a sweep did not record)."""
    head = ["data", "model", "objective", "seed", *(metric_label(m, "short") for m in RUN_METRICS),
            metric_label("active_units", "short"), "best / last epoch", "train s", "eval s"]
    lines = ["| " + " | ".join(head) + " |",
             "|---|---|---|---:|" + "---:|" * (len(RUN_METRICS) + 1) + "---|---:|---:|"]
    rows = sorted(rows, key=lambda r: (str(r.get("data")), _ORDER.get(r.get("model"), 99),
                                       r.get("objective.name") == "vae", _seed_key(r)))
    for r in rows:
        values = [_fmt(r.get(m), ".2f" if m == "nll" else ".3f") for m in RUN_METRICS]
        lines.append(
            f"| {r.get('data')} | {r.get('model')} | "
            f"{objective_label(str(r.get('objective.name')))} | {_fmt(r.get('seed'), 'd')} | "
            + " | ".join(values) + f" | {_fmt(r.get('active_units'), 'd')} | "
            f"{_fmt(r.get('best_epoch'), 'd')} / {_fmt(r.get('epochs'), 'd')} | "
            f"{_fmt(r.get('train_seconds'), '.0f')} | {_fmt(r.get('eval_seconds'), '.0f')} |")
    return "\n".join(lines)


def claims_table(folders: list[Path]) -> str:
    """The folders' claims paired over test images, one row per (data, model, seed, metric)."""
    lines = ["| data | model | seed | metric | test images | compared | mean a | mean b | "
             "claim | a − b [95% CI] | test | p | Holm-adjusted p | verdict |",
             "|---|---|---:|---|---:|---|---:|---:|---|---|---|---:|---:|---|"]
    table: list[dict[str, Any]] = []
    for folder in folders:
        path = folder / "claims_test_points.csv"
        if not path.is_file():
            print(f"note: {path} does not exist (run scripts/image_points.py {folder})",
                  file=sys.stderr)
            continue
        table += read_csv(path)
    table.sort(key=lambda r: (str(r.get("data")), _ORDER.get(r.get("model"), 99), _seed_key(r),
                              str(r.get("metric"))))
    for r in table:
        digits = ".2f" if r["metric"] == "nll" else ".3f"
        signed = "+" + digits
        test = r["test"]
        if r.get("a_only") is not None:
            test += f" ({_fmt(r['a_only'], 'd')} vs {_fmt(r['b_only'], 'd')} discordant)"
        a, b = objective_label(r.get("a") or "mim"), objective_label(r.get("b") or "vae")
        compared = f"{a} vs {b}"
        claim = claim_text(r.get("claim"), a, b)
        lines.append(
            f"| {r['data']} | {r['model']} | {_fmt(r.get('seed'), 'd')} | "
            f"{metric_label(r['metric'], 'claims')} | {_fmt(r['n'], 'd')} | {compared} | "
            f"{_fmt(r['a_mean'], digits)} | {_fmt(r['b_mean'], digits)} | {claim} | "
            f"{_fmt(r['diff_mean'], signed)} [{_fmt(r['ci_low'], signed)}, "
            f"{_fmt(r['ci_high'], signed)}] | {test} | {format_p(_float(r['p']))} | "
            f"{format_p(_float(r.get('p_holm')))} | {r['verdict']} |")
    return "\n".join(lines) if table else "(no claims_test_points.csv in these folders)"


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
        rows += read_csv(path)  # numbers parsed; an empty field (a measure a run lacks): None
    seen: dict[tuple, int] = {}
    for r in rows:  # two folders with the same run would be averaged as if they were two seeds
        key = tuple(r.get(k) for k in ("data", "model", "objective.name", "seed"))
        seen[key] = seen.get(key, 0) + 1
    twice = [", ".join(str(v) for v in k) for k, n in seen.items() if n > 1]
    if twice:
        print(f"error: the folders hold the same run more than once ({'; '.join(twice)}): "
              "pass one folder per data set and seed", file=sys.stderr)
        return 2
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
    print("Every run (" + objective_label("amim") + " for " + ", ".join(PIXEL) + "):\n")
    print(runs_table(rows))
    print("\nClaims paired over test images (each folder's claims_test_points.csv):\n")
    print(claims_table(list(args.folders)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
