"""Print a sweep's claims.csv as the compact table of docs/experiments.md.

    python scripts/claims_table.py results/fig4-clean/claims.csv

One row per setting, one column per metric: MIM − VAE mean [95% bootstrap CI], the paired t-test p,
and a mark when the claim does not hold (✗ opposite, ~ not significant). The numbers are those a
sweep (or ``torchmim report``) wrote with :mod:`torchmim.experiments.statistics`.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict

METRICS = {"mi": "MI (nats)", "mi_std": "MI, standardised", "mi_rank": "MI, ranks",
           "nll": "NLL (nats)", "recon_error": "recon. error", "knn_acc": "5-NN acc.",
           "consistency_x": "consistency x", "consistency_z": "consistency z"}
MARK = {"holds": "", "opposite": " ✗", "not significant": " ~"}


def fmt(row: dict[str, str]) -> str:
    d, lo, hi, p = (float(row[k]) for k in ("diff_mean", "ci_low", "ci_high", "t_p"))
    digits = 2 if max(abs(d), abs(lo), abs(hi)) >= 1 else 3
    p_text = "p < 1e-4" if p < 1e-4 else f"p {p:.2g}"
    interval = f"{d:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]".replace("-", "−")
    return f"{interval}, {p_text}{MARK.get(row['verdict'], ' ?')}"


def main() -> None:
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    key = next(iter(rows[0]))  # the setting column comes first ("metric" when there is none)
    table: dict[str, dict[str, str]] = defaultdict(dict)
    for r in rows:
        if r["metric"] in METRICS:
            table["all" if key == "metric" else r[key]][r["metric"]] = fmt(r)
    shown = [m for m in METRICS if any(m in cells for cells in table.values())]
    print(f"| {'setting' if key == 'metric' else key} | "
          + " | ".join(METRICS[m] for m in shown) + " |")
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
        if r["metric"] in METRICS:
            verdicts[r["verdict"]] += 1
    print("\n" + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())))


if __name__ == "__main__":
    main()
