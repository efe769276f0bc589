"""The FastAPI application of ``torchmim serve``.

Endpoints: ``POST /encode``, ``/decode``, ``/reconstruct``, ``/sample``, ``/interpolate`` (JSON in
and out, :mod:`.schemas`), ``GET /health`` (200 once the model is loaded) and ``GET /info`` (the
model: architecture, shapes, prior, objective, training and data config, data transform, limits).

Bad input is a 4xx with a one-line ``detail``, never a 500: a body over the size limit is a 413
before it is read, malformed JSON, a wrong type, NaN/Infinity or an unknown field a 422 from the
request models, a wrong row width or a batch over ``max_batch`` a 422 / 413 from the service's
checks (:class:`~torchmim.errors.DataError`). The endpoints are plain functions, which FastAPI runs
in its thread pool; the service serialises model work and batches concurrent mean requests.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..errors import TorchMIMError
from ..trained import TrainedModel, load_trained
from .schemas import (
    DecodeRequest,
    DecodeResponse,
    EncodeRequest,
    EncodeResponse,
    InterpolateRequest,
    InterpolateResponse,
    ReconstructRequest,
    ReconstructResponse,
    SampleRequest,
    SampleResponse,
)
from .service import BatchTooLarge, ModelService, ServeConfig

__all__ = ["create_app"]


def _json(**arrays: Any) -> JSONResponse:
    """A response of arrays as nested lists (built directly: FastAPI's generic encoder is slow
    on large nested lists)."""
    return JSONResponse({k: (v.tolist() if isinstance(v, np.ndarray) else v)
                         for k, v in arrays.items()})


def _validation_detail(exc: RequestValidationError) -> str:
    """The first validation error as one line: where and what."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    err = errors[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {err.get('msg', 'invalid')}{more}"


def create_app(source: Any, config: ServeConfig | None = None) -> FastAPI:
    """The application serving ``source``: a run folder, a model file, a
    :class:`~torchmim.trained.TrainedModel`, a model, or a ready :class:`ModelService`."""
    from ..models.latent_variable_model import LatentVariableModel

    if isinstance(source, ModelService):
        service = source
    elif isinstance(source, TrainedModel):
        service = ModelService(source, config)
    elif isinstance(source, LatentVariableModel):
        service = ModelService(TrainedModel(source, source="<memory>"), config)
    else:
        service = ModelService(load_trained(source), config)
    limit = service.body_limit

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()  # the batching threads

    app = FastAPI(title="torchmim", description="A trained MIM / VAE model: encode, decode, "
                  "reconstruct, sample, interpolate.", version=_version(), lifespan=lifespan)
    app.state.service = service

    @app.middleware("http")
    async def body_limit(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return JSONResponse({"detail": f"request body of {length} bytes is over this "
                                 f"service's limit of {limit} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(BatchTooLarge)
    async def too_large(request: Request, exc: BatchTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(TorchMIMError)
    async def bad_input(request: Request, exc: TorchMIMError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/health")
    def health() -> dict[str, str]:
        """200 when the model is loaded and answering."""
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict[str, Any]:
        """What is served: model, shapes, prior, objective, training and data config, limits."""
        return service.describe()

    @app.post("/encode", response_model=EncodeResponse)
    def encode(req: EncodeRequest) -> JSONResponse:
        """Codes of rows: posterior means (``sample``: draws)."""
        return _json(z=service.encode(req.x, sample=req.sample, seed=req.seed))

    @app.post("/decode", response_model=DecodeResponse)
    def decode(req: DecodeRequest) -> JSONResponse:
        """Rows of codes: decoder means (``sample``: draws)."""
        return _json(x=service.decode(req.z, sample=req.sample, seed=req.seed))

    @app.post("/reconstruct", response_model=ReconstructResponse)
    def reconstruct(req: ReconstructRequest) -> JSONResponse:
        """x → z → x̃."""
        x, z = service.reconstruct(req.x, sample=req.sample, seed=req.seed)
        return _json(x=x, z=z)

    @app.post("/sample", response_model=SampleResponse)
    def sample(req: SampleRequest) -> JSONResponse:
        """New rows from the prior."""
        x, z = service.sample(req.n, mean=req.mean, seed=req.seed)
        return _json(x=x, z=z)

    @app.post("/interpolate", response_model=InterpolateResponse)
    def interpolate(req: InterpolateRequest) -> JSONResponse:
        """Paths between pairs of points, decoded."""
        out = service.interpolate(req.start, req.end, steps=req.steps, method=req.method,
                                  codes=req.codes, seed=req.seed)
        return _json(**out)

    return app


def _version() -> str:
    from .. import __version__

    return __version__
