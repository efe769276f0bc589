"""Sweeps on a Ray cluster: each unit of work (a cell or a vectorised group) is one Ray task.

``torchmim sweep NAME --backend ray [--address ADDR]``. Without an address, a local Ray instance
is started for the sweep and stopped after it (CPU only, on 127.0.0.1, no dashboard, a small
object store); with one, the sweep joins that cluster (``ray start --head`` on one machine,
``ray start --address HEAD:6379`` on the others) and leaves it running.

* Resources: a unit asks for ``train.threads`` CPUs (default ``cpus_per_task``, 1) and
  ``gpus_per_task`` GPUs (default 1; 0.125 puts eight units on one GPU) when its cells train on
  ``cuda``; Ray places it on a node that has them. The task's torch threads are its CPUs.
* Progress: the driver waits on the tasks (``ray.wait``) and hands each finished unit to the sweep
  runner as it finishes, which writes ``results.csv`` after every unit, as with local workers.
* Failures: a cell that raises is that cell's failure (recorded by the runner; a rerun retries
  it), not a task failure. A task whose worker process or node dies is retried by Ray up to
  ``max_retries`` times (default 2); the retry resumes each cell from its checkpoint (the run
  folder and ``resume``). After the last retry the unit's cells are reported as failed
  (``failures.json``) with a one-line :class:`RayTaskLostError`; nothing is dropped silently.
* Where results go (``shared_results``):

  - ``True`` (default): the results folder is a path every node sees (NFS, a shared disk, or one
    machine): cells write their run folders there directly, a lost worker's retry resumes from the
    checkpoint there, and an interrupted sweep rerun skips the finished cells. A worker that does
    not see the folder reports it as the cells' failure.
  - ``False``: a cell runs in a node-local folder (``$TMPDIR/torchmim-ray/<sweep>/``) and the
    task returns its run files (model, history, metrics, config; not the checkpoint) to the
    driver, which writes them into the results folder; the results table, the summary and the
    figures are then made on the driver as usual, and a rerun skips the finished cells. A
    retry on the same node resumes from the local checkpoint; on another node it starts the cell
    again (a finished cell's local folder is deleted once its files are packed).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, TorchMIMError
from ..io import TEMPORARY_FILE, atomic_write_bytes
from ..locking import LOCK_NAME
from ..registry import IMPORT_ENV, PLUGINS_ENV
from ..threads import available_cores
from .executors import Executor

__all__ = ["RayExecutor", "RayTaskLostError", "unit_resources"]

#: Run files a task returns to the driver without a shared results folder (not the checkpoint).
RETURNED_SKIP = ("checkpoint.pt", LOCK_NAME)


class RayTaskLostError(TorchMIMError, RuntimeError):
    """A Ray task failed for good: its worker or node died on every attempt, or Ray failed it."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("the ray backend needs Ray: pip install 'torchmim[ray]' "
                                     "(or pip install 'ray>=2.9')") from None
    return ray


def unit_resources(payload: dict[str, Any], cpus_per_task: float = 1,
                   gpus_per_task: float = 1) -> tuple[float, float]:
    """(CPUs, GPUs) a unit of work asks for: the largest ``train.threads`` of its cells (default
    ``cpus_per_task``), and ``gpus_per_task`` (a fraction shares a GPU: 0.125, eight units per
    GPU) when a cell trains on ``cuda``."""
    cpus, gpus = float(cpus_per_task), 0.0
    for cell in payload["cells"]:
        train = cell.get("config", {}).get("train", {})
        if train.get("threads"):
            cpus = max(cpus, float(train["threads"]))
        if str(train.get("device", "cpu")).startswith("cuda"):
            gpus = float(gpus_per_task)
    return cpus, gpus


def _local_root(root: str, base: str | None) -> Path:
    """A node-local folder (under ``base``, default the temporary folder) for the sweep whose
    results folder on the driver is ``root``."""
    name = hashlib.sha256(root.encode()).hexdigest()[:16]
    return Path(base or tempfile.gettempdir()) / "torchmim-ray" / name


def _cell_files(folder: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(folder.rglob("*")):
        if (path.is_file() and path.name not in RETURNED_SKIP
                and not TEMPORARY_FILE.match(path.name)):
            files[path.relative_to(folder).as_posix()] = path.read_bytes()
    return files


def _run_task(fn: Callable[[Any], Any], payload: dict[str, Any], threads: int,
              shared: bool, local_dir: str | None = None) -> Any:
    """A Ray task: ``fn(payload)`` with ``threads`` torch threads, in the shared results folder
    or (``shared=False``) in a node-local one whose cell files come back with the results."""
    import torch

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    ids = [c["id"] for c in payload["cells"]]
    if shared:
        if not Path(payload["root"]).is_dir():
            error = (f"the results folder {payload['root']} is not visible on node "
                     f"{socket.gethostname()}: put it on a path every node shares, or run the "
                     "sweep with --no-shared-results")
            return [{"id": i, "error": error} for i in ids]
        return fn(payload)
    local = _local_root(payload["root"], local_dir)
    (local / "cells").mkdir(parents=True, exist_ok=True)
    results = fn({**payload, "root": str(local)})
    files = {i: _cell_files(local / "cells" / i) for i in ids}
    for result in results:  # a finished cell's node-local folder is not needed any more
        if "metrics" in result:
            shutil.rmtree(local / "cells" / result["id"], ignore_errors=True)
    return {"results": results, "files": files}


def _unpack(root: str, returned: dict[str, Any]) -> Any:
    """Write the cell files a task returned into the driver's results folder (atomically)."""
    for cell_id, files in returned["files"].items():
        for rel, data in files.items():
            atomic_write_bytes(Path(root) / "cells" / cell_id / rel, data)
    return returned["results"]


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}".strip()


class RayExecutor(Executor):
    """Runs each payload as a Ray task (see the module's text).

    Args:
        address: a running cluster (``ray://HOST:10001`` or ``HOST:6379``; ``"auto"``: the one
            this machine belongs to). ``None``: a local instance for the sweep's duration.
        local_cpus: CPUs of the local instance (default: the cores this process may use).
        cpus_per_task: CPUs a unit asks for when its cells do not set ``train.threads``.
        gpus_per_task: GPUs a unit of cells on ``cuda`` asks for (a fraction shares a GPU).
        max_retries: how often Ray reruns a task whose worker died (then its cells fail).
        shared_results: whether every node sees the results folder (see the module's text).
        object_store_mb: the local instance's object store (Ray's minimum is about 75 MB).
        local_dir: where a node keeps cells without ``shared_results`` (default: its
            temporary folder).
    """

    def __init__(self, address: str | None = None, *, local_cpus: int | None = None,
                 cpus_per_task: float = 1, gpus_per_task: float = 1, max_retries: int = 2, shared_results: bool = True,
                 object_store_mb: int = 100, local_dir: str | None = None) -> None:
        self.address = address
        self.local_cpus = local_cpus
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.max_retries = max(0, int(max_retries))
        self.shared_results = shared_results
        self.object_store_mb = object_store_mb
        self.local_dir = local_dir

    def _connect(self, ray: Any) -> bool:
        """Join or start Ray unless this process is already connected; whether we started it."""
        if ray.is_initialized():
            return False
        env = {k: os.environ[k] for k in (PLUGINS_ENV, IMPORT_ENV) if k in os.environ}
        options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False,
                                   "configure_logging": True}
        if env:  # plugins and --import modules in every worker, on every node
            options["runtime_env"] = {"env_vars": env}
        if self.address is not None:
            ray.init(address=self.address, **options)
        else:
            ray.init(num_cpus=self.local_cpus or available_cores(), num_gpus=0,
                     include_dashboard=False, _node_ip_address="127.0.0.1",
                     object_store_memory=self.object_store_mb * 2**20, **options)
        return True

    def map(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        ray = _import_ray()
        if not payloads:
            return
        started = self._connect(ray)
        task = ray.remote(_run_task)
        refs: dict[Any, Any] = {}
        try:
            for p in payloads:
                cpus, gpus = unit_resources(p, self.cpus_per_task, self.gpus_per_task)
                ref = task.options(num_cpus=cpus, num_gpus=gpus, max_retries=self.max_retries,
                                   retry_exceptions=False,
                                   name="torchmim:" + ",".join(c["id"] for c in p["cells"])[:200]
                                   ).remote(fn, p, max(1, int(cpus)), self.shared_results,
                                            self.local_dir)
                refs[ref] = p
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    p = refs.pop(ref)
                    try:
                        result = ray.get(ref)
                        if not self.shared_results:
                            result = _unpack(p["root"], result)
                    except Exception as e:  # noqa: BLE001 - the unit's cells fail, named
                        result = RayTaskLostError(
                            f"ray task failed after {self.max_retries + 1} attempt(s): "
                            f"{_one_line(e)}")
                    yield p, result
        finally:
            for ref in refs:  # an interrupted sweep: stop what is still running
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001,S110 - already finished or gone
                    pass
            if started:
                ray.shutdown()
