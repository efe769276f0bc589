"""``torchmim export`` and ``torchmim serve``: a trained model out of Python.

CHECKPOINT is a run folder of ``torchmim train`` (its ``model.pt``), a ``model.pt`` or a
``checkpoint.pt``. Nothing heavy is imported until a command runs, so ``torchmim --help`` stays
instant.
"""

from __future__ import annotations

from pathlib import Path

import click

from .cli import _friendly

__all__ = ["export", "serve"]

_checkpoint_arg = click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))


@click.command()
@_checkpoint_arg
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript", "pt2"]),
              default="onnx", show_default=True,
              help="ONNX (for ONNX Runtime and other engines), TorchScript (traced), or a "
                   "torch.export program (.pt2).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: CHECKPOINT's folder / export-FORMAT).")
@click.option("--parts", type=click.Choice(["both", "encoder", "decoder"]), default="both",
              show_default=True, help="Which networks to export.")
@_friendly
def export(checkpoint: Path, fmt: str, out_dir: Path | None, parts: str) -> None:
    """Export the encoder and decoder of a trained model (distribution parameters, raw units),
    each checked against the Python model before it is written."""
    from .export import export_model
    from .trained import model_file

    if out_dir is None:
        out_dir = model_file(checkpoint).parent / f"export-{fmt}"
    chosen = ("encoder", "decoder") if parts == "both" else (parts,)
    manifest = export_model(checkpoint, out_dir, format=fmt, parts=chosen)
    for part, name in manifest["files"].items():
        click.echo(f"{part}: {out_dir / name}  (inputs {manifest['inputs'][part]['shape']}, "
                   f"outputs {manifest['outputs'][part]}, max |error| "
                   f"{manifest['max_abs_error'][part]:.2g})")
    click.echo(f"manifest: {out_dir / 'export.json'}")


@click.command()
@_checkpoint_arg
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (127.0.0.1: this machine only).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--max-batch", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Most rows per request; larger requests get a 413.")
@click.option("--batching/--no-batching", default=True, show_default=True,
              help="Merge concurrent /encode and /decode mean requests into one forward pass.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads of the model thread (default: 1 for small models or a "
                   "busy machine, else up to 4).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              default="info", show_default=True)
@_friendly
def serve(checkpoint: Path, host: str, port: int, max_batch: int, batching: bool,
          threads: int | None, log_level: str) -> None:
    """Serve a trained model over HTTP: POST /encode, /decode, /reconstruct, /sample,
    /interpolate; GET /health, /info (FastAPI docs at /docs)."""
    import uvicorn

    from .serving import ModelService, ServeConfig, create_app

    service = ModelService.from_path(checkpoint, ServeConfig(max_batch=max_batch,
                                                             batching=batching, threads=threads))
    app = create_app(service)
    d = service.describe()
    click.echo(f"serving {d['source']} ({(d['model'] or {}).get('name')}, x {d['x_shape']}, "
               f"z {d['z_shape']}) on http://{host}:{port}  (GET /info for details)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
