"""The sweep's tables on disk: flat rows written to and read from CSV, atomically.

Shared by the runner (``results.csv``), the aggregation (``summary.csv``) and the results page; it
imports nothing else of the package at module top (the atomic writer of :mod:`torchmim.io`, which
needs torch, is imported when a table is written), so every one of them can import it at module
top.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["atomic_write_text", "flatten", "read_csv", "write_csv"]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → one level with dotted keys; lists become JSON strings."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple, dict)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically with :func:`torchmim.io.atomic_write_text` (a temporary file of a
    unique name next to ``path``, fsync, rename): a reader, a crash or a second writer never sees
    half a table."""
    from ..io import atomic_write_text as write

    write(path, text)


def write_csv(path: Path, rows: list[dict[str, Any]], first: list[str] | None = None) -> None:
    """Write rows (dicts) to CSV atomically; columns in ``first`` lead, the rest in first-seen order."""
    columns: list[str] = []
    for c in (first or []):
        if any(c in r for r in rows) and c not in columns:
            columns.append(c)
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _parse(value: str) -> Any:
    if value == "":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    if value in ("True", "False"):
        return value == "True"
    return value


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results table, with numbers parsed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no results table at {path}")
    with path.open(newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]
