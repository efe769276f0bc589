"""Aggregation over seeds: mean, standard deviation and count per (group, x)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..figures.sweeps import series  # re-exported: it moved to the figures that use it
from .spec import SweepSpec
from .tables import write_csv

__all__ = ["aggregate", "series", "summarize"]


def aggregate(rows: Sequence[dict[str, Any]], by: Sequence[str], metrics: Sequence[str]
              ) -> list[dict[str, Any]]:
    """Group ``rows`` by the columns ``by`` and reduce each metric to ``<m>_mean``, ``<m>_std``
    (sample standard deviation, ddof = 1; 0 for a single seed) and ``n``.

    Groups keep the order in which they first appear; rows missing a metric (or with NaN) are left
    out of that metric's statistics.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, members in groups.items():
        entry: dict[str, Any] = dict(zip(by, key))
        entry["n"] = len(members)
        for m in metrics:
            vals = np.array([float(r[m]) for r in members
                             if r.get(m) is not None and not _isnan(r[m])], dtype=float)
            entry[f"{m}_mean"] = float(vals.mean()) if len(vals) else math.nan
            entry[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        out.append(entry)
    return out


def _isnan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def summarize(rows: Sequence[dict[str, Any]], spec: SweepSpec, out_dir: Path) -> list[dict[str, Any]]:
    """Write ``summary.csv`` (grouped by every grid key except ``seed``) and return it."""
    by = [k for k in spec.grid if k != "seed"]
    summary = aggregate(rows, by, spec.metrics)
    write_csv(Path(out_dir) / "summary.csv", summary, first=by)
    return summary
