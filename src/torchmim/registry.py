"""Name → object registries (objectives, priors, networks, models, data sets, experiments).

Modelled on ``torch.distributions.kl.register_kl``: a component registers itself under a name with a
decorator, configs refer to components by name, and saved models store the registry name plus the
config instead of pickled code. Looking up an unknown name raises a :class:`~torchmim.errors.ConfigError`
that lists the known names and suggests the closest one.

A renamed entry keeps its old name as an *alias* (:meth:`Registry.alias`), so configs and saved
models written before the rename still load; an alias resolves to the entry but is never written
back (:meth:`Registry.name_of` and :meth:`Registry.canonical` give the registered name).

Plugins: a package registers its own data sets, priors, networks or objectives by declaring an
entry point in the group ``torchmim.plugins`` (``[project.entry-points."torchmim.plugins"]
mine = "mypkg.torchmim_plugin"``; a ``module:function`` value is imported and called). The command
line enables them for the duration of one command (:func:`plugins_enabled`), and the first registry
lookup then imports them all (:func:`load_plugins`), together with the modules named in
``$TORCHMIM_IMPORT`` (what ``torchmim --import MODULE`` adds, so that a sweep's worker processes,
started during the command, import them too); the environment is restored when the command ends.
In Python, call :func:`load_plugins` or import the module.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")

__all__ = ["PLUGIN_GROUP", "Registry", "enable_plugins", "load_plugins", "plugins_enabled",
           "suggest"]

#: The entry-point group of torchmim plugins.
PLUGIN_GROUP = "torchmim.plugins"
#: Environment variables: ``TORCHMIM_PLUGINS=1`` enables plugin loading (inherited by worker
#: processes); ``TORCHMIM_IMPORT`` lists modules (comma-separated) to import with the plugins.
PLUGINS_ENV, IMPORT_ENV = "TORCHMIM_PLUGINS", "TORCHMIM_IMPORT"
_plugin_state = {"loaded": False}


def enable_plugins() -> None:
    """Let the first registry lookup load the plugins, in this process and in the worker processes
    it starts (through the environment). For the rest of the process; the CLI uses
    :func:`plugins_enabled`, which undoes it."""
    os.environ[PLUGINS_ENV] = "1"


@contextlib.contextmanager
def plugins_enabled(imports: Sequence[str] = ()) -> Iterator[None]:
    """Within the block, plugins load at the first registry lookup and ``imports`` are added to
    ``$TORCHMIM_IMPORT`` (both reach the worker processes started in the block); afterwards both
    environment variables are as before, so that later code of the same process (another command
    run in-process, a test) is not changed. Modules already imported stay imported."""
    saved = {k: os.environ.get(k) for k in (PLUGINS_ENV, IMPORT_ENV)}
    known = [n for n in os.environ.get(IMPORT_ENV, "").split(",") if n]
    os.environ[PLUGINS_ENV] = "1"
    if imports:
        os.environ[IMPORT_ENV] = ",".join(dict.fromkeys(known + list(imports)))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _import(name: str, what: str) -> object:
    try:
        return importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - a plugin may fail in any way; say which one
        raise ConfigError(f"{what} {name!r} failed to import: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None


def load_plugins() -> list[str]:
    """Import every ``torchmim.plugins`` entry point (calling it when it names a function) and
    every module of ``$TORCHMIM_IMPORT``, once per process; returns what was loaded. A plugin
    that fails is a one-line :class:`ConfigError` naming it."""
    from importlib.metadata import entry_points

    if _plugin_state["loaded"]:
        return []
    _plugin_state["loaded"] = True  # first, so that lookups made by a plugin do not recurse
    done = []
    for ep in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        module, _, attr = ep.value.partition(":")
        obj = _import(module.strip(), f"plugin {ep.name!r}: module")
        if attr:
            for part in attr.strip().split("."):
                obj = getattr(obj, part, None)
            if not callable(obj):
                raise ConfigError(f"plugin {ep.name!r}: {ep.value!r} is not a function")
            obj()
        done.append(ep.name)
    for name in filter(None, (n.strip() for n in os.environ.get(IMPORT_ENV, "").split(","))):
        _import(name, "module")
        done.append(name)
    return done


def _autoload() -> None:
    if not _plugin_state["loaded"] and os.environ.get(PLUGINS_ENV) == "1":
        load_plugins()


def suggest(name: str, choices: list[str]) -> str:
    """Return a ``" Did you mean 'x'?"`` hint for a misspelt ``name`` (empty string if none is close)."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


class Registry(Generic[T]):
    """A named mapping from strings to registered objects (usually classes or factories).

    >>> ACTIVATIONS = Registry("activation")
    >>> @ACTIVATIONS.register("identity")
    ... class Identity: ...
    >>> ACTIVATIONS.get("identity") is Identity
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}  # old name -> registered name

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")`` or directly."""
        key = name.lower()

        def _add(o: T) -> T:
            if key in self._entries and self._entries[key] is not o:
                raise ConfigError(f"{self.kind} {name!r} is already registered")
            if key in self._aliases:
                raise ConfigError(f"{self.kind} {name!r} is already an alias of "
                                  f"{self._aliases[key]!r}")
            self._entries[key] = o
            return o

        return _add(obj) if obj is not None else _add

    def alias(self, old_name: str, name: str) -> None:
        """Let ``old_name`` (e.g. the name an entry had before a rename) look up the entry ``name``.

        ``get(old_name)`` returns the entry of ``name``; ``names()`` lists only registered names and
        ``name_of`` returns ``name``, so what is written back is always the current name.
        """
        key, target = old_name.lower(), name.lower()
        if target not in self._entries:
            raise ConfigError(f"cannot alias {old_name!r} to {name!r}: no {self.kind} {name!r} "
                              "is registered")
        if key in self._entries or self._aliases.get(key, target) != target:
            raise ConfigError(f"{self.kind} {old_name!r} is already registered")
        self._aliases[key] = target

    def canonical(self, name: str) -> str:
        """The registered name that ``name`` (a registered name or an alias, any case) refers to;
        an unknown name raises :class:`ConfigError` listing the known names."""
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} name must be a string, got {type(name).__name__}")
        _autoload()
        key = self._aliases.get(name.lower(), name.lower())
        if key not in self._entries:
            known = self.names()
            close = difflib.get_close_matches(name.lower(), known + list(self._aliases), n=1,
                                              cutoff=0.6)
            hint = f" Did you mean {self._aliases.get(close[0], close[0])!r}?" if close else ""
            aliases = ", ".join(f"{a} -> {t}" for a, t in sorted(self._aliases.items()))
            raise ConfigError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(known)}"
                + (f" (old names: {aliases})" if aliases else "")
            )
        return key

    def get(self, name: str) -> T:
        """Look ``name`` (or an alias) up; an unknown name raises :class:`ConfigError` listing the
        known names."""
        return self._entries[self.canonical(name)]

    def build(self, name: str, *args, **kwargs):
        """Instantiate (call) the entry registered under ``name`` with the given arguments."""
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        """Sorted registered names (aliases left out)."""
        _autoload()
        return sorted(self._entries)

    def name_of(self, obj: object) -> str:
        """The name under which ``obj`` (or ``type(obj)``) is registered."""
        for key, value in self._entries.items():
            if value is obj or value is type(obj):
                return key
        raise ConfigError(f"{obj!r} is not a registered {self.kind}")

    def __contains__(self, name: object) -> bool:
        _autoload()
        return isinstance(name, str) and (name.lower() in self._entries
                                          or name.lower() in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
