"""The model behind the service: input checks, one model thread, and batching of requests.

Every method takes plain lists or arrays of rows in the user's units (the model's stored data
transform is applied, as in :mod:`torchmim.latent`), checks them before any model work — shape,
finiteness, batch size — and raises a one-line :class:`~torchmim.errors.DataError`
(:class:`BatchTooLarge` for a batch over the limit) that the web layer turns into a 4xx.

All model work runs in **one worker thread**, under ``torch.inference_mode``, with its own torch
thread count (``ServeConfig.threads``; by default the library's rule of :mod:`torchmim.threads`:
one thread for small models or a busy machine). The web framework's request threads only parse,
check and queue. Measured on 2 busy cores (docs/benchmarks.md, ``bench/serve.py --in-process``),
a 32-row encode called from a fresh request thread took 30-37 ms against 0.8-1.5 ms through the
model thread: OpenMP's default team in every calling thread fights for the cores. One model
thread also keeps seeded draws (which fork the global RNG) from interleaving.

Posterior means (``/encode``) and decoder means (``/decode``) — the hot paths, deterministic per
row — are *batched*: requests that queue while the worker is busy go through the model together
in its next pass (concatenated, then split), so there is no added wait at low load and one pass
per queue under load. Results equal the unbatched ones up to float rounding.
"""

from __future__ import annotations

import collections
import math
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .. import latent
from ..errors import ConfigError, DataError
from ..trained import TrainedModel, load_trained

__all__ = ["BatchTooLarge", "ModelService", "ServeConfig"]


class BatchTooLarge(DataError):
    """A request holds more rows than the service's ``max_batch`` (HTTP 413)."""


@dataclass(frozen=True)
class ServeConfig:
    """Options of the service.

    Attributes:
        max_batch: most rows per request (``x``/``z`` rows, ``n`` samples, interpolation pairs ×
            steps); more is a 413.
        batching: merge queued ``/encode`` and ``/decode`` mean requests into one forward pass.
        max_merged_rows: most rows in one merged pass.
        threads: torch CPU threads of the model thread (``None``: :mod:`torchmim.threads`'s rule).
        max_body_bytes: larger request bodies are refused (413) before they are parsed
            (``None``: enough for ``max_batch`` rows of the model's width, at 32 bytes a number).
    """

    max_batch: int = 1024
    batching: bool = True
    max_merged_rows: int = 8192
    threads: int | None = None
    max_body_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_merged_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"serve: {name} must be >= 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"serve: threads must be >= 1, got {self.threads}")
        if self.max_body_bytes is not None and self.max_body_bytes < 1024:
            raise ConfigError(f"serve: max_body_bytes must be >= 1024, got {self.max_body_bytes}")


_STOP = object()


class _ModelThread:
    """The one thread that runs model work, in the order queued; ``batchable`` tasks of one kind
    waiting in the queue are merged (``merge[kind]`` runs on their concatenated rows)."""

    def __init__(self, merge: dict[str, Callable[[np.ndarray], np.ndarray]], *, batching: bool,
                 max_rows: int, threads: int) -> None:
        self._merge = merge
        self._batching = batching
        self._max_rows = max_rows
        self._threads = threads
        self._queue: queue.Queue[Any] = queue.Queue()
        self.passes = 0  # merged forward passes so far (for tests and measurements)
        self._thread = threading.Thread(target=self._loop, name="torchmim-model", daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` in the model thread and return its result (or raise its error)."""
        fut: Future = Future()
        self._queue.put((None, fn, fut))
        return fut.result()

    def rows(self, kind: str, rows: np.ndarray) -> np.ndarray:
        """``merge[kind]`` of ``rows``, possibly in one pass with other queued requests."""
        fut: Future = Future()
        self._queue.put((kind, rows, fut))
        return fut.result()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        torch.set_num_threads(self._threads)
        pending: collections.deque = collections.deque()
        while True:
            item = pending.popleft() if pending else self._queue.get()
            if item is _STOP:
                return
            kind, payload, fut = item
            if kind is None:
                self._run(payload, (), [fut])
                continue
            group, count = [item], len(payload)
            while self._batching and count < self._max_rows:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is not _STOP and nxt[0] == kind \
                        and count + len(nxt[1]) <= self._max_rows:
                    group.append(nxt)
                    count += len(nxt[1])
                else:
                    pending.append(nxt)
                    if nxt is _STOP:
                        break
            rows = [g[1] for g in group]
            merged = np.concatenate(rows) if len(rows) > 1 else rows[0]
            self._run(self._merge[kind], (merged,), [g[2] for g in group],
                      split=[len(r) for r in rows])

    def _run(self, fn: Callable[..., Any], args: tuple, futs: list[Future],
             split: list[int] | None = None) -> None:
        try:
            with torch.inference_mode():
                out = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting requests
            for fut in futs:
                fut.set_exception(e)
            return
        if split is None:
            futs[0].set_result(out)
            return
        self.passes += 1
        start = 0
        for fut, n in zip(futs, split):
            fut.set_result(out[start:start + n])
            start += n


class ModelService:
    """A trained model served through checked, batched calls on lists/arrays of rows.

    Rows are flat: ``x`` rows hold ``prod(x_shape)`` values (an image row is its C·H·W pixels),
    ``z`` rows ``prod(z_shape)``; results are float64 arrays of flat rows.
    """

    def __init__(self, trained: TrainedModel, config: ServeConfig | None = None) -> None:
        self.trained = trained
        self.model = trained.model.eval()
        self.config = config or ServeConfig()
        self.x_size = math.prod(self.model.x_shape)
        self.z_size = math.prod(self.model.z_shape)
        from ..threads import resolve_threads

        threads = resolve_threads(self.config.threads, self.model, where="serve.threads")
        self._worker = _ModelThread({"encode": self._encode_mean, "decode": self._decode_mean},
                                    batching=self.config.batching,
                                    max_rows=self.config.max_merged_rows, threads=threads)
        self.threads = threads

    @classmethod
    def from_path(cls, path: Any, config: ServeConfig | None = None) -> ModelService:
        """Serve the model of a run folder, ``model.pt`` or ``checkpoint.pt``."""
        return cls(load_trained(path), config)

    @property
    def body_limit(self) -> int:
        """Largest request body accepted, in bytes."""
        if self.config.max_body_bytes is not None:
            return self.config.max_body_bytes
        return 32 * self.config.max_batch * max(self.x_size, self.z_size) + 65536

    def close(self) -> None:
        """Stop the model thread."""
        self._worker.close()

    # ------------------------------------------------------------------ checks
    def _rows(self, data: Any, width: int, name: str, *, limit: int | None = None) -> np.ndarray:
        try:
            a = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{name} must be a list of rows of numbers, all of the same length"
                            ) from None
        if a.ndim != 2:
            raise DataError(f"{name} must be a list of rows (2-D), got a {a.ndim}-D array of "
                            f"shape {list(a.shape)}")
        if a.shape[0] == 0:
            raise DataError(f"{name} holds no rows")
        limit = self.config.max_batch if limit is None else limit
        if a.shape[0] > limit:
            raise BatchTooLarge(f"{name} holds {a.shape[0]} rows, more than this service's limit "
                                f"of {limit}; split the request")
        if a.shape[1] != width:
            raise DataError(f"{name} has rows of {a.shape[1]} values, but the model takes {width}")
        if not np.isfinite(a).all():
            row = int(np.nonzero(~np.isfinite(a).all(1))[0][0])
            raise DataError(f"{name} contains NaN or Inf (first at row {row})")
        return a

    @staticmethod
    def _flat(t: torch.Tensor, name: str) -> np.ndarray:
        a = t.detach().cpu().double().numpy().reshape(t.shape[0], -1)
        if not np.isfinite(a).all():
            raise DataError(f"the model's {name} is not finite for these inputs (values far "
                            "outside the training data?)")
        return a

    def _locked(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the model thread."""
        return self._worker.call(lambda: fn(*args, **kwargs))

    def _encode_mean(self, a: np.ndarray) -> np.ndarray:
        return self._flat(latent.encode(self.model, a), "code")

    def _decode_mean(self, a: np.ndarray) -> np.ndarray:
        return self._flat(latent.decode(self.model, self._codes(a)), "decoded x")

    def _codes(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(len(a), *self.model.z_shape)

    # ------------------------------------------------------------------ the operations
    def encode(self, x: Any, *, sample: bool = False, seed: int | None = None) -> np.ndarray:
        """Codes of rows ``x``: posterior means, or draws z ∼ q(z|x) with ``sample=True``."""
        a = self._rows(x, self.x_size, "x")
        if not sample:
            return self._worker.rows("encode", a)
        return self._flat(self._locked(latent.encode, self.model, a, sample=True, seed=seed),
                          "code")

    def decode(self, z: Any, *, sample: bool = False, seed: int | None = None) -> np.ndarray:
        """Rows for codes ``z``: decoder means E[x|z], or draws x ∼ p(x|z) with ``sample=True``."""
        a = self._rows(z, self.z_size, "z")
        if not sample:
            return self._worker.rows("decode", a)
        return self._flat(self._locked(latent.decode, self.model, self._codes(a), sample=True,
                                       seed=seed), "decoded x")

    def reconstruct(self, x: Any, *, sample: bool = False, seed: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """x → z → x̃ through the means (or through draws with ``sample=True``): (x̃, z)."""
        a = self._rows(x, self.x_size, "x")

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            z = latent.encode(self.model, a, sample=sample, seed=seed)
            x_rec = latent.decode(self.model, z, sample=sample,
                                  seed=None if seed is None else seed + 1)
            return x_rec, z

        x_rec, z = self._locked(run)
        return self._flat(x_rec, "reconstruction"), self._flat(z, "code")

    def sample(self, n: int, *, mean: bool = True, seed: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` draws z ∼ p(z) and their decoder means (``mean=False``: draws x ∼ p(x|z))."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"n must be a positive integer, got {n!r}")
        if n > self.config.max_batch:
            raise BatchTooLarge(f"n={n} is more than this service's limit of "
                                f"{self.config.max_batch}; split the request")

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            with torch.random.fork_rng(devices=[]):
                if seed is not None:
                    torch.manual_seed(seed)
                from ..layers import eval_mode

                with eval_mode(self.model):
                    z = self.model.latent_prior().sample((n,))
                return latent.decode(self.model, z, sample=not mean), z

        x, z = self._locked(run)
        return self._flat(x, "sample"), self._flat(z, "code")

    def interpolate(self, start: Any, end: Any, *, steps: int = 8, method: str = "linear",
                    codes: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
        """Paths from ``start[i]`` to ``end[i]`` (rows, or codes with ``codes=True``) in ``steps``
        points along ``method`` (:data:`torchmim.latent.INTERPOLATIONS`): ``z`` (B, steps,
        z_size), decoded means ``x`` (B, steps, x_size), positions ``t`` (steps,)."""
        width, what = (self.z_size, "codes") if codes else (self.x_size, "rows")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise DataError(f"steps must be an integer >= 2, got {steps!r}")
        if method not in latent.INTERPOLATIONS:
            raise DataError(f"unknown interpolation method {method!r}; choose one of "
                            f"{list(latent.INTERPOLATIONS)}")
        limit = max(1, self.config.max_batch // steps)
        a = self._rows(start, width, "start", limit=limit)
        b = self._rows(end, width, "end", limit=limit)
        if a.shape != b.shape:
            raise DataError(f"start and end hold {len(a)} and {len(b)} {what}; give pairs")
        if codes:
            a, b = self._codes(a), self._codes(b)
        path = self._locked(latent.interpolate, self.model, a, b, steps, method=method,
                            codes=codes, seed=seed)
        n = len(a)
        return {"z": self._flat(path.z.reshape(n * steps, -1), "path").reshape(n, steps, -1),
                "x": self._flat(path.x.reshape(n * steps, -1), "decoded path"
                                ).reshape(n, steps, -1),
                "t": path.t.double().numpy()}

    def describe(self) -> dict[str, Any]:
        """The model's description (:meth:`TrainedModel.describe`) and the service's limits."""
        return {**self.trained.describe(), "x_size": self.x_size, "z_size": self.z_size,
                "service": {**asdict(self.config), "max_body_bytes": self.body_limit,
                            "threads": self.threads}}
