"""Sweeps as data: a declarative grid over run configs, expanded into cells.

A :class:`SweepSpec` is a base run config plus a grid of values for dotted config keys
(``model.hidden``, ``objective.name``, ``seed``); every combination is a :class:`Cell`, the unit of
work. A grid value may also be a *variant* ``{"label": ..., "set": {dotted key: value, ...}}`` that
changes several fields at once (learned vs fixed priors, CE→MIM vs MIM→CE).

``quick`` holds what ``--quick`` changes (fewer seeds and epochs, less data) so that the same grid
shows its shape in minutes; the default is the paper's protocol. Specs round-trip through YAML, so
users define their own sweeps in a file (``torchmim sweep my_sweep.yaml``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import apply_overrides, from_dict, load_config_file, to_dict
from ..errors import ConfigError
from ..runs import RunConfig

__all__ = ["SweepSpec", "Cell", "FigureSpec", "expand", "load_sweep_file", "param_label"]


@dataclass
class FigureSpec:
    """A figure drawn from a sweep's results.

    Attributes:
        kind: a name in :data:`torchmim.experiments.figures.SWEEP_FIGURES` (``curves``,
            ``toy_panels``, ``consistency_1d``, ...).
        file: output file name (PNG) in the sweep folder.
        options: keyword options of the figure function.
    """

    kind: str
    file: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepSpec:
    """A named, declarative grid of runs.

    Attributes:
        name: the sweep's name (``torchmim sweep NAME``).
        description: one paragraph for the results page.
        paper: what the paper shows for this experiment (for the results page).
        base: a (partial) run config, as nested dicts.
        grid: dotted config key (or variant key) → list of values; cells are the product.
        quick: ``{"grid": {...}, "set": {dotted key: value}}`` applied by ``--quick``.
        x: grid key on the figures' x-axis; ``group``: grid key of the series (MIM blue, VAE red;
            a group that is not a grid key gives one series).
        metrics: metric columns aggregated and plotted.
        figures: figures drawn once the cells are finished.
    """

    name: str
    description: str = ""
    paper: str = ""
    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    x: str | None = None
    x_label: str = ""
    group: str = "objective.name"
    metrics: list[str] = field(default_factory=lambda: ["mi", "nll", "recon_rmse", "knn_acc"])
    figures: list[FigureSpec] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            raise ConfigError(f"sweep name {self.name!r} may only use letters, digits, '.', '_', '-'")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweep {self.name}: grid.{key} must be a non-empty list")
        if self.x is not None and self.x not in self.grid:
            raise ConfigError(f"sweep {self.name}: x {self.x!r} is not a grid key "
                              f"(grid keys: {', '.join(self.grid)})")

    def resolved(self, *, quick: bool = False, overrides: list[str] | None = None,
                 seeds: int | None = None, epochs: int | None = None) -> SweepSpec:
        """The spec with ``--quick``, ``--seeds``, ``--epochs`` and ``-s key=value`` applied."""
        spec = copy.deepcopy(self)
        sets: list[str] = []
        if quick:
            unknown = set(self.quick) - {"grid", "set"}
            if unknown:
                raise ConfigError(f"sweep {self.name}: quick may only hold 'grid' and 'set', "
                                  f"not {sorted(unknown)}")
            for key, values in self.quick.get("grid", {}).items():
                if key not in spec.grid:
                    raise ConfigError(f"sweep {self.name}: quick.grid.{key} is not a grid key")
                spec.grid[key] = list(values)
            sets += [f"{k}={json.dumps(v)}" for k, v in self.quick.get("set", {}).items()]
        if epochs is not None:
            sets.append(f"train.epochs={epochs}")
        sets += list(overrides or [])
        spec.base = apply_overrides(spec.base, sets)
        if seeds is not None:
            if "seed" not in spec.grid:
                raise ConfigError(f"sweep {self.name} has no 'seed' grid to resize")
            spec.grid["seed"] = list(range(seeds))
        spec.__post_init__()
        return spec


@dataclass
class Cell:
    """One run of a sweep: its id, the grid values that define it and its full run config."""

    id: str
    params: dict[str, Any]
    config: RunConfig

    def to_payload(self) -> dict[str, Any]:
        """Picklable, plain-data form (sent to worker processes)."""
        return {"id": self.id, "params": self.params, "config": self.config.to_dict()}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Cell:
        return cls(payload["id"], payload["params"], RunConfig.from_dict(payload["config"]))


def param_label(value: Any) -> Any:
    """The table value of a grid value: a variant's label, else the value itself."""
    return value.get("label") if isinstance(value, dict) else value


def _slug(key: str, value: Any) -> str:
    parts = key.split(".")
    short = parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]
    text = str(param_label(value))
    if isinstance(value, (list, tuple)):
        text = "x".join(map(str, value))
    text = re.sub(r"[^A-Za-z0-9.]+", "", text.replace("→", "to").replace("->", "to"))
    return f"{short}-{text}"


def expand(spec: SweepSpec) -> list[Cell]:
    """All cells of the grid, in grid order (the first key varies slowest)."""
    keys = list(spec.grid)
    cells = []
    seen: set[str] = set()
    for values in itertools.product(*(spec.grid[k] for k in keys)):
        sets = []
        params = {}
        for key, value in zip(keys, values):
            if isinstance(value, dict):
                if "set" not in value:
                    raise ConfigError(f"sweep {spec.name}: a variant of grid.{key} needs 'set'")
                sets += [f"{k}={json.dumps(v)}" for k, v in value["set"].items()]
            else:
                sets.append(f"{key}={json.dumps(value)}")
            params[key] = param_label(value)
        try:
            config = RunConfig.from_dict(apply_overrides(spec.base, sets))
        except ConfigError as e:
            raise ConfigError(f"sweep {spec.name}, cell {params}: {e}") from None
        cell_id = "_".join(_slug(k, v) for k, v in zip(keys, values))
        if cell_id in seen:  # labels that slug alike: disambiguate with a hash
            cell_id += "-" + hashlib.sha1(json.dumps(config.to_dict()).encode()).hexdigest()[:6]
        seen.add(cell_id)
        cells.append(Cell(cell_id, params, config))
    return cells


def load_sweep_file(path: str | Path) -> SweepSpec:
    """A user-defined sweep from YAML/JSON (same fields as :class:`SweepSpec`)."""
    data = load_config_file(path)
    data.setdefault("name", Path(path).stem)
    return from_dict(SweepSpec, data, where=f"sweep {Path(path).name}")


def spec_to_dict(spec: SweepSpec) -> dict[str, Any]:
    return to_dict(spec)
