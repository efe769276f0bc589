"""Name → object registries (objectives, priors, networks, models, data sets, experiments).

Modelled on ``torch.distributions.kl.register_kl``: a component registers itself under a name with a
decorator, configs refer to components by name, and saved models store the registry name plus the
config instead of pickled code. Looking up an unknown name raises a :class:`~torchmim.errors.ConfigError`
that lists the known names and suggests the closest one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")

__all__ = ["Registry", "suggest"]


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

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as ``@registry.register("name")`` or directly."""
        key = name.lower()

        def _add(o: T) -> T:
            if key in self._entries and self._entries[key] is not o:
                raise ConfigError(f"{self.kind} {name!r} is already registered")
            self._entries[key] = o
            return o

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> T:
        """Look ``name`` up; an unknown name raises :class:`ConfigError` listing the known names."""
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} name must be a string, got {type(name).__name__}")
        try:
            return self._entries[name.lower()]
        except KeyError:
            known = self.names()
            raise ConfigError(
                f"unknown {self.kind} {name!r}.{suggest(name.lower(), known)} "
                f"Known {self.kind}s: {', '.join(known)}"
            ) from None

    def build(self, name: str, *args, **kwargs):
        """Instantiate (call) the entry registered under ``name`` with the given arguments."""
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._entries)

    def name_of(self, obj: object) -> str:
        """The name under which ``obj`` (or ``type(obj)``) is registered."""
        for key, value in self._entries.items():
            if value is obj or value is type(obj):
                return key
        raise ConfigError(f"{obj!r} is not a registered {self.kind}")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
