"""Running a sweep: cells → executor → one tidy ``results.csv``, then aggregation and figures.

The output folder::

    sweep.json      the resolved spec, the mode, cell counts and wall-clock time
    results.csv     one row per finished cell: cell id, objective, seed, grid values, all metrics,
                    and every field of the cell's run config (dotted column names)
    summary.csv     mean, standard deviation and count over seeds, per group and x
    claims.csv      the paper's claims tested seed by seed (MIM − VAE per setting and metric: 95%
    claims.md       bootstrap interval, paired t-test, Wilcoxon; torchmim.experiments.statistics)
    failures.json   cells that raised (the sweep goes on without them); a cell's traceback is in
                    cells/<id>/traceback.txt
    .lock           the sweep's lock (see torchmim.locking): one sweep per folder at a time
    *.png           the sweep's figures
    cells/<id>/     each cell's run folder (model, checkpoint, history, metrics)

Cells whose ``metrics.json`` exists are skipped and cells with a checkpoint resume, so an
interrupted sweep continues where it stopped. A cell that raises anything is recorded as that
cell's failure (the others go on), and a unit whose worker process died fails its cells; a rerun
retries the failed cells.

The unit of work sent to the executor is a list of cells: one cell (:func:`run_cell`), or, with
``vectorize`` (the default), a *vectorised group* of cells that differ only in seed, objective and
latent size (:func:`plan_units`; smaller latent sizes zero-padded), trained as one stacked
computation by :func:`torchmim.training.vectorized.run_group` and written to the same cell folders
and rows.
"""

from __future__ import annotations

import json
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import to_dict
from ..errors import ConfigError, TorchMIMError
from ..io import atomic_write_text as _atomic_text
from ..io import clean_temporaries, read_json
from ..locking import FolderLock
from ..runs import RunConfig, check_run_folder, run, start_run_folder
from ..training.vectorized import group_key, run_group
from .aggregate import summarize
from .executors import Executor, make_executor
from .figures import draw_sweep_figures
from .spec import Cell, SweepSpec, expand
from .statistics import write_claims
from .tables import atomic_write_text, flatten, read_csv, write_csv

__all__ = ["SweepResult", "flatten", "plan_units", "read_csv", "run_cell", "run_sweep", "run_unit",
           "schedule", "write_csv"]

#: A vectorised group holds at most this many hidden units in all (members × width × depth): the
#: stacked activations of larger groups leave the CPU caches, and a step of 160 members of width
#: 500 was slower per member than one of 20 (docs/benchmarks.md, "Vectorised groups").
GROUP_UNITS = 10_000
#: ... and at most this many members. A unit runs on one worker and evaluates its members one after
#: the other, so one group of fig4's 200 runs (10 latent sizes padded to 20; 200 × 50 units fit
#: GROUP_UNITS) would leave every other worker idle through the whole sweep; 40 plans fig4 and fig5
#: as 5 groups of two latent sizes each (less padding too). No same-shape group of the paper's
#: sweeps is larger than 20.
GROUP_MEMBERS = 40
#: Members of a vectorised group write their checkpoints at most this often (and always at their
#: last epoch): M files per epoch would otherwise cost as much as a narrow group's training.
GROUP_CHECKPOINT_SECONDS = 30.0

METRIC_COLUMNS = ["mi", "mi_rank", "nll", "recon_rmse", "recon_error", "recon_mean_rmse", "knn_acc", "posterior_var", "active_units",
                  "epochs", "best_epoch", "best_val_loss", "train_seconds", "eval_seconds", "n_test", "n_train",
                  "ksg_k", "knn_k", "nll_samples"]


def _row(cell: Cell, metrics: dict[str, Any]) -> dict[str, Any]:
    config = cell.config.to_dict()
    row: dict[str, Any] = {"cell": cell.id, "objective": config["objective"]["name"],
                           "seed": cell.config.seed}
    row.update(cell.params)
    row.update({k: metrics[k] for k in METRIC_COLUMNS if k in metrics})
    row.update({k: v for k, v in metrics.items() if k not in row})
    row.update({k: v for k, v in flatten(config).items() if k not in row})
    return row


def _failure(cell_id: str, folder: Path, error: BaseException) -> dict[str, Any]:
    """A cell's failure: ``{"id", "error"}``; an error that is not one of torchmim's own (a bug, not
    bad input) also gets its traceback written to the cell's ``traceback.txt``."""
    text = f"{type(error).__name__}: {error}"
    if not isinstance(error, TorchMIMError):
        try:
            _atomic_text(folder / "traceback.txt", "".join(
                traceback.format_exception(type(error), error, error.__traceback__)))
            text += f" (traceback in {folder / 'traceback.txt'})"
        except OSError:
            pass
    return {"id": cell_id, "error": text}


def _succeeded(folder: Path) -> None:
    (folder / "traceback.txt").unlink(missing_ok=True)  # of an earlier failed attempt


def run_cell(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one cell in its folder (``payload["root"]/cells/<id>``), resuming if it was interrupted.

    Returns ``{"id", "metrics"}`` or ``{"id", "error"}``; never raises for an ``Exception`` (a
    torchmim error or a bug: the traceback of the latter goes to the cell's ``traceback.txt``), so
    one failed cell does not stop the sweep. A worker-process entry point: plain data in and out.
    """
    cell = Cell.from_payload(payload)
    out = Path(payload["root"]) / "cells" / cell.id
    try:
        result = run(cell.config, out, resume=True, progress=False)
    except Exception as e:  # noqa: BLE001 - a cell's failure, whatever it is, is that cell's
        return _failure(cell.id, out, e)
    _succeeded(out)
    return {"id": cell.id, "metrics": result.metrics}


def _group_error(cells: list[Cell], error: BaseException, root: Path | None = None
                 ) -> list[dict[str, Any]]:
    if root is None:
        return [{"id": c.id, "error": f"{type(error).__name__}: {error}"} for c in cells]
    return [_failure(c.id, root / "cells" / c.id, error) for c in cells]


def run_unit(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a unit of work, ``{"cells": [cell payloads], "root", "vectorized"}``: one cell with
    :func:`run_cell`, or a vectorised group with :func:`~torchmim.training.vectorized.run_group`.
    Returns one ``{"id", "metrics"}`` or ``{"id", "error"}`` per cell (a worker-process entry
    point).

    A group holds its cells' folder locks while it runs, and each cell's folder is checked as
    ``run(..., resume=True)`` checks it (a changed config is that cell's failure) before the group
    writes anything.
    """
    root = payload["root"]
    if not payload.get("vectorized"):
        return [run_cell({**c, "root": root}) for c in payload["cells"]]
    cells = [Cell.from_payload(c) for c in payload["cells"]]
    folders = {c.id: Path(root) / "cells" / c.id for c in cells}
    out: dict[str, dict[str, Any]] = {}
    with ExitStack() as locks:
        ready = []
        for c in cells:
            try:
                locks.enter_context(FolderLock(folders[c.id], what="run folder"))
                resumed = check_run_folder(c.config, folders[c.id], resume=True, progress=False)
                start_run_folder(c.config, folders[c.id], resumed)
                ready.append(c)
            except Exception as e:  # noqa: BLE001
                out[c.id] = _failure(c.id, folders[c.id], e)
        if ready:
            try:
                results = run_group(
                    [c.config for c in ready], [folders[c.id] for c in ready], resume=True,
                    checkpoint_seconds=payload.get("checkpoint_seconds", GROUP_CHECKPOINT_SECONDS))
            except Exception as e:  # noqa: BLE001
                results = [e] * len(ready)
            for c, r in zip(ready, results):
                if isinstance(r, BaseException):
                    out[c.id] = _failure(c.id, folders[c.id], r)
                else:
                    _succeeded(folders[c.id])
                    out[c.id] = {"id": c.id, "metrics": r.metrics}
    return [out[c.id] for c in cells]


def plan_units(cells: list[Cell], *, vectorize: bool = True, group_units: int = GROUP_UNITS,
               group_members: int = GROUP_MEMBERS, pad_latents: bool = False,
               ) -> list[tuple[list[Cell], bool]]:
    """The units of work: ``(cells, vectorized)``. With ``vectorize``, cells that
    :func:`~torchmim.training.vectorized.group_key` says may train together (same config apart from
    seed and objective; with ``pad_latents`` also apart from ``model.z_dim``, the smaller latent
    sizes zero-padded) form groups of at most ``group_units`` hidden units (members × width ×
    depth) and ``group_members`` members, in order of latent size and then grid order (so that a
    group pads few latent sizes); every other cell is a unit of its own. The plan depends on the
    cells only (not on the workers), so a sweep gives the same numbers however it is run.

    ``pad_latents`` is off by default: measured on Fig. 4's 200 runs (``bench/padded_groups.py``,
    docs/benchmarks.md) one padded group trained 1.03× and the capped plan 1.00× the member-samples/s
    of one group per latent size — the padding's extra work eats the saved per-op overhead — while
    fewer, larger units balance worse over the workers."""
    if not vectorize:
        return [([c], False) for c in cells]
    groups: dict[str, list[Cell]] = {}
    units: list[tuple[list[Cell], bool]] = []
    for cell in cells:
        key = group_key(cell.config)
        if key is not None and not pad_latents:
            key += f"|z_dim={cell.config.model.z_dim}"
        if key is None:
            units.append(([cell], False))
            continue
        if key not in groups:
            groups[key] = []
            units.append((groups[key], True))
        groups[key].append(cell)
    out: list[tuple[list[Cell], bool]] = []
    for members, vectorized in units:
        if not vectorized:
            out.append((members, False))
            continue
        model = members[0].config.model
        size = max(1, min(group_members, group_units // max(1, model.hidden * max(1, model.depth))))
        members = sorted(members, key=lambda c: c.config.model.z_dim)  # stable: grid order kept
        for i in range(0, len(members), size):
            chunk = members[i:i + size]
            out.append((chunk, len(chunk) > 1))  # a group of one is a plain run
    return out


def _cell_cost(cell: Cell) -> float:
    """A relative estimate of a cell's work, only to order the units: the toy models' hidden units
    (width × depth) plus 100 for the per-sample work outside the network (the IS-NLL's sampling
    and log-densities cost about as much as 100 hidden units per pair on the benchmark machine);
    a model without a ``hidden`` width counts 1."""
    model = cell.config.model
    hidden, depth = getattr(model, "hidden", None), getattr(model, "depth", 1)
    if isinstance(hidden, bool) or not isinstance(hidden, int):
        return 1.0
    return float(hidden * max(1, depth if isinstance(depth, int) else 1) + 100)


def schedule(units: list[tuple[list[Cell], bool]]) -> list[tuple[list[Cell], bool]]:
    """The units, costliest first (by :func:`_cell_cost` summed over a unit's cells; ties keep
    their order): the longest-processing-time-first rule, so that the last units to start are
    short ones and no worker idles through the last wide group while the others wait (fig3 in
    grid order ended with its width-500 group alone on one of 2 workers). The order changes no
    number: every cell is seeded by itself."""
    costs = [sum(_cell_cost(c) for c in cells) for cells, _ in units]
    order = sorted(range(len(units)), key=lambda i: -costs[i])
    return [units[i] for i in order]


def _finished_metrics(cell: Cell, root: Path) -> dict[str, Any] | None:
    folder = root / "cells" / cell.id
    metrics_file, config_file = folder / "metrics.json", folder / "config.yaml"
    metrics = read_json(metrics_file)
    if not isinstance(metrics, dict):  # missing, or cut short by a crash (an older version)
        return None
    if config_file.is_file():
        try:
            saved = RunConfig.from_file(config_file).to_dict()
        except TorchMIMError:  # unreadable: not finished; the cell's own run says why
            return None
        if _outcome(saved) != _outcome(cell.config.to_dict()):
            raise ConfigError(
                f"{folder} holds a finished run with a different config than cell {cell.id} of "
                "this sweep (another mode or grid?); use another --out folder or delete it")
    return metrics


@dataclass
class SweepResult:
    """A finished (or partly finished) sweep."""

    spec: SweepSpec
    out_dir: Path
    rows: list[dict[str, Any]]
    failures: dict[str, str]
    cells: list[Cell]

    @property
    def complete(self) -> bool:
        return not self.failures and len(self.rows) == len(self.cells)


#: Config keys (section, key) that choose extra outputs of a run, never its results: a finished
#: run is the same run with or without them (``eval.save_points``: backfilled by
#: ``scripts/image_points.py`` for runs from before it).
OUTPUT_ONLY_KEYS = (("eval", "save_points"),)


def _outcome(config: dict[str, Any]) -> dict[str, Any]:
    """A config (or a sweep's base) dict without :data:`OUTPUT_ONLY_KEYS`; a section left empty
    by that is dropped (a base whose ``eval`` held only ``save_points`` equals one without
    ``eval``)."""
    out = dict(config)
    for section, key in OUTPUT_ONLY_KEYS:
        if isinstance(out.get(section), dict) and key in out[section]:
            out[section] = {k: v for k, v in out[section].items() if k != key}
            if not out[section]:
                del out[section]
    return out


def _outcome_overrides(overrides: Any) -> Any:
    """A sweep's ``overrides`` (``key.sub=value`` strings, as in ``sweep.json``) without those
    that set :data:`OUTPUT_ONLY_KEYS`."""
    if not isinstance(overrides, list):
        return overrides
    skip = {f"{section}.{key}" for section, key in OUTPUT_ONLY_KEYS}
    return [o for o in overrides
            if not (isinstance(o, str) and o.split("=", 1)[0].strip() in skip)]


def _grid_label(value: Any) -> str:
    """How a grid value names its cells: a variant by its label, a plain value by itself."""
    if isinstance(value, dict) and "label" in value:
        return str(value["label"])
    return json.dumps(value, sort_keys=True)


def _compatible(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether a folder's finished cells can be shared with a sweep defined by ``new``.

    Base and overrides (but for :data:`OUTPUT_ONLY_KEYS`) and exclusions must be equal and the grid
    must have the same keys; the grid's values may differ (``--grid seed=0,1,2`` now, all seeds
    later, in the same folder), but a value both grids name (a variant's label) must mean the same
    thing in both.
    """
    if old.get("exclude") != new.get("exclude"):
        return False
    if _outcome_overrides(old.get("overrides")) != _outcome_overrides(new.get("overrides")):
        return False
    if _outcome(old.get("base") or {}) != _outcome(new.get("base") or {}):
        return False
    old_grid, new_grid = old.get("grid") or {}, new.get("grid") or {}
    if set(old_grid) != set(new_grid):
        return False
    for key, values in old_grid.items():
        before = {_grid_label(v): v for v in values}
        after = {_grid_label(v): v for v in new_grid[key]}
        if any(before[label] != after[label] for label in before.keys() & after.keys()):
            return False
    return True


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    executor: Executor | None = None,
    workers: int | None = None,
    progress: bool = True,
    mode: str = "full",
    figures: bool = True,
    vectorize: bool = True,
) -> SweepResult:
    """Run every unfinished cell of ``spec`` and write results, summary and figures to ``out_dir``.

    ``vectorize``: train cells that differ only in seed and objective as vectorised groups
    (:func:`plan_units`; cells of other models run one by one either way).

    The folder is locked for the sweep's duration (a second sweep into it gets a
    :class:`~torchmim.locking.FolderLockedError`). A cell that fails is listed in
    ``failures.json`` and :attr:`SweepResult.failures`; the other cells go on.
    """
    out = Path(out_dir)
    with FolderLock(out, what="sweep folder"):
        clean_temporaries(out)
        return _run_sweep(spec, out, executor, workers, progress, mode, figures, vectorize)


def _run_sweep(spec: SweepSpec, out: Path, executor: Executor | None, workers: int | None,
               progress: bool, mode: str, figures: bool, vectorize: bool) -> SweepResult:
    cells = expand(spec)
    state_file = out / "sweep.json"
    state = read_json(state_file)
    state = state if isinstance(state, dict) else {}
    if state.get("cells_definition") and not _compatible(state["cells_definition"],
                                                          spec.cells_definition()):
        raise ConfigError(f"{out} holds the results of a different sweep (name "
                          f"{state.get('name')!r}, mode {state.get('mode')!r}): its base config or "
                          "grid differ; use another --out folder or delete it")
    state.update({"name": spec.name, "mode": mode, "spec": to_dict(spec),
                  "cells_definition": spec.cells_definition(), "cells": len(cells)})
    state.setdefault("wall_seconds", 0.0)
    atomic_write_text(state_file, json.dumps(state, indent=2) + "\n")

    metrics: dict[str, dict[str, Any]] = {}
    todo = []
    for cell in cells:
        done = _finished_metrics(cell, out)
        if done is not None:
            metrics[cell.id] = done
        else:
            todo.append(cell)
    failures: dict[str, str] = {}
    by_id = {c.id: c for c in cells}

    def rows() -> list[dict[str, Any]]:
        return [_row(c, metrics[c.id]) for c in cells if c.id in metrics]

    def save_tables() -> None:
        write_csv(out / "results.csv", rows(), first=["cell", "objective", "seed", *spec.grid])
        atomic_write_text(out / "failures.json", json.dumps(failures, indent=2) + "\n")

    start = time.perf_counter()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"sweep {spec.name}",
                   unit="cell", dynamic_ncols=True)
    executor = executor or make_executor(workers)
    root = str(out.resolve())
    payloads = [{"cells": [c.to_payload() for c in unit], "root": root, "vectorized": vectorized}
                for unit, vectorized in schedule(plan_units(todo, vectorize=vectorize))]
    state["vectorize"] = vectorize
    try:
        for payload, results in executor.map(run_unit, payloads):
            if isinstance(results, BaseException):  # the worker process died (or the pool broke)
                results = _group_error([Cell.from_payload(c) for c in payload["cells"]], results)
            for result in results:
                if "error" in result:
                    failures[result["id"]] = result["error"]
                else:
                    metrics[result["id"]] = result["metrics"]
            save_tables()
            if bar is not None:
                bar.update(len(results))
                bar.set_postfix_str(by_id[results[-1]["id"]].id, refresh=False)
    finally:
        if bar is not None:
            bar.close()
        state["wall_seconds"] = state.get("wall_seconds", 0.0) + (time.perf_counter() - start)
        state["finished"] = len(metrics)
        state["failed"] = len(failures)
        atomic_write_text(state_file, json.dumps(state, indent=2) + "\n")
    save_tables()
    result_rows = rows()
    if result_rows:
        summarize(result_rows, spec, out)
        write_claims(result_rows, spec, out)
        if figures:
            _, skipped = draw_sweep_figures(spec, out, result_rows, cells)
            state["skipped_figures"] = skipped
            atomic_write_text(state_file, json.dumps(state, indent=2) + "\n")
    return SweepResult(spec, out, result_rows, failures, cells)


