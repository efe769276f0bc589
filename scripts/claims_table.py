"""Print a sweep's claims.csv as the compact table of docs/experiments.md.

    python scripts/claims_table.py results/fig4-clean/claims.csv

One row per setting, one column per metric: MIM − VAE mean [95% interval], the paired t-test p and,
where it differs, its Holm-adjusted p (over the settings of the metric; the verdict is judged on
it), and a mark when the claim does not hold (✗ opposite, ~ not significant, – no claim in the
paper). The numbers are those a
sweep (or ``torchmim report``) wrote with :mod:`torchmim.experiments.statistics`.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict

from torchmim.experiments.statistics import PAPER_CLAIMS
from torchmim.metric_names import metric_label

#: the metrics shown, in this column order (their headers: torchmim.metric_names)
CLAIMS_METRICS = ("mi", "mi_standardized", "mi_rank", "nll", "recon_error", "knn_acc",
                  "consistency_x", "consistency_z")
MARK = {"holds": "", "opposite": " ✗", "not significant": " ~", "no claim in the paper": " –"}


def fmt(row: dict[str, str]) -> str:
    d, lo, hi, p = (float(row[k]) for k in ("diff_mean", "ci_low", "ci_high", "t_p"))
    big = max(abs(d), abs(lo), abs(hi))
    spec = "+.3g" if big >= 1e4 else "+.2f" if big >= 1 else "+.3f"
    p_text = "p < 1e-4" if p < 1e-4 else f"p {p:.2g}"
    holm = row.get("p_holm") or ""
    if holm not in ("", "nan"):  # the verdict is judged on Holm's p: shown where it reads apart
        q = float(holm)
        q_text = "p < 1e-4" if q < 1e-4 else f"p {q:.2g}"
        if q_text != p_text:
            p_text += f", Holm {q_text[2:]}"
    interval = f"{d:{spec}} [{lo:{spec}}, {hi:{spec}}]".replace("-", "−")
    side = row.get("claim")
    if side in ("higher", "lower") and side != PAPER_CLAIMS.get(row["metric"], side):
        p_text += f" (claimed {'>' if side == 'higher' else '<'})"  # the paper's other side here
    return f"{interval}, {p_text}{MARK.get(row['verdict'], ' ?')}"


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python scripts/claims_table.py CLAIMS.csv")
    try:
        with open(sys.argv[1], newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except OSError as e:
        raise SystemExit(f"error: cannot read {sys.argv[1]}: {e.strerror}") from None
    if "metric" not in columns or not rows:
        raise SystemExit(f"error: {sys.argv[1]} is not a claims table with rows (a sweep's "
                         "claims.csv, or scripts/cross_sweep_claims.py's output)")
    keys = columns[:columns.index("metric")]  # the setting's columns come first
    table: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows:
        if r["metric"] in CLAIMS_METRICS:
            table[", ".join(r[k] for k in keys) or "all"][r["metric"]] = fmt(r)
    shown = [m for m in CLAIMS_METRICS if any(m in cells for cells in table.values())]
    headers = [metric_label(m, "claims") for m in shown]
    print(f"| {', '.join(keys) or 'setting'} | " + " | ".join(headers) + " |")
    print("|---:|" + "---:|" * len(shown))

    def order(s: str) -> tuple:
        try:
            return (0, float(s), "")
        except ValueError:
            return (1, 0.0, s)

    for setting in sorted(table, key=order):
        print(f"| {setting} | " + " | ".join(table[setting].get(m, "—") for m in shown) + " |")
    verdicts = defaultdict(int)
    for r in rows:
        if r["metric"] in CLAIMS_METRICS:
            verdicts[r["verdict"]] += 1
    print("\n" + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())))


if __name__ == "__main__":
    main()
