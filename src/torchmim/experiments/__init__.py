"""Experiments: named sweeps of runs, their runner, aggregation, figures and results page."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..registry import Registry
from . import images, paper
from .aggregate import aggregate, summarize
from .executors import Executor, LocalProcessExecutor, SerialExecutor, make_executor
from .runner import SweepResult, read_csv, run_cell, run_sweep
from .spec import Cell, FigureSpec, SweepSpec, expand, load_sweep_file

__all__ = ["EXPERIMENTS", "SWEEP_ALIASES", "Cell", "Executor", "FigureSpec", "LocalProcessExecutor",
           "SerialExecutor", "SweepResult", "SweepSpec", "aggregate", "expand", "get_sweep",
           "load_sweep_file", "make_executor", "read_csv", "run_cell", "run_sweep", "summarize",
           "sweep_names", "with_current_claims"]

#: Named sweeps (``torchmim sweep NAME``); each entry returns a :class:`SweepSpec`.
EXPERIMENTS: Registry[Callable[[], SweepSpec]] = Registry("experiment")
EXPERIMENTS.register("fig3", paper.fig3)
EXPERIMENTS.register("fig4", paper.fig4)
EXPERIMENTS.register("fig5", paper.fig5)
EXPERIMENTS.register("appendix-d1", paper.appendix_d1)
EXPERIMENTS.register("appendix-d2", paper.appendix_d2)
EXPERIMENTS.register("appendix-d3", paper.appendix_d3)
EXPERIMENTS.register("appendix-d4", paper.appendix_d4)
EXPERIMENTS.register("image-tables", images.image_tables)

#: Other names of a sweep (alias → its name): both image tables come from the same runs.
SWEEP_ALIASES: dict[str, str] = {"table1": "image-tables", "table2": "image-tables"}
for _alias, _name in SWEEP_ALIASES.items():
    EXPERIMENTS.alias(_alias, _name)  # get() resolves it; names() lists only "image-tables"


def sweep_names() -> dict[str, list[str]]:
    """Each named sweep (``torchmim sweep --list``) → its aliases, without listing an alias twice."""
    out: dict[str, list[str]] = {k: [] for k in EXPERIMENTS.names()}
    for alias, name in sorted(SWEEP_ALIASES.items()):
        out[name].append(alias)
    return out


def get_sweep(name_or_file: str | Path) -> SweepSpec:
    """A registered sweep by name, or a user sweep from a YAML/JSON file."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml", ".json"):
        return load_sweep_file(path)
    return EXPERIMENTS.get(str(name_or_file))()


#: The fields of a sweep that state the paper's claims (not how its runs were made).
CLAIM_FIELDS = ("claims", "compare", "claim_exceptions")


def with_current_claims(spec: SweepSpec | dict[str, Any]) -> SweepSpec | dict[str, Any]:
    """``spec`` (a :class:`SweepSpec`, or its dict as a sweep folder's ``sweep.json`` holds it)
    with, for a registered sweep of its name, the claims, sides and claim exceptions of this
    version of torchmim: they state what the paper says, not how the runs were made, so a
    correction of them applies to folders run before it (``torchmim report``, the image
    backfill). Other sweeps — also a user's sweep that only shares a registered name (its
    ``group`` or grid keys differ) — are returned unchanged."""
    get = spec.get if isinstance(spec, dict) else (lambda k, d=None: getattr(spec, k, d))
    name = get("name")
    if not isinstance(name, str) or name not in EXPERIMENTS:
        return spec
    current = EXPERIMENTS.get(name)()
    if (get("group") or "objective.name") != current.group or \
            list(get("grid") or {}) != list(current.grid):
        return spec
    fields = {k: getattr(current, k) for k in CLAIM_FIELDS}
    return {**spec, **fields} if isinstance(spec, dict) else dataclasses.replace(spec, **fields)
