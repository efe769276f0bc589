"""The ``torchmim`` command line: ``demo``, ``train``, ``evaluate``, ``sweep``, ``report``, ``config``.

Every error torchmim knows about (bad config key, wrong data shape, missing or corrupt checkpoint,
diverged training) is printed as one line, ``error: ...``, with exit status 2 — no stack trace.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import TorchMIMError

__all__ = ["main"]


def _one_line(text: object) -> str:
    """A message on one line (a safety net: torchmim's own messages are one line already)."""
    return " ".join(str(text).split()) or "no detail"


def _out_path_problem(path: Path, *, folder: bool) -> str | None:
    """Why ``--out PATH`` cannot be written (a file in the way, no permission, a read-only file
    system), or None. Checked before any work, so that a run does not train and then fail to
    save: the nearest existing folder must take a file (one is created and removed at once)."""
    import tempfile

    path = Path(path)
    if path.exists() and folder != path.is_dir():
        return f"{path} is a {'file' if folder else 'folder'}, not a {'folder' if folder else 'file'}"
    target = path if folder else path.parent
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        return f"{target} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".torchmim-write-test.", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"cannot write into {target} ({e.strerror or e})"
    return None


#: ``--out`` parameters of the commands: name → whether it is a folder (else a file).
_OUT_PARAMS = {"out_dir": True, "out_file": False}


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn torchmim errors, unwritable ``--out`` paths, OS errors (disk full, permission) and
    Ctrl-C into one clear line and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            for name, folder in _OUT_PARAMS.items():
                if kwargs.get(name) is not None:
                    problem = _out_path_problem(kwargs[name], folder=folder)
                    if problem is not None:
                        click.echo(f"error: --out: {problem}", err=True)
                        sys.exit(2)
            return fn(*args, **kwargs)
        except TorchMIMError as e:
            click.echo(f"error: {_one_line(e)}", err=True)
            sys.exit(2)
        except OSError as e:  # not torchmim's own: a file system refusing a write or a read
            where = f": {e.filename}" if getattr(e, "filename", None) else ""
            click.echo(f"error: {_one_line(e.strerror or e)}{where}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("\ninterrupted: the last finished epoch is in checkpoint.pt; rerun with "
                       "--resume to continue", err=True)
            sys.exit(130)

    return wrapper


def _yaml_scalar(text: str) -> object:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _parse_ints(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not out or any(v < 1 for v in out):
        raise click.BadParameter(f"expected positive integers, got {value!r}")
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="torchmim")
@click.option("--import", "imports", multiple=True, metavar="MODULE",
              help="Import MODULE first (one that registers your own data set, prior, network or "
                   "objective; the current folder is searched too). Repeatable. Installed "
                   "packages' 'torchmim.plugins' entry points load without it.")
def main(imports: tuple[str, ...]) -> None:
    """torchmim: the Mutual Information Machine (MIM) next to a VAE, in PyTorch."""
    _load_plugins(imports)


def _load_plugins(imports: tuple[str, ...]) -> None:
    """Enable the entry-point plugins (loaded at the first registry lookup) and import the
    ``--import`` modules now, for this command: the environment carries both to a sweep's worker
    processes while it runs, and is restored when it ends (so nothing leaks into later code of the
    same process, e.g. the next in-process ``CliRunner`` call)."""
    from .registry import _import, plugins_enabled

    ctx = click.get_current_context()
    ctx.with_resource(plugins_enabled(imports))
    if not imports:
        return
    cwd = os.getcwd()
    if cwd not in sys.path:  # the current folder, for this command only
        sys.path.append(cwd)
        ctx.call_on_close(lambda: cwd in sys.path and sys.path.remove(cwd))
    try:
        for name in imports:
            _import(name, "--import")
    except TorchMIMError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


@main.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results/demo"), show_default=True, help="Output folder.")
@click.option("--widths", callback=_parse_ints, default="5,20,500", show_default=True,
              help="Hidden widths to compare (the paper's Fig. 2 uses 5, 20, 500).")
@click.option("--epochs", type=click.IntRange(min=1), default=200, show_default=True,
              help="Maximum epochs per run (early stopping usually ends sooner).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--nll-samples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Importance samples per test point for the NLL.")
@click.option("--quick", is_flag=True, help="A 30-second look: widths 5,500, 30 epochs, 2000 "
              "test points, 100 importance samples.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@_friendly
def demo(out_dir: Path, widths: tuple[int, ...], epochs: int, seed: int, nll_samples: int,
         quick: bool, progress: bool) -> None:
    """Train MIM and VAE on the paper's 2D mixture; write metrics.json, report.md and figures."""
    from .demo import run_demo

    max_points = 10_000
    if quick:
        widths, epochs, nll_samples, max_points = (5, 500), min(epochs, 30), 100, 2000
    metrics = run_demo(out_dir, widths=widths, epochs=epochs, seed=seed, nll_samples=nll_samples,
                       max_points=max_points, progress=progress)
    w = metrics["settings"]["headline_width"]
    click.echo(f"\nwidth {w}:  " + "   ".join(
        f"{obj.upper()}: MI {metrics[obj]['mi']:.2f}, NLL {metrics[obj]['nll']:.3f}, "
        f"recon {metrics[obj]['recon_rmse']:.3f}, 5-NN {metrics[obj]['knn_acc']:.3f}"
        for obj in ("mim", "vae")))
    click.echo(f"report: {out_dir / 'report.md'} (an HTML page: torchmim report {out_dir})")


@main.command()
@click.argument("config_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Save folder (default: runs/<objective>-<model>-seed<seed>).")
@click.option("-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config entry, e.g. -s model.hidden=500 -s objective.name=vae.")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its checkpoint.pt (only "
              "safe changes allowed: more epochs or time, device, threads, logging).")
@click.option("--overwrite", is_flag=True, help="Delete the run already in OUT and start again "
              "(without --resume or --overwrite, a used OUT is refused).")
@click.option("--tensorboard", "tensorboard_dir", metavar="DIR", default=None,
              help="Also log scalars per epoch to TensorBoard in DIR (needs tensorboard; "
              "-s log.tensorboard=true logs into OUT/tensorboard).")
@click.option("--mlflow", is_flag=True, help="Also log the config and metrics to an MLflow run "
              "(needs mlflow; -s log.mlflow_experiment=NAME picks the experiment).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@_friendly
def train(config_file: Path | None, out_dir: Path | None, overrides: tuple[str, ...], resume: bool,
          overwrite: bool, tensorboard_dir: str | None, mlflow: bool, progress: bool) -> None:
    """Train and evaluate one model from a YAML/JSON CONFIG_FILE (defaults: MIM on the 2D data).

    Under torchrun (torchrun --nproc-per-node N -m torchmim train ...) one model trains on N
    processes with DistributedDataParallel; train.batch_size is the global batch
    (docs/scale-out.md).
    """
    from .config import apply_overrides, load_config_file
    from .runs import RunConfig, run

    data = load_config_file(config_file) if config_file is not None else {}
    overrides = overrides + ((f"log.tensorboard={json.dumps(tensorboard_dir)}",)
                             if tensorboard_dir else ()) + (("log.mlflow=true",) if mlflow else ())
    config = RunConfig.from_dict(apply_overrides(data, overrides))
    config.log.require()  # a missing tensorboard/mlflow: one line now, not after loading the data
    if out_dir is None:
        d = config.to_dict()
        out_dir = Path("runs") / f"{d['objective']['name']}-{d['model']['name']}-seed{config.seed}"
    from .training.distributed import run_distributed, torchrun_env

    if torchrun_env() is not None:  # one process of a torchrun job: data-parallel training
        result = run_distributed(config, out_dir, resume=resume, overwrite=overwrite,
                                 progress=progress)
        if result is None:  # not rank 0, which writes the folder and prints
            return
    else:
        result = run(config, out_dir, resume=resume, overwrite=overwrite, progress=progress)
    click.echo(json.dumps(result.metrics, indent=2))
    click.echo(f"saved to {out_dir}")


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Run config giving the data and protocol (default: config.yaml "
              "next to the checkpoint).")
@click.option("-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config entry, e.g. -s eval.nll_samples=5000.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the metrics to this JSON file.")
@_friendly
def evaluate(checkpoint: Path, config_file: Path | None, overrides: tuple[str, ...],
             out_file: Path | None) -> None:
    """Evaluate a saved model (model.pt or checkpoint.pt) on the test data of its run."""
    from .config import apply_overrides, load_config_file
    from .errors import ConfigError
    from .io import load_model
    from .runs import RunConfig, evaluate_trained, load_run_data
    from .trained import model_file

    checkpoint = model_file(checkpoint, checkpoint_fallback=False)  # a run folder: its best model
    model = load_model(checkpoint)
    cfg_path = config_file or checkpoint.with_name("config.yaml")
    if not cfg_path.is_file():
        raise ConfigError(f"no run config at {cfg_path}: pass --config FILE to say which data to "
                          "evaluate on")
    config = RunConfig.from_dict(apply_overrides(load_config_file(cfg_path), overrides))
    data = load_run_data(config)  # the run's test split, loaded as the run loaded it
    metrics, _ = evaluate_trained(config, model, data, progress=True)
    text = json.dumps(metrics, indent=2)
    click.echo(text)
    if out_file is not None:  # atomically: a crash never leaves half a file
        from .io import atomic_write_text

        atomic_write_text(out_file, text + "\n")


@main.command()
@click.argument("name", required=False)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Results folder (default: results/NAME, or results/NAME-quick).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: one per CPU core).")
@click.option("--quick", is_flag=True, help="The 'quick' preset: the same grid with fewer seeds, "
              "epochs and points, the shape of the result in minutes.")
@click.option("--preset", default=None, help="A named preset of the sweep (e.g. 'cpu' for the image "
              "tables); see --list.")
@click.option("--grid", "only", multiple=True, metavar="KEY=V1,V2",
              help="Keep only these values (or variant labels) of a grid key, e.g. --grid seed=0,1.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Use seeds 0..N-1.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Maximum epochs per run.")
@click.option("-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override an entry of every cell's run config, e.g. -s eval.nll_samples=200.")
@click.option("--list", "list_", is_flag=True, help="List the named sweeps and exit.")
@click.option("--vectorize/--no-vectorize", default=True, show_default=True,
              help="Train cells that differ only in seed and objective (mlp models) as one "
                   "stacked computation per group.")
@click.option("--backend", default="local", show_default=True, metavar="NAME",
              help="Where the cells run: local (worker processes), serial, or ray (a Ray "
                   "cluster; needs pip install 'torchmim[ray]'). See docs/scale-out.md.")
@click.option("--address", default=None, metavar="ADDR",
              help="The Ray cluster to join (e.g. HEAD:6379, ray://HEAD:10001, auto); without "
                   "it --backend ray starts a local Ray instance for the sweep.")
@click.option("--shared-results/--no-shared-results", default=True, show_default=True,
              help="ray: whether every node sees the --out folder; without a shared folder the "
                   "cells' files come back to this machine (no resume on another node).")
@click.option("--gpus-per-task", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="ray: GPUs a unit of cells on cuda asks for (0.125: "
              "eight units share a GPU).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@_friendly
def sweep(name: str | None, out_dir: Path | None, workers: int | None, quick: bool,
          preset: str | None, only: tuple[str, ...], seeds: int | None, epochs: int | None,
          overrides: tuple[str, ...], list_: bool, vectorize: bool, backend: str,
          address: str | None, shared_results: bool, gpus_per_task: float,
          progress: bool) -> None:
    """Run the sweep NAME (fig3, fig4, fig5, appendix-d1 ... d4) or a sweep defined in a YAML file.

    Cells run in parallel worker processes; cells of an mlp model that differ only in seed and
    objective train together as one vectorised group (--no-vectorize: one by one). Finished cells
    are skipped, so rerunning an interrupted sweep resumes it. Writes results.csv, summary.csv and
    the figures into the output folder.
    """
    from .errors import ConfigError
    from .experiments import expand, get_sweep, run_sweep

    if list_:
        _list_sweeps()
        return
    if name is None:
        raise ConfigError("name a sweep (see `torchmim sweep --list`) or a sweep YAML file")
    if quick and preset not in (None, "quick"):
        raise ConfigError("--quick is the preset 'quick'; give either --quick or --preset")
    preset = "quick" if quick else preset
    restrict = {}
    for item in only:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise ConfigError(f"--grid {item!r} must look like key=v1,v2")
        restrict[key.strip()] = [_yaml_scalar(v) for v in values.split(",")]
    spec = get_sweep(name).resolved(preset=preset, overrides=list(overrides), seeds=seeds,
                                    epochs=epochs, only=restrict)
    for cell in expand(spec)[:1]:  # -s log.tensorboard=true without tensorboard: one line now
        cell.config.log.require()
    out_dir = out_dir or Path("results") / (spec.name + (f"-{preset}" if preset else ""))
    from .experiments.backends import make_backend

    options = ({} if backend.lower() != "ray" else
               {"shared_results": shared_results, "gpus_per_task": gpus_per_task})
    executor = make_backend(backend, workers=workers, address=address, **options)
    result = run_sweep(spec, out_dir, executor=executor, progress=progress,
                       mode=preset or "full", vectorize=vectorize)
    click.echo(f"{len(result.rows)} of {len(result.cells)} cells finished"
               + (f", {len(result.failures)} failed (see failures.json)" if result.failures else ""))
    click.echo(f"results: {out_dir / 'results.csv'}")
    state = json.loads((out_dir / "sweep.json").read_text())
    for file, why in state.get("skipped_figures", {}).items():
        click.echo(f"figure {file} not drawn: {why}")
    for cell_id, error in result.failures.items():
        click.echo(f"failed: {cell_id}: {error}", err=True)
    if result.failures:
        sys.exit(1)


def _list_sweeps() -> None:
    """One header line per sweep (cells, presets, aliases), then its description wrapped at words."""
    import shutil
    import textwrap

    from .experiments import EXPERIMENTS, expand, sweep_names

    width = min(100, shutil.get_terminal_size((100, 24)).columns)
    for key, aliases in sweep_names().items():
        spec = EXPERIMENTS.get(key)()
        head = f"{key:14s} {len(expand(spec)):4d} cells"
        if spec.presets:
            head += f"  presets: {', '.join(spec.presets)}"
        if aliases:
            head += f"  (aliases: {', '.join(aliases)})"
        click.echo(head)
        click.echo(textwrap.fill(spec.description, width=width, initial_indent="    ",
                                 subsequent_indent="    ", break_long_words=False,
                                 break_on_hyphens=False))


@main.command()
@click.argument("results_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output HTML file (default: RESULTS_DIR/index.html).")
@_friendly
def report(results_dir: Path, out_file: Path | None) -> None:
    """Build one HTML page with the tables and figures of every sweep below RESULTS_DIR."""
    from .report import build_report

    click.echo(f"wrote {build_report(results_dir, out_file)}")


@main.command(name="config")
@click.option("-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config entry before printing.")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True)
@_friendly
def config_cmd(overrides: tuple[str, ...], fmt: str) -> None:
    """Print a complete run config (defaults plus overrides) to start a config file from."""
    import yaml

    from .config import apply_overrides
    from .runs import RunConfig

    config = RunConfig.from_dict(apply_overrides({}, overrides))
    data = config.to_dict()
    click.echo(json.dumps(data, indent=2) if fmt == "json" else yaml.safe_dump(data, sort_keys=False),
               nl=False)


from .latent_cli import latent as _latent  # noqa: E402 - after main, which it extends

main.add_command(_latent)
from . import deploy_cli as _deploy  # noqa: E402 - export and serve, after main

main.add_command(_deploy.export)
main.add_command(_deploy.serve)

if __name__ == "__main__":  # pragma: no cover
    main()
