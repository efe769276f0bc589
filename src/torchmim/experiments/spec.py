"""Sweeps as data: a declarative grid over run configs, expanded into cells.

A :class:`SweepSpec` is a base run config plus a grid of values for dotted config keys
(``model.hidden``, ``objective.name``, ``seed``); every combination is a :class:`Cell`, the unit of
work. A grid value may also be a *variant* ``{"label": ..., "set": {dotted key: value, ...}}`` that
changes several fields at once (learned vs fixed priors, CE→MIM vs MIM→CE).

``presets`` are named reductions of the same grid: ``quick`` (``--quick``: fewer seeds and epochs,
less data, the shape of the result in minutes) and others such as ``cpu`` for the image tables
(``--preset cpu``); the default is the paper's protocol. ``exclude`` drops combinations that make no
sense (A-MIM with convHVAE). Specs round-trip through YAML, so users define their own sweeps in a file
(``torchmim sweep my_sweep.yaml``).
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

from ..config import apply_overrides, from_dict, load_config_file, parse_overrides, to_dict
from ..errors import ConfigError
from ..registry import suggest
from ..runs import RunConfig
from .statistics import resolve_claims, side_labels

__all__ = ["Cell", "FigureSpec", "SweepSpec", "expand", "load_sweep_file", "param_label"]


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
        exclude: rules ``{grid key: value or [values]}`` (variants by label); a cell matching every
            key of a rule is dropped.
        presets: name → ``{"grid": {key: values or variant labels}, "set": {dotted key: value},
            "description": str}``; ``quick`` is the one ``--quick`` applies.
        x: grid key on the figures' x-axis; ``group``: grid key of the series (MIM blue, VAE red;
            a group that is not a grid key gives one series).
        metrics: metric columns aggregated and plotted.
        figures: figures drawn once the cells are finished.
        overrides: ``key.sub=value`` entries applied to every cell *after* its grid values (a
            preset's ``set``, ``--set`` and ``--epochs`` land here, so a variant that sets a whole
            section, e.g. ``data: {name: mnist}``, does not undo them).
        compare: the two ``group`` values compared seed by seed in ``claims.csv`` (``a − b``); a
            side may be a list of values, one per setting (``[[mim, amim], vae]``: A-MIM where a
            setting has it instead of MIM).
        claims: metric → ``"higher"`` or ``"lower"``: the side of zero the paper puts
            ``compare[0] − compare[1]`` on (:mod:`torchmim.experiments.statistics`); ``None``: the
            paper's claims about MIM − VAE (``PAPER_CLAIMS``); ``{}``: no claims table.
        claim_exceptions: settings where the paper claims the other side, or nothing
            (``{"where": {grid key: value or [values]}, "metric": name, "claim": "higher" |
            "lower" | null}``; :func:`~torchmim.experiments.statistics.apply_claim_exceptions`).
    """

    name: str
    description: str = ""
    paper: str = ""
    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    x: str | None = None
    x_label: str = ""
    group: str = "objective.name"
    metrics: list[str] = field(default_factory=lambda: ["mi", "nll", "recon_rmse", "knn_acc"])
    figures: list[FigureSpec] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    compare: list[Any] = field(default_factory=lambda: ["mim", "vae"])
    claims: dict[str, str] | None = None
    claim_exceptions: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.name):
            raise ConfigError(f"sweep name {self.name!r} may only use letters, digits, '.', '_', '-'")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweep {self.name}: grid.{key} must be a non-empty list")
        if self.x is not None and self.x not in self.grid:
            raise ConfigError(f"sweep {self.name}: x {self.x!r} is not a grid key "
                              f"(grid keys: {', '.join(self.grid)})")
        sides = [side_labels(c) for c in self.compare]
        if (len(sides) != 2 or not all(side and all(isinstance(v, str) for v in side)
                                       for side in sides) or set(sides[0]) & set(sides[1])):
            raise ConfigError(f"sweep {self.name}: compare must name two different "
                              f"{self.group} values (or two disjoint lists), got {self.compare}")
        claims = resolve_claims(self.claims, where=f"sweep {self.name}: claims")
        if not isinstance(self.claim_exceptions, list):
            raise ConfigError(f"sweep {self.name}: claim_exceptions must be a list, got "
                              f"{self.claim_exceptions!r}")
        settings = [k for k in self.grid if k not in ("seed", self.group)]
        for e in self.claim_exceptions:
            if (not isinstance(e, dict) or set(e) - {"where", "metric", "claim"}
                    or not isinstance(e.get("metric"), str)
                    or not isinstance(e.get("where"), dict) or not e["where"]
                    or e.get("claim") not in ("higher", "lower", None)):
                raise ConfigError(f"sweep {self.name}: a claim exception is {{where: {{key: "
                                  f"value}}, metric: name, claim: higher|lower|null}}, got {e!r}")
            # a typo would silently leave the paper's other side (or no claim) unapplied; the
            # values are not checked: a preset's smaller grid may leave a data set out
            unknown = [k for k in e["where"] if k not in settings]
            if unknown or e["metric"] not in claims:
                raise ConfigError(
                    f"sweep {self.name}: claim exception {e!r} names "
                    + (f"{', '.join(unknown)}, not a setting of the grid ({', '.join(settings)})"
                       if unknown else f"metric {e['metric']!r}, which the sweep does not claim "
                       f"({', '.join(claims)})"))

    def resolved(self, *, preset: str | None = None, quick: bool = False,
                 overrides: list[str] | None = None, seeds: int | None = None,
                 epochs: int | None = None, only: dict[str, list[Any]] | None = None) -> SweepSpec:
        """The spec with a preset (``quick=True`` means ``preset="quick"``), ``--seeds``,
        ``--epochs``, ``-s key=value`` overrides and ``only`` (grid key → the values or variant labels
        to keep) applied."""
        spec = copy.deepcopy(self)
        sets: list[str] = []
        preset = "quick" if quick and preset is None else preset
        if preset is not None:
            if preset not in self.presets:
                raise ConfigError(f"sweep {self.name} has no preset {preset!r}."
                                  f"{suggest(preset, list(self.presets))} "
                                  f"Presets: {', '.join(self.presets) or 'none'}")
            chosen = self.presets[preset]
            unknown = set(chosen) - {"grid", "set", "description"}
            if unknown:
                raise ConfigError(f"sweep {self.name}: preset {preset!r} may only hold 'grid', "
                                  f"'set' and 'description', not {sorted(unknown)}")
            for key, values in chosen.get("grid", {}).items():
                spec.grid[key] = spec._select(key, list(values), f"presets.{preset}.grid")
            sets += [f"{k}={json.dumps(v)}" for k, v in chosen.get("set", {}).items()]
        for key, values in (only or {}).items():  # from the full grid, so it can undo a preset's cut
            spec.grid[key] = self._select(key, list(values), "--grid")
        if epochs is not None:
            sets.append(f"train.epochs={epochs}")
        sets += list(overrides or [])
        written = spec._grid_paths()
        for keys, _ in parse_overrides(sets):
            key = ".".join(keys)
            clash = [p for p in written if p == key or p.startswith(key + ".")]
            if clash:
                raise ConfigError(
                    f"sweep {self.name}: the override {key!r} would replace what the grid sets "
                    f"({', '.join(sorted(clash))}); restrict the grid with --grid instead")
        spec.overrides = list(spec.overrides) + sets
        if seeds is not None:
            if "seed" not in spec.grid:
                raise ConfigError(f"sweep {self.name} has no 'seed' grid to resize")
            spec.grid["seed"] = list(range(seeds))
        spec.__post_init__()
        return spec

    def _grid_paths(self) -> set[str]:
        """The dotted config paths the grid writes: plain keys and every key a variant sets."""
        def flat(prefix: str, value: Any) -> list[str]:
            if isinstance(value, dict) and value:
                return [p for k, v in value.items() for p in flat(f"{prefix}.{k}", v)]
            return [prefix]

        paths: set[str] = set()
        for key, values in self.grid.items():
            variants = [v for v in values if isinstance(v, dict)]
            if not variants:
                paths.add(key)
            for v in variants:
                for k, val in v.get("set", {}).items():
                    paths.update(flat(k, val))
        return paths

    def _select(self, key: str, values: list[Any], where: str) -> list[Any]:
        """``values`` for grid ``key``; strings select variants of the original grid by label."""
        if key not in self.grid:
            raise ConfigError(f"sweep {self.name}: {where}: {key!r} is not a grid key "
                              f"(grid keys: {', '.join(self.grid)})")
        variants = {v["label"]: v for v in self.grid[key] if isinstance(v, dict) and "label" in v}
        if not variants:
            return values
        out = []
        for v in values:
            if isinstance(v, dict):
                out.append(v)
            elif str(v) in variants:
                out.append(variants[str(v)])
            else:
                raise ConfigError(f"sweep {self.name}: {where}: {v!r} is not a variant of {key!r} "
                                  f"(variants: {', '.join(variants)})")
        return out

    def cells_definition(self) -> dict[str, Any]:
        """What determines the cells (base, grid, exclusions): two specs agreeing here share results."""
        return to_dict({"base": self.base, "grid": self.grid, "exclude": self.exclude,
                        "overrides": self.overrides})


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


def _excluded(spec: SweepSpec, params: dict[str, Any]) -> bool:
    for rule in spec.exclude:
        if all(params.get(k) in (v if isinstance(v, list) else [v]) for k, v in rule.items()):
            return True
    return False


def expand(spec: SweepSpec) -> list[Cell]:
    """All cells of the grid, in grid order (the first key varies slowest), minus ``exclude``."""
    keys = list(spec.grid)
    cells = []
    seen: set[str] = set()
    for values in itertools.product(*(spec.grid[k] for k in keys)):
        if _excluded(spec, {k: param_label(v) for k, v in zip(keys, values)}):
            continue
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
            config = RunConfig.from_dict(apply_overrides(spec.base, sets + spec.overrides))
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
