"""Sweep backends by name: where a sweep's units of work run (``torchmim sweep --backend NAME``).

* ``local`` (the default): worker processes on this machine
  (:class:`~torchmim.experiments.executors.LocalProcessExecutor`; one worker runs serially);
* ``serial``: in the sweep's own process, one unit after the other;
* ``ray``: tasks on a Ray cluster (:class:`~torchmim.experiments.ray_executor.RayExecutor`; needs
  ``pip install torchmim[ray]``).

A backend is a factory ``(workers=..., address=..., **options) -> Executor`` registered in
:data:`BACKENDS`; another one (a job queue) is one module that registers itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from .executors import Executor, SerialExecutor, make_executor

__all__ = ["BACKENDS", "make_backend"]

#: Sweep backends: ``factory(workers=None, address=None, **options) -> Executor``.
BACKENDS: Registry[Callable[..., Executor]] = Registry("sweep backend")


def _no_address(name: str, address: str | None) -> None:
    if address is not None:
        raise ConfigError(f"--address is for the ray backend, not {name!r}")


@BACKENDS.register("local")
def _local(workers: int | None = None, address: str | None = None, **_: Any) -> Executor:
    _no_address("local", address)
    return make_executor(workers)


@BACKENDS.register("serial")
def _serial(workers: int | None = None, address: str | None = None, **_: Any) -> Executor:
    _no_address("serial", address)
    return SerialExecutor()


@BACKENDS.register("ray")
def _ray(workers: int | None = None, address: str | None = None, **options: Any) -> Executor:
    from .ray_executor import RayExecutor

    return RayExecutor(address=address, local_cpus=workers, **options)


def make_backend(name: str = "local", *, workers: int | None = None, address: str | None = None,
                 **options: Any) -> Executor:
    """The executor of backend ``name`` (an unknown name: a one-line ConfigError listing them).

    >>> type(make_backend("serial")).__name__
    'SerialExecutor'
    """
    return BACKENDS.get(name)(workers=workers, address=address, **options)
