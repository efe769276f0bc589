"""An HTTP service for a trained model: ``torchmim serve CHECKPOINT`` (FastAPI + uvicorn).

* :mod:`.service` — :class:`ModelService`: the model behind a lock, input checks, batching of
  concurrent encode/decode requests (no web framework in it);
* :mod:`.schemas` — the JSON requests (pydantic, unknown fields refused) and responses;
* :mod:`.app` — :func:`create_app`, the FastAPI application and its error mapping (bad input is
  always a 4xx with a one-line ``detail``, never a 500).

Names are imported on first use, so ``import torchmim.serving`` does not import FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BatchTooLarge", "ModelService", "ServeConfig", "create_app"]

_LAZY = {"create_app": ".app", "ModelService": ".service", "ServeConfig": ".service",
         "BatchTooLarge": ".service"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
