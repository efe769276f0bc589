"""Config dataclasses ⇄ dicts ⇄ YAML/JSON files, strictly.

Configs live at the edge (runs, CLI, saved models). :func:`from_dict` builds a dataclass from a plain
dict and rejects anything it does not understand with a :class:`~torchmim.errors.ConfigError` that names
the offending key by its dotted path (``model.hiden: unknown key ... did you mean 'hidden'?``), so a typo
never silently falls back to a default.

A dataclass whose class has a ``__registry__`` is *polymorphic*: the dict's ``name`` picks the concrete
class from that registry (e.g. ``objective: {name: vae}`` → :class:`~torchmim.objectives.VAE`), and
:func:`to_dict` writes the name back.

A config class may migrate dicts written by older versions: if it defines a classmethod
``upgrade_dict(data) -> dict``, :func:`from_dict` passes it the dict (after the registry has picked
the class, before the strict key check), so old files and saved models keep loading while
:func:`to_dict` writes only the current form.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import numbers
import os
import tempfile
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError
from .registry import suggest

__all__ = [
    "apply_overrides",
    "check_fields",
    "check_number",
    "from_dict",
    "load_config_file",
    "parse_overrides",
    "save_config_file",
    "to_dict",
]

T = TypeVar("T")
_MISSING = object()


def _registry_of(cls: type) -> Any:
    return cls.__dict__.get("__registry__") or next(
        (b.__dict__["__registry__"] for b in cls.__mro__ if "__registry__" in b.__dict__), None
    )


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check / convert ``value`` to the annotated type ``tp``."""
    if tp is Any or tp is object:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} does not match {tp}")
    if origin is typing.Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return value
        return from_dict(tp, value, where=where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)  # a NumPy integer
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        number: float | None = None
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            number = float(value)  # also NumPy numbers
        elif isinstance(value, str):
            try:
                number = float(value)  # YAML reads "1e-3" as a string
            except ValueError:
                pass
        if number is None or math.isnan(number):  # NaN is never a meaningful option
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any] | None, *, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and ill-typed values."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options, got {data!r}")
    registry = _registry_of(cls)
    data = dict(data)
    if registry is not None:
        name = data.pop("name", None)
        if name is None:
            default = getattr(cls, "default_name", None)
            if default is None:
                raise ConfigError(f"{where}: missing 'name' (one of {', '.join(registry.names())})")
            name = default
        try:
            cls = registry.get(name)
        except ConfigError as e:
            raise ConfigError(f"{where}.name: {e}") from None
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    upgrade = getattr(cls, "upgrade_dict", None)
    if callable(upgrade):
        data = dict(upgrade(data))
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{where}.{key}: unknown key.{suggest(str(key), list(fields))} "
                f"Valid keys: {', '.join(fields)}"
            )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


@functools.lru_cache(maxsize=None)
def _field_hints(cls: type) -> tuple[tuple[str, Any], ...]:
    try:
        hints = get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved: nothing to check
        return ()
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls)
                 if f.init and f.name in hints)


def check_fields(obj: Any, where: str) -> None:
    """Check every field of dataclass ``obj`` against its annotation, as :func:`from_dict` does
    for a dict, and store the converted value (``3.0`` → ``3`` for an ``int``).

    For ``__post_init__``: a config built in Python (``TrainerConfig(epochs="3")``) is then
    refused with the same one-line :class:`~torchmim.errors.ConfigError` as one read from YAML
    (``train.epochs: expected an integer, got '3'``), instead of a ``TypeError`` later. Works
    on frozen dataclasses too. ``where`` is the config section (``"train"``).
    """
    for name, tp in _field_hints(type(obj)):
        value = getattr(obj, name)
        new = _coerce(value, tp, f"{where}.{name}")
        if new is not value:
            object.__setattr__(obj, name, new)


def check_number(value: Any, where: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, integer: bool = False, none: bool = False) -> None:
    """Raise a one-line :class:`~torchmim.errors.ConfigError` unless ``value`` is a finite number
    (an integer with ``integer``) within ``[low, high]`` (``(low, high]`` with ``low_open``);
    ``None`` passes with ``none``. ``where`` names the option (``"train.lr"``)."""
    if value is None and none:
        return
    kind = "an integer" if integer else "a finite number"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"<= {high:g}")
    want = (" and ".join(bounds) + (" or null" if none else "") + f" ({kind})" if bounds
            else kind + (" or null" if none else ""))
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and integer:
        ok = isinstance(value, numbers.Integral)
    if ok and not integer:
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise ConfigError(f"{where} must be {want}, got {value!r}")


def to_dict(obj: Any) -> Any:
    """Plain dict/list form of a (possibly nested, possibly polymorphic) config dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        registry = _registry_of(type(obj))
        if registry is not None:
            out["name"] = registry.name_of(obj)
        for f in dataclasses.fields(obj):
            if f.init:
                out[f.name] = to_dict(getattr(obj, f.name))
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _yaml_error(e: yaml.YAMLError) -> str:
    """A YAML parser error as one line: the problem and where (``line 2, column 2``)."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or str(e)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON file into a dict, with one-line errors."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder, not a file")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (it is not UTF-8)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_error(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of options")
    return data


def save_config_file(config: Any, path: str | Path) -> None:
    """Write a config dataclass (or dict) as YAML or JSON, chosen by the file extension.

    The file is replaced atomically (written to a temporary file in the same folder, then
    renamed), so a reader never sees half a config. A path that cannot be written (its folder
    is a file, no permission) is a one-line :class:`~torchmim.errors.ConfigError`.
    """
    path = Path(path)
    data = to_dict(config)
    if path.suffix == ".json":
        try:
            text = json.dumps(data, indent=2, allow_nan=False) + "\n"
        except ValueError:
            raise ConfigError(f"{path}: the config holds NaN or Infinity, which JSON cannot "
                              "store") from None
    else:
        text = yaml.safe_dump(data, sort_keys=False)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None else e.strerror or e
        raise ConfigError(f"cannot write the config to {path}: {why}") from None


def parse_overrides(items: Iterable[str]) -> list[tuple[list[str], Any]]:
    """Parse ``key.sub=value`` strings; values are read as YAML (``10`` → int, ``[5, 20]`` → list)."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.subkey=value")
        key, raw = item.split("=", 1)
        if not key.strip():
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip().split("."), value))
    return out


def apply_overrides(data: dict[str, Any], items: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key.sub=value`` overrides applied (validated later)."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for keys, value in parse_overrides(items):
        node = data
        for k in keys[:-1]:
            child = node.get(k, _MISSING)
            if child is _MISSING or child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {'.'.join(keys)}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return data
