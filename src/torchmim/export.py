"""Export a trained model's encoder and decoder to ONNX, TorchScript or ``torch.export`` (.pt2).

Each part becomes a graph from a batch to its distribution's parameters, in the user's units:

* encoder ``x (batch, *x_shape)`` → ``mean``, ``std`` of q(z|x) (a diagonal Gaussian);
* decoder ``z (batch, *z_shape)`` → ``mean`` (E[x|z]) and ``std`` of a Gaussian p(x|z), or
  ``mean`` (the probabilities) and ``logits`` of a Bernoulli one.

A model trained on standardised data (its stored :class:`~torchmim.data.transform.DataTransform`)
has the standardisation built into the graphs, as the service and the latent tools do: the
encoder takes raw rows and the decoder gives raw units. Other distributions export their ``mean``
only; a decoder whose mean needs sampling (PixelHVAE's autoregressive PixelCNN: one network pass
per pixel, each on a sampled pixel) is refused with the reason.

Every exported file is checked before it is moved into place: it is loaded back (ONNX with ONNX
Runtime) and run on a batch of another size than the one traced, and its outputs must equal the
Python model's within ``atol + rtol·|ref|``; the largest deviation is written to ``export.json``
with the inputs, outputs and model description.

>>> import torch, torchmim as tm
>>> from torchmim.export import export_model
>>> model = tm.MLPModelConfig(x_dim=4, z_dim=2, hidden=8).build()
>>> import tempfile; out = tempfile.mkdtemp()
>>> manifest = export_model(model, out, format="pt2")
>>> sorted(manifest["files"]), manifest["outputs"]["encoder"]
(['decoder', 'encoder'], ['mean', 'std'])
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from .errors import ConfigError, TorchMIMError
from .models.latent_variable_model import LatentVariableModel

__all__ = ["FORMATS", "PARTS", "ExportError", "distribution_parameters", "export_model",
           "exported_runner"]

#: Export formats and their file suffixes.
FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "pt2": ".pt2"}
#: The parts of a model that export, with the name of their input.
PARTS = {"encoder": "x", "decoder": "z"}


class ExportError(TorchMIMError, RuntimeError):
    """A part cannot be exported, or the exported file does not reproduce the model."""


def distribution_parameters(dist: Distribution) -> dict[str, Tensor]:
    """The parameters a part exports: ``mean``/``std`` of a (diagonal) Gaussian, ``mean``/``logits``
    of a Bernoulli, ``mean`` of anything else with a closed-form mean."""
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if isinstance(base, Normal):  # torchmim.distributions.normal.Normal too
        return {"mean": base.loc, "std": base.scale}
    if type(base) is Bernoulli:
        return {"mean": base.probs, "logits": base.logits}
    from .distributions.autoregressive import AutoregressiveBernoulli

    if isinstance(dist, AutoregressiveBernoulli):
        raise ExportError("an autoregressive decoder (PixelHVAE's PixelCNN) has no closed-form "
                          "mean: it samples one pixel per network pass; export the encoder only")
    try:
        return {"mean": dist.mean}
    except NotImplementedError:
        raise ExportError(f"{type(dist).__name__} has no closed-form mean to export") from None


class _Part(nn.Module):
    """One part of a model as a module from a batch to a tuple of tensors (raw units in/out)."""

    def __init__(self, model: LatentVariableModel, part: str) -> None:
        super().__init__()
        self.part = part
        self.density = model.encoder if part == "encoder" else model.decoder
        tr = getattr(model, "data_transform", None)
        self.standardized = tr is not None and not tr.is_identity
        dtype = next(model.parameters()).dtype
        if self.standardized:
            self.register_buffer("shift", torch.tensor(tr.shift, dtype=dtype))
            self.register_buffer("scale", torch.tensor(tr.scale, dtype=dtype))
        self.names: list[str] = []

    def _params(self, inp: Tensor) -> dict[str, Tensor]:
        if self.part == "encoder" and self.standardized:
            inp = ((inp.reshape(inp.shape[0], -1) - self.shift) / self.scale).reshape(inp.shape)
        params = distribution_parameters(self.density(inp))
        if self.part == "decoder" and self.standardized:
            def raw(t: Tensor, shift: bool) -> Tensor:
                flat = t.reshape(t.shape[0], -1) * self.scale + (self.shift if shift else 0.0)
                return flat.reshape(t.shape)

            params = {"mean": raw(params["mean"], True),
                      **({"std": raw(params["std"], False)} if "std" in params else {})}
        return params

    def forward(self, inp: Tensor) -> tuple[Tensor, ...]:
        params = self._params(inp)
        return tuple(params[n] for n in self.names)


def _probe(model: LatentVariableModel, part: str, n: int, seed: int) -> Tensor:
    """A batch of ``n`` plausible inputs: prior samples for the decoder; for the encoder, values
    in [0, 1] for images or a Bernoulli likelihood, standard normal otherwise (in raw units)."""
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    if part == "decoder":
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            return model.latent_prior().sample((n,)).to(dtype)
    binary = len(model.x_shape) == 3 or type(model.decoder).__name__ == "ConditionalBernoulli"
    if binary:
        return torch.rand((n, *model.x_shape), generator=gen, dtype=dtype)
    x = torch.randn((n, *model.x_shape), generator=gen, dtype=dtype)
    tr = getattr(model, "data_transform", None)
    return x if tr is None else tr.inverse(x.reshape(n, -1)).reshape(x.shape).to(dtype)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence the exporters' progress lines and deprecation notes (the result is checked)."""
    names = ["torch.onnx", "torch.export", "torch._dynamo", "torch.fx.experimental"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _write(module: _Part, example: Tensor, path: Path, fmt: str) -> None:
    input_name = PARTS[module.part]
    batch = torch.export.Dim("batch")
    if fmt == "onnx":
        with contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115 - progress lines
            torch.onnx.export(module, (example,), str(path), dynamo=True, external_data=False,
                              input_names=[input_name], output_names=module.names,
                              dynamic_shapes=({0: batch},), verbose=False)
    elif fmt == "torchscript":  # tracing: torch.distributions code is not scriptable
        traced = torch.jit.trace(module, (example,), check_trace=False)
        torch.jit.save(traced, str(path))
    else:
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))


def exported_runner(path: str | Path, format: str | None = None) -> Any:
    """A callable ``f(array) -> list of NumPy arrays`` for an exported file: ONNX Runtime for
    ONNX, ``torch.jit.load`` for TorchScript, ``torch.export.load`` for ``.pt2`` (``format``:
    one of :data:`FORMATS`; ``None``: from the file's suffix)."""
    path = Path(path)
    if format is None:
        format = next((f for f, suffix in FORMATS.items() if path.name.endswith(suffix)), None)
    if format not in FORMATS:
        raise ConfigError(f"{path}: not an exported torchmim file ({', '.join(FORMATS.values())})")
    if format == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        return lambda a: session.run(None, {input_name: np.asarray(a, dtype=np.float32)})
    if format == "pt2":
        module = torch.export.load(str(path)).module()
    else:
        with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path))

    def run(a: Any) -> list[np.ndarray]:
        with torch.inference_mode():
            out = module(torch.as_tensor(np.asarray(a, dtype=np.float32)))
        return [t.detach().numpy() for t in (out if isinstance(out, (tuple, list)) else [out])]

    return run


def _check(module: _Part, path: Path, fmt: str, probe: Tensor, atol: float, rtol: float
           ) -> float:
    with torch.inference_mode():
        want = [t.detach().cpu().numpy() for t in module(probe)]
    got = exported_runner(path, fmt)(probe.cpu().numpy())
    worst = 0.0
    for name, w, g in zip(module.names, want, got):
        if g.shape != w.shape:
            raise ExportError(f"exported {module.part} output {name!r} has shape {g.shape}, the "
                              f"model's has {w.shape}")
        err = np.abs(g.astype(np.float64) - w)
        if not np.all(err <= atol + rtol * np.abs(w)):
            raise ExportError(f"exported {module.part} output {name!r} differs from the model by "
                              f"up to {float(err.max()):.3g} (atol {atol}, rtol {rtol})")
        worst = max(worst, float(err.max()))
    return worst


def export_model(model: LatentVariableModel | str | Path, out_dir: str | Path, *,
                 format: str = "onnx", parts: Sequence[str] = ("encoder", "decoder"),
                 atol: float = 1e-5, rtol: float = 1e-4, seed: int = 0) -> dict[str, Any]:
    """Export ``parts`` of ``model`` (a model, or a run folder / model file) into ``out_dir`` as
    ``<part><suffix>`` plus ``export.json``; returns that manifest.

    Each file is written to a temporary name, checked against the Python model on a batch of 3
    (traced with a batch of 2) and only then renamed into place; a check that fails raises
    :class:`ExportError` and leaves nothing behind.
    """
    from .io import atomic_write_json
    from .layers import eval_mode
    from .trained import TrainedModel, load_trained

    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {sorted(FORMATS)}")
    parts = list(parts)
    unknown = [p for p in parts if p not in PARTS]
    if not parts or unknown:
        raise ConfigError(f"parts must be some of {list(PARTS)}, got {parts}")
    if isinstance(model, (str, Path)):
        trained = load_trained(model)
    else:
        trained = TrainedModel(model=model, source="<memory>")
    model = trained.model
    if next(model.parameters()).device.type != "cpu":  # a CPU copy: the caller's model stays
        model = copy.deepcopy(model).cpu()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": format, "files": {}, "inputs": {}, "outputs": {},
                                "max_abs_error": {}, "tolerance": {"atol": atol, "rtol": rtol},
                                "torch_version": torch.__version__}
    with eval_mode(model), _quiet_exporters():
        modules = {}
        for part in parts:  # every part checked exportable before any export work
            module = modules[part] = _Part(model, part).eval()
            with torch.no_grad():  # raises ExportError for what cannot export
                module.names = list(module._params(_probe(model, part, 2, seed)))
        for part, module in modules.items():
            example, probe = _probe(model, part, 2, seed), _probe(model, part, 3, seed + 1)
            target = out / f"{part}{FORMATS[format]}"
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                try:
                    _write(module, example, tmp, format)
                except ExportError:
                    raise
                except Exception as e:  # noqa: BLE001 - the exporters raise many types
                    raise ExportError(f"{part} could not be exported to {format}: "
                                      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                                      ) from None
                manifest["max_abs_error"][part] = _check(module, tmp, format, probe, atol, rtol)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            shape = model.x_shape if part == "encoder" else model.z_shape
            manifest["files"][part] = target.name
            manifest["inputs"][part] = {"name": PARTS[part], "shape": ["batch", *shape],
                                        "dtype": "float32"}
            manifest["outputs"][part] = module.names
            manifest["standardization_included"] = module.standardized
    manifest["model"] = trained.describe()
    if not all(math.isfinite(v) for v in manifest["max_abs_error"].values()):
        raise ExportError("the export check produced a non-finite deviation")  # pragma: no cover
    atomic_write_json(out / "export.json", manifest)
    return manifest
