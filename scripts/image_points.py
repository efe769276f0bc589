"""Backfill the per-test-image values (``points.npz``) of a sweep's finished cells, then write the
claims paired over test images (``claims_test_points.md``/``.csv``).

    python scripts/image_points.py results/image-cpu-mnist [--cells ID ...] [--force]
        [--accept-mismatch]

For sweeps run before ``eval.save_points`` existed. For each finished cell (``metrics.json`` and
``model.pt``) without ``points.npz`` (or each of ``--cells``; ``--force``: every finished cell) it
takes the cell's run folder lock, reloads the trained model onto the cell's ``train.device``,
rebuilds the data splits from the cell's ``config.yaml`` and evaluates as the run did
(``torchmim.runs.load_run_data`` and ``evaluate_trained``, the functions the runs use) with
torch's thread count set to the one the cell's ``environment.json`` recorded, and checks the
recomputed ``nll`` and ``knn_acc`` against the cell's ``metrics.json`` (both printed). Within
:data:`TOLERANCE` (relative) it writes ``points.npz`` atomically; beyond it writes nothing for
that cell (``--accept-mismatch``: writes it all the same) and, after the other cells, exits 1
naming each such cell, metric and the two values, without writing the figure. Then it (re)writes
the ``test_point_claims`` figure of :mod:`torchmim.experiments.images` into the folder."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from torchmim.config import from_dict
from torchmim.errors import TorchMIMError
from torchmim.evaluation import POINTS_FILE, write_points
from torchmim.experiments import with_current_claims
from torchmim.experiments.figures import FigureSkipped
from torchmim.experiments.images import test_point_claims
from torchmim.experiments.spec import SweepSpec, expand
from torchmim.io import atomic_write_text, load_model, read_json
from torchmim.locking import FolderLock
from torchmim.runs import RunConfig, evaluate_trained, load_run_data
from torchmim.threads import torch_threads
from torchmim.training import resolve_device

#: Relative difference between recomputed and saved metrics beyond which a cell's points are not
#: written (unless ``--accept-mismatch``).
TOLERANCE = 1e-6
CHECKED = ("nll", "knn_acc")


def _say(line: str) -> None:
    print(line, flush=True)  # a line per cell as it finishes, also into a log file


def _fail(message: str) -> SystemExit:
    return SystemExit(f"error: {message}")


def finished_cells(folder: Path) -> list[str]:
    """The ids of the cells of ``folder`` (a sweep's results) with ``metrics.json`` and
    ``model.pt``, in name order."""
    cells = folder / "cells"
    if not cells.is_dir():
        return []
    return sorted(p.name for p in cells.iterdir()
                  if (p / "metrics.json").is_file() and (p / "model.pt").is_file())


def recompute_points(cell_folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The evaluation of a finished run folder, as the run did it: ``(metrics, points)`` of
    :func:`~torchmim.evaluation.evaluate_points` on the data rebuilt from ``config.yaml``, the
    model on the run's ``train.device`` (a one-line error where that device is unavailable), with
    torch's threads set to the ``torch_threads`` of the run's ``environment.json`` where recorded."""
    config = RunConfig.from_file(cell_folder / "config.yaml")
    device = resolve_device(config.train.device)  # before any work: cuda on a CPU machine fails
    environment = read_json(cell_folder / "environment.json")
    threads = environment.get("torch_threads") if isinstance(environment, dict) else None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        threads = torch.get_num_threads()
    with torch_threads(threads):
        data = load_run_data(config)
        model = load_model(cell_folder / "model.pt", map_location=device).to(device)
        return evaluate_trained(config, model, data)


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def backfill(folder: str | Path, cells: Sequence[str] | None = None, *, force: bool = False,
             accept_mismatch: bool = False, echo: Any = None) -> list[dict[str, Any]]:
    """Write ``points.npz`` for the finished cells of ``folder`` that lack it (or ``cells``, or
    every finished one with ``force``), each under its run folder lock (a one-line
    :class:`~torchmim.errors.FolderLockedError` when a run holds it); returns per cell
    ``{"cell", "<metric>_saved", "<metric>_recomputed", "ok", "written"}`` (``ok``: every checked
    metric within :data:`TOLERANCE`; a cell not ``ok`` is written only with ``accept_mismatch``).
    """
    echo = echo or _say
    folder = Path(folder)
    if not folder.is_dir():
        raise _fail(f"{folder} is not a folder")
    done = finished_cells(folder)
    if not done:
        raise _fail(f"{folder} holds no finished cell (cells/<id>/metrics.json and model.pt)")
    if cells:
        unknown = [c for c in cells if c not in done]
        if unknown:
            raise _fail(f"not finished cells of {folder}: {', '.join(unknown)}")
        todo = list(cells)
    else:
        todo = [c for c in done if force or not (folder / "cells" / c / POINTS_FILE).is_file()]
    report = []
    for cell_id in todo:
        cell_folder = folder / "cells" / cell_id
        with FolderLock(cell_folder, what="run folder"):
            saved = json.loads((cell_folder / "metrics.json").read_text())
            metrics, points = recompute_points(cell_folder)
            entry: dict[str, Any] = {"cell": cell_id, "ok": True, "mismatch": []}
            for name in CHECKED:
                if name not in saved or name not in metrics:
                    continue
                old, new = float(saved[name]), float(metrics[name])
                entry[f"{name}_saved"], entry[f"{name}_recomputed"] = old, new
                if not (math.isfinite(new) and _relative(new, old) <= TOLERANCE):
                    entry["ok"] = False
                    entry["mismatch"].append(f"{name} saved {old!r} recomputed {new!r}")
            echo(f"{cell_id}: " + ", ".join(
                f"{n} saved {entry[f'{n}_saved']!r} recomputed {entry[f'{n}_recomputed']!r}"
                for n in CHECKED if f"{n}_saved" in entry))
            entry["written"] = entry["ok"] or accept_mismatch
            if not entry["ok"]:
                echo(f"WARNING: {cell_id}: the recomputed metrics differ from metrics.json by more "
                     f"than {TOLERANCE:g} relative (another data file, library version, device "
                     "or thread count?); " + ("its points.npz is written all the same "
                                             "(--accept-mismatch)" if accept_mismatch
                                             else "its points.npz is not written"))
            if entry["written"]:
                write_points(cell_folder / POINTS_FILE, points)
        report.append(entry)
    return report


def mismatch_message(report: Sequence[dict[str, Any]]) -> str | None:
    """One line naming every cell of ``report`` whose points were not written for a mismatch
    (cell, metric, saved and recomputed values), or None when there is none."""
    bad = [f"{r['cell']}: {'; '.join(r['mismatch'])}" for r in report if not r["written"]]
    if not bad:
        return None
    return (f"recomputed metrics differ from metrics.json by more than {TOLERANCE:g} relative, "
            f"no points.npz written for {len(bad)} cell(s) ({' | '.join(bad)}); "
            "--accept-mismatch writes them all the same")


def write_claims_figure(folder: str | Path, echo: Any = None) -> Path | None:
    """(Re)write ``claims_test_points.md`` (and ``.csv``) of the sweep in ``folder`` from its
    cells' ``points.npz``; returns the Markdown file, or None when no pair of cells has points."""
    echo = echo or _say
    folder = Path(folder)
    state_file = folder / "sweep.json"
    try:
        state = json.loads(state_file.read_text())
        # the paper's claims as this version states them (a sweep run before a correction)
        spec = with_current_claims(from_dict(SweepSpec, state["spec"], where=f"{state_file}: spec"))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _fail(f"cannot read the sweep's spec from {state_file}: {e}") from None
    done = set(finished_cells(folder))
    cells = [c for c in expand(spec) if c.id in done]
    rows = [{"cell": c.id} for c in cells]
    try:
        text = test_point_claims(spec, folder, rows, cells, csv="claims_test_points.csv")
    except FigureSkipped as e:
        echo(f"claims_test_points.md not written: {e}")
        return None
    path = folder / "claims_test_points.md"
    atomic_write_text(path, text)
    echo(f"wrote {path} and {folder / 'claims_test_points.csv'}")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path, help="a sweep's results folder")
    parser.add_argument("--cells", nargs="+", help="cell ids to (re)compute (default: every "
                                                   "finished cell without points.npz)")
    parser.add_argument("--force", action="store_true", help="recompute every finished cell")
    parser.add_argument("--accept-mismatch", action="store_true",
                        help="write points.npz even where the recomputed nll/knn_acc differ from "
                             f"metrics.json by more than {TOLERANCE:g} relative")
    args = parser.parse_args(argv)
    try:
        report = backfill(args.results_dir, args.cells, force=args.force,
                          accept_mismatch=args.accept_mismatch)
        message = mismatch_message(report)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            sys.exit(1)
        write_claims_figure(args.results_dir)
    except TorchMIMError as e:
        raise _fail(str(e)) from None


if __name__ == "__main__":
    main()
