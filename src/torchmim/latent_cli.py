"""``torchmim latent ...``: the latent-space tools of :mod:`torchmim.latent` on a trained run.

RUN is a run folder (its ``model.pt``) or a model file. The points come from ``--data FILE``
(``.npy``/``.npz``/``.csv``/``.parquet``, raw rows in the training file's units; for a CSV or
Parquet file the model's feature columns are taken, and the labels from the run's
``data.label_column`` when the file has that column; a ``.npz`` gives its array ``y``) or, without
it, from the test split of the run's own data (read through the run's ``config.yaml``). Each
command writes an ``.npz`` of arrays (``.npy`` of the main array if ``--out`` ends so), atomically,
and, when the data are images, a PNG grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .cli import _friendly

__all__ = ["latent"]


def _indices(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated row numbers, got {value!r}") from None
    if not out or min(out) < 0:
        raise click.BadParameter(f"expected row numbers >= 0, got {value!r}")
    return out


def _pairs(ctx: click.Context, param: click.Parameter, value: str) -> list[tuple[int, int]]:
    out = []
    for item in value.split(","):
        a, sep, b = item.strip().partition(":")
        try:
            out.append((int(a), int(b)))
        except ValueError:
            raise click.BadParameter(f"expected pairs of row numbers like 0:5,3:7, got {value!r}"
                                     ) from None
        if not sep or min(out[-1]) < 0:
            raise click.BadParameter(f"expected pairs of row numbers like 0:5,3:7, got {value!r}")
    return out


def _model_path(run: Path) -> Path:
    """RUN's model file: a run folder's ``model.pt`` (not its checkpoint, which lacks the data
    transform) or the file itself."""
    from .trained import model_file

    return model_file(run, checkpoint_fallback=False)


def _load(run: Path) -> Any:
    from .io import load_model

    return load_model(_model_path(run))


def _rows(model: Any, run: Path, data: Path | None) -> tuple[Any, Any]:
    """(raw rows, labels or None) of ``--data`` or of the run's test split."""
    import numpy as np

    from .errors import ConfigError

    tr = getattr(model, "data_transform", None)
    cfg_path = _model_path(run).with_name("config.yaml")
    if data is not None:
        from .data.files import read_table

        if data.name.lower().endswith((".npy", ".npz")):  # a .npz's labels are its array 'y'
            table = read_table(data)
            return table.x, table.y
        columns = None if tr is None or tr.feature_names is None else list(tr.feature_names)
        label = _label_column(cfg_path)
        if label is not None:  # the run's label column, when this file has it too
            try:
                table = read_table(data, feature_columns=columns, label_column=label)
                return table.x, table.y
            except ConfigError:  # no such column here (or another column problem: said below)
                pass
        table = read_table(data, feature_columns=columns)
        return table.x, table.y
    if not cfg_path.is_file():
        raise ConfigError(f"no run config at {cfg_path}: pass --data FILE with the points")
    from .runs import RunConfig

    config = RunConfig.from_file(cfg_path)
    x, y = config.data.load(seed=config.seed).test
    x = x.reshape(x.shape[0], -1).double()
    if tr is not None:
        x = tr.inverse(x)
    return x.numpy(), None if y is None else np.asarray(y)


def _label_column(cfg_path: Path) -> str | None:
    """The ``data.label_column`` of the run's saved config (read as plain YAML: the training file
    need not be there), or ``None``."""
    if not cfg_path.is_file():
        return None
    from .config import load_config_file

    data = load_config_file(cfg_path).get("data")
    label = data.get("label_column") if isinstance(data, dict) else None
    return label if isinstance(label, str) else None


def _take(rows: Any, idx: list[int], what: str) -> Any:
    from .errors import DataError

    bad = [i for i in idx if i >= len(rows)]
    if bad:
        raise DataError(f"{what}: row {bad[0]} is out of range (the data have {len(rows)} rows)")
    return rows[idx]


def _write(out: Path, arrays: dict[str, Any], main_key: str) -> None:
    """Atomically write the arrays (``.npz``), or the main one (``.npy``)."""
    import io

    import numpy as np

    from .io import atomic_write_bytes

    arrays = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v)
              for k, v in arrays.items()}
    buf = io.BytesIO()
    if out.suffix == ".npy":
        np.save(buf, arrays[main_key])
    else:
        np.savez(buf, **arrays)
    atomic_write_bytes(out, buf.getvalue())  # temporary file, fsync, rename
    click.echo(f"wrote {out} ({', '.join(f'{k} {tuple(v.shape)}' for k, v in arrays.items())})")


def _check_png(model: Any, png: Path | None) -> None:
    """A one-line error, before any work, if ``--png`` asks for a picture of non-image data."""
    from .errors import DataError
    from .latent import image_shape

    if png is not None and image_shape(model) is None:
        raise DataError("--png: this model's data are not images (no image shape; train with "
                        "data.image_shape=[H, W] to draw them)")


def _picture(model: Any, rows: Any, nrow: int, out: Path, png: Path | None) -> None:
    """The PNG grid of decoded rows, next to ``out`` unless ``png`` says where; none if the data
    are not images."""
    from .latent import save_image_grid, to_images

    images = to_images(model, rows)
    if images is None:
        return
    target = png or out.with_suffix(".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(images, nrow, str(target))
    click.echo(f"wrote {target}")


def _default_out(run: Path, name: str) -> Path:
    folder = run if run.is_dir() else run.parent
    return folder / "latent" / f"{name}.npz"


_run_arg = click.argument("run", type=click.Path(exists=True, path_type=Path))
_data_opt = click.option("--data", type=click.Path(dir_okay=False, path_type=Path), default=None,
                         help="Points (.npy/.npz/.csv/.parquet, raw rows); default: the test "
                              "split of the run's data.")
_out_opt = click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Output .npz (or .npy); default: RUN/latent/<command>.npz.")
_png_opt = click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Picture of the decoded points (image data; default: next to --out).")


@click.group()
def latent() -> None:
    """Latent-space tools on a trained run: encode, decode, interpolate, neighbors, sample."""


@latent.command()
@_run_arg
@_data_opt
@click.option("--sample", is_flag=True, help="Draw z ~ q(z|x) instead of the posterior mean.")
@click.option("--seed", type=int, default=0, show_default=True)
@_out_opt
@_friendly
def encode(run: Path, data: Path | None, sample: bool, seed: int, out: Path | None) -> None:
    """Codes of every row: z (N, d) (and the labels y, if the data have them)."""
    from . import latent as lt

    model = _load(run)
    x, y = _rows(model, run, data)
    z = lt.encode(model, x, sample=sample, seed=seed)
    out = out or _default_out(run, "encode")
    _write(out, {"z": z} | ({} if y is None else {"y": y}), "z")


@latent.command()
@_run_arg
@click.option("--codes", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="Codes to decode: a .npy (N, d), or a .npz with array z.")
@_out_opt
@_png_opt
@_friendly
def decode(run: Path, codes: Path, out: Path | None, png: Path | None) -> None:
    """Decoder means of codes, in the training data's units: x (N, ...)."""
    import numpy as np

    from . import latent as lt
    from .errors import DataError

    model = _load(run)
    _check_png(model, png)
    try:
        loaded = np.load(codes, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{codes}: not a readable NumPy file ({str(e).splitlines()[0]})") from None
    if not isinstance(loaded, np.ndarray):
        if "z" not in loaded.files:
            raise DataError(f"{codes}: a .npz of codes must hold an array 'z', found "
                            f"{loaded.files}")
        loaded = loaded["z"]
    z = loaded.reshape(-1, *model.z_shape) if loaded.ndim > 2 else loaded
    x = lt.decode(model, z.astype(np.float64))
    out = out or _default_out(run, "decode")
    _write(out, {"x": x}, "x")
    _picture(model, x, max(1, int(np.ceil(np.sqrt(len(x))))), out, png)


@latent.command()
@_run_arg
@_data_opt
@click.option("--pairs", callback=_pairs, required=True, metavar="I:J,...",
              help="Row pairs to interpolate between, e.g. 0:5,3:7.")
@click.option("--steps", type=click.IntRange(min=2), default=8, show_default=True)
@click.option("--method", type=click.Choice(["linear", "spherical", "quantile"]), default="linear",
              show_default=True, help="Straight in z, slerp in the prior's whitened coordinates, "
              "or straight in the prior's quantiles.")
@click.option("--seed", type=int, default=0, show_default=True)
@_out_opt
@_png_opt
@_friendly
def interpolate(run: Path, data: Path | None, pairs: list[tuple[int, int]], steps: int,
                method: str, seed: int, out: Path | None, png: Path | None) -> None:
    """Paths between pairs of points: z (B, steps, d), decoded x (B, steps, ...), t (steps,)."""
    import numpy as np

    from . import latent as lt

    model = _load(run)
    _check_png(model, png)
    x, _ = _rows(model, run, data)
    a = _take(x, [i for i, _ in pairs], "--pairs")
    b = _take(x, [j for _, j in pairs], "--pairs")
    res = lt.interpolate(model, a, b, steps, method=method, seed=seed)
    out = out or _default_out(run, "interpolate")
    _write(out, {"z": res.z, "x": res.x, "t": res.t, "pairs": np.asarray(pairs)}, "z")
    _picture(model, res.x, steps, out, png)


@latent.command()
@_run_arg
@_data_opt
@click.option("--index", "index", callback=_indices, default="0", show_default=True,
              metavar="I,...", help="Rows whose neighbours to find.")
@click.option("-k", type=click.IntRange(min=1), default=5, show_default=True)
@_out_opt
@_png_opt
@_friendly
def neighbors(run: Path, data: Path | None, index: list[int], k: int, out: Path | None,
              png: Path | None) -> None:
    """Nearest neighbours in latent space among all rows of the data (each query's own row left
    out): indices (B, k), distances (B, k), query (B,)."""
    import numpy as np

    from . import latent as lt

    model = _load(run)
    _check_png(model, png)
    x, y = _rows(model, run, data)
    _take(x, index, "--index")
    z = lt.encode(model, x)
    nb = lt.nearest_neighbors(model, z[index], z, k=min(k + 1, len(z)), codes=True)
    idx, dist = [], []
    for q, row, d in zip(index, nb.indices, nb.distances):  # the k nearest other rows
        keep = row != q
        idx.append(row[keep][:k])
        dist.append(d[keep][:k])
    arrays = {"indices": np.stack(idx), "distances": np.stack(dist), "query": np.asarray(index)}
    if y is not None:
        arrays |= {"query_labels": np.asarray(y)[index], "labels": np.asarray(y)[np.stack(idx)]}
    out = out or _default_out(run, "neighbors")
    _write(out, arrays, "indices")
    grid = np.concatenate([np.asarray(x)[[q, *i]] for q, i in zip(index, idx)])
    _picture(model, grid, k + 1, out, png)


@latent.command()
@_run_arg
@_data_opt
@click.option("--index", "index", callback=_indices, default="0", show_default=True,
              metavar="I,...", help="Rows around whose codes to sample.")
@click.option("--radius", type=click.FloatRange(min=0, min_open=True), required=True,
              help="Radius of the ball in latent space.")
@click.option("-n", "n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Codes per point.")
@click.option("--seed", type=int, default=0, show_default=True)
@_out_opt
@_png_opt
@_friendly
def sample(run: Path, data: Path | None, index: list[int], radius: float, n: int, seed: int,
           out: Path | None, png: Path | None) -> None:
    """Codes drawn uniformly within RADIUS of each point's code, decoded: centers (B, d), z (B, n,
    d), x (B, n, ...)."""
    import numpy as np

    from . import latent as lt

    model = _load(run)
    _check_png(model, png)
    x, _ = _rows(model, run, data)
    pts = _take(x, index, "--index")
    res = lt.sample_around(model, pts, radius, n, seed=seed)
    out = out or _default_out(run, "sample")
    _write(out, {"centers": res.centers, "z": res.z, "x": res.x, "index": np.asarray(index)}, "z")
    rows = np.concatenate([np.concatenate([np.asarray(pts[i:i + 1]).reshape(1, -1),
                                           res.x[i].reshape(n, -1).numpy()])
                           for i in range(len(index))])
    _picture(model, rows, n + 1, out, png)
