"""Claims that compare one objective of a sweep with one of another sweep, paired by seed.

    python scripts/cross_sweep_claims.py results/appendix-d1:vae_plus_h results/fig3-clean:vae \\
        --by model.hidden --claim mi=higher --claim recon_error=lower --claim knn_acc=higher \\
        --out results/appendix-d1/claims-vs-fig3-vae.csv

Reads each folder's ``results.csv``, pairs the runs of the two labels by seed within each value of
``--by`` (:func:`torchmim.experiments.statistics.compare_sweeps`) and writes the claims table as
CSV (``--out``; the columns of a sweep's ``claims.csv``, so ``scripts/claims_table.py`` formats it)
and as Markdown beside it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torchmim.errors import TorchMIMError
from torchmim.experiments.statistics import claims_markdown, compare_sweeps
from torchmim.experiments.tables import atomic_write_text, read_csv, write_csv


def _side(text: str) -> tuple[Path, str]:
    folder, sep, label = text.rpartition(":")
    if not sep or not folder or not label:
        raise SystemExit(f"error: {text!r}: give FOLDER:LABEL, e.g. results/fig3:vae")
    path = Path(folder) / "results.csv"
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist (a finished sweep folder has one)")
    return path, label


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="FOLDER:LABEL of the first side (a in a − b)")
    ap.add_argument("b", help="FOLDER:LABEL of the second side")
    ap.add_argument("--by", action="append", default=[], help="grid key of a setting (repeatable)")
    ap.add_argument("--claim", action="append", default=[], metavar="METRIC=higher|lower",
                    help="the side of zero the claim puts a − b on (repeatable)")
    ap.add_argument("--group", default="objective.name", help="the column holding the labels")
    ap.add_argument("--out", required=True, help="the claims CSV to write (Markdown beside it)")
    args = ap.parse_args(argv)
    if not args.claim or any("=" not in c for c in args.claim):
        raise SystemExit("error: give each claim as --claim METRIC=higher|lower")
    claims = dict(c.split("=", 1) for c in args.claim)
    if len(claims) != len(args.claim):
        raise SystemExit("error: a metric is claimed twice")
    (pa, la), (pb, lb) = _side(args.a), _side(args.b)
    try:
        rows_a, rows_b = read_csv(pa), read_csv(pb)
        for path, rows in ((pa, rows_a), (pb, rows_b)):
            missing = [k for k in [*args.by, args.group, "seed"] if rows and k not in rows[0]]
            if missing:
                raise SystemExit(f"error: {path} has no column {', '.join(missing)}")
            absent = [m for m in claims if rows and m not in rows[0]]
            if absent:
                raise SystemExit(f"error: {path} has no metric {', '.join(absent)}")
        table = compare_sweeps(rows_a, la, rows_b, lb, by=args.by, claims=claims,
                               group=args.group)
    except TorchMIMError as e:
        raise SystemExit(f"error: {e}") from None
    if not table:
        raise SystemExit("error: no setting has runs of both labels with the claimed metrics")
    out = Path(args.out)
    write_csv(out, table, first=[*args.by, "metric", "claim"])
    md = claims_markdown(table, args.by, (la, lb))
    atomic_write_text(out.with_suffix(".md"), md)
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
