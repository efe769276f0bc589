"""Your own data: NumPy, CSV and Parquet files (``data: {name: file, path: ...}``) and in-memory
arrays or DataFrames (:func:`from_arrays`).

What a file holds:

* ``.npy``: the features only, ``(N, D)``, or images ``(N, H, W)`` / ``(N, C, H, W)``;
* ``.npz``: an array ``x`` (as in a ``.npy``) and optionally labels ``y`` (N,); given validation
  and test splits may come as ``x_val``/``y_val`` and ``x_test``/``y_test``;
* ``.csv`` (also ``.csv.gz``, read by pandas) and ``.parquet`` (read by pyarrow): one row per
  observation; the features are ``feature_columns`` (default: every column but the label and split
  columns), the labels ``label_column`` (optional; any values, numbered in sorted order), and an
  optional ``split_column`` says ``train``/``val``/``test`` per row.

Splits: given ones (``split_column``, ``val_path``/``test_path``, or the ``.npz`` arrays) or a
seeded random hold-out of ``val_fraction`` and ``test_fraction`` of the rows (``split_seed``,
independent of the run seed, so every run of a sweep sees the same splits).

Standardisation (``standardize``; by default on for a Gaussian likelihood, off for a Bernoulli
one) uses the training split's mean and standard deviation per feature; the model trains on the
standardised values, and the :class:`~torchmim.data.transform.DataTransform` is saved with the
model (``model.pt``) so that encoding and decoding later take and give rows in the file's units
(:mod:`torchmim.latent`).

A run config names the data only; the model follows it: :meth:`FileDataConfig.configure_model` (called
by :class:`~torchmim.runs.RunConfig`) sets the model's input size (``x_dim``, or ``x_shape`` for the
image models) from the file and its likelihood from ``likelihood``, so
``torchmim train -s data.name=file -s data.path=my.csv`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..errors import ConfigError, DataError
from ..registry import suggest
from ..seeding import derive_seed
from .base import DATASETS, DataConfig, DataSplits
from .transform import DataTransform

if TYPE_CHECKING:  # pragma: no cover
    from ..models.configs import ModelConfig

__all__ = ["FILE_SUFFIXES", "ArrayDataConfig", "FileDataConfig", "Table", "from_arrays",
           "read_table", "table_from_frame"]

#: File endings the ``file`` data set reads, and the format of each.
FILE_SUFFIXES = {".npy": "npy", ".npz": "npz", ".csv": "csv", ".csv.gz": "csv",
                 ".parquet": "parquet", ".pq": "parquet"}
_NPZ_KEYS = {"x", "y", "x_val", "y_val", "x_test", "y_test"}
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                "validation": "val", "test": "test"}
Likelihood = Literal["gaussian", "bernoulli"]


# ---------------------------------------------------------------------------- reading
@dataclass
class Table:
    """What a file (or an in-memory array) holds once its columns are chosen.

    Attributes:
        x: features, float32, ``(N, D)`` or images ``(N, H, W)`` / ``(N, C, H, W)``.
        y: labels (N,) as given (any dtype), or ``None``.
        split: per-row split names (``train``/``val``/``test``) from a split column, or ``None``.
        feature_names: the feature columns of a table file.
        given: splits given inside the file (a ``.npz``'s ``x_val``...): name → ``(x, y)``.
        source: the file's path, or a description of in-memory data.
    """

    x: np.ndarray
    y: np.ndarray | None = None
    split: np.ndarray | None = None
    feature_names: list[str] | None = None
    given: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    source: str = ""

    @property
    def num_features(self) -> int:
        return int(math.prod(self.x.shape[1:]))

    @property
    def natural_image_shape(self) -> tuple[int, ...] | None:
        """(C, H, W) of arrays stored as images, else ``None``."""
        if self.x.ndim == 3:
            return (1, *self.x.shape[1:])
        return tuple(self.x.shape[1:]) if self.x.ndim == 4 else None


def _absolute(path: str) -> str:
    """``path`` with ``~`` expanded, made absolute against the current folder (symbolic links
    kept, ``..`` folded)."""
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _format_of(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(FILE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return FILE_SUFFIXES[suffix]
    raise ConfigError(f"data.path: {path} has an unknown extension; the file data set reads "
                      f"{', '.join(FILE_SUFFIXES)}")


def _numeric(a: np.ndarray, what: str) -> np.ndarray:
    """``a`` as float32, or a DataError for non-numeric data and NaN/Inf (naming the first row)."""
    if a.dtype.kind not in "biuf":
        raise DataError(f"{what} is not numeric (dtype {a.dtype})")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim not in (2, 3, 4) or a.shape[0] == 0 or a[0].size == 0:
        raise DataError(f"{what} must be (N, D) features or (N, H, W) / (N, C, H, W) images with "
                        f"N, D >= 1, got shape {a.shape}")
    out = a.astype(np.float32)
    bad = ~np.isfinite(out.reshape(len(out), -1)).all(1)
    if bad.any():
        raise DataError(f"{what} has NaN or Inf values in {int(bad.sum())} row(s), first at row "
                        f"{int(np.argmax(bad))}")
    return out


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype == object:
        y = y.astype(str)
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{what}: expected {n} labels (one per row), got shape {y.shape}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(f"{what}: labels contain NaN or Inf, first at row "
                        f"{int(np.argmax(~np.isfinite(y)))}")
    return y


def _read_npy(path: Path) -> Table:
    try:
        a = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable NumPy array ({str(e).splitlines()[0]})") from None
    if isinstance(a, np.lib.npyio.NpzFile):  # pragma: no cover - a .npz named .npy
        raise DataError(f"{path}: is an .npz archive; name it .npz")
    return Table(_numeric(a, str(path)), source=str(path))


def _read_npz(path: Path) -> Table:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npz archive ({str(e).splitlines()[0]})") from None
    unknown = sorted(set(arrays) - _NPZ_KEYS)
    if "x" not in arrays or unknown:
        raise DataError(f"{path}: a .npz holds the array 'x' and optionally 'y' (and x_val/y_val, "
                        f"x_test/y_test); found {sorted(arrays)}")
    x = _numeric(arrays["x"], f"{path} (array 'x')")
    y = None if "y" not in arrays else _labels(arrays["y"], len(x), f"{path} (array 'y')")
    given = {}
    for part in ("val", "test"):
        if f"x_{part}" in arrays:
            xp = _numeric(arrays[f"x_{part}"], f"{path} (array 'x_{part}')")
            if xp.shape[1:] != x.shape[1:]:
                raise DataError(f"{path}: x_{part} has rows of shape {xp.shape[1:]} but x has "
                                f"{x.shape[1:]}")
            yp = arrays.get(f"y_{part}")
            if (yp is None) != (y is None):
                raise DataError(f"{path}: give labels for every split or for none "
                                f"(y and y_{part})")
            given[part] = (xp, None if yp is None else _labels(yp, len(xp),
                                                              f"{path} (array 'y_{part}')"))
        elif f"y_{part}" in arrays:
            raise DataError(f"{path}: y_{part} without x_{part}")
    return Table(x, y, given=given, source=str(path))


def _column(name: str, columns: list[str], key: str, source: str) -> str:
    if name not in columns:
        raise ConfigError(f"data.{key}: {source} has no column {name!r}.{suggest(name, columns)} "
                          f"Columns: {', '.join(columns[:20])}{' ...' if len(columns) > 20 else ''}")
    return name


def table_from_frame(frame: Any, *, feature_columns: list[str] | None = None,
                     label_column: str | None = None, split_column: str | None = None,
                     source: str = "DataFrame") -> Table:
    """The :class:`Table` of a pandas DataFrame: chosen columns checked numeric and finite."""
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    label = None if label_column is None else _column(label_column, columns, "label_column",
                                                     source)
    split = None if split_column is None else _column(split_column, columns, "split_column",
                                                     source)
    if feature_columns is None:
        features = [c for c in columns if c not in (label, split)]
    else:
        features = [_column(c, columns, "feature_columns", source) for c in feature_columns]
        if label in features or split in features:
            raise ConfigError("data.feature_columns must not include the label or split column")
    if not features:
        raise DataError(f"{source} has no feature columns")
    for c in features:
        col = frame[c]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
            row = int(np.argmax(bad.to_numpy())) if bad.any() else 0
            raise DataError(f"{source}: column {c!r} is not numeric (value {col.iloc[row]!r} in "
                            f"row {row}); list the numeric columns in data.feature_columns")
        missing = col.isna().to_numpy()
        if missing.any():
            raise DataError(f"{source}: column {c!r} has {int(missing.sum())} missing (NaN) "
                            f"value(s), first at row {int(np.argmax(missing))}")
    x = _numeric(frame[features].to_numpy(dtype=np.float64), source)
    y = None
    if label is not None:
        if frame[label].isna().any():
            raise DataError(f"{source}: label column {label!r} has missing values, first at row "
                            f"{int(np.argmax(frame[label].isna().to_numpy()))}")
        y = _labels(frame[label].to_numpy(), len(x), f"{source} (column {label!r})")
    parts = None if split is None else frame[split].astype(str).str.lower().to_numpy()
    return Table(x, y, parts, features, source=source)


@functools.lru_cache(maxsize=4)
def _read_cached(path: str, stamp: tuple[int, int], fmt: str, feature_columns: tuple[str, ...] | None,
                 label_column: str | None, split_column: str | None) -> Table:
    p = Path(path)
    if fmt in ("npy", "npz"):
        if feature_columns is not None or split_column is not None or label_column is not None:
            key = ("feature_columns" if feature_columns is not None else
                   "split_column" if split_column is not None else "label_column")
            raise ConfigError(f"data.{key} names columns of a CSV or Parquet file; {p.name} is a "
                              f".{fmt} (labels go in a .npz array 'y')")
        return _read_npy(p) if fmt == "npy" else _read_npz(p)
    import pandas as pd

    try:
        if fmt == "csv":
            frame = pd.read_csv(p)
        else:
            frame = pd.read_parquet(p)
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise DataError(f"{p}: not a readable {fmt.upper()} file "
                        f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if len(frame) == 0:
        raise DataError(f"{p} has no rows")
    return table_from_frame(frame, feature_columns=None if feature_columns is None
                            else list(feature_columns), label_column=label_column,
                            split_column=split_column, source=str(p))


def read_table(path: str | os.PathLike, *, feature_columns: list[str] | None = None,
               label_column: str | None = None, split_column: str | None = None) -> Table:
    """Read a ``.npy``/``.npz``/``.csv``/``.parquet`` file as a :class:`Table` (cached per process
    while the file is unchanged). A missing file, an unknown extension or column, a non-numeric
    column and NaN values are one-line :class:`ConfigError`/:class:`DataError`."""
    p = Path(path).expanduser()
    fmt = _format_of(p)
    if not p.is_file():
        raise DataError(f"data file not found: {p}" + (" (a folder)" if p.is_dir() else ""))
    st = p.stat()
    return _read_cached(str(p.resolve()), (st.st_mtime_ns, st.st_size), fmt,
                        None if feature_columns is None else tuple(feature_columns),
                        label_column, split_column)


# ---------------------------------------------------------------------------- the data set
@DATASETS.register("file")
@dataclass
class FileDataConfig(DataConfig):
    """Observations from a NumPy, CSV or Parquet file (see the module docs).

    Attributes:
        path: the file (``.npy``, ``.npz``, ``.csv``, ``.csv.gz``, ``.parquet``); a relative path
            (and ``~``) is made absolute against the current folder when the config is made, so
            the run's saved ``config.yaml`` holds the absolute path and ``torchmim evaluate`` or
            ``torchmim latent`` finds the file from any folder (``val_path``/``test_path`` too).
        feature_columns: CSV/Parquet columns to model (default: all but the label/split columns).
        label_column: CSV/Parquet column of class labels (k-NN accuracy; optional).
        split_column: CSV/Parquet column saying ``train``/``val``/``test`` per row.
        val_path, test_path: separate validation / test files (same format and columns).
        val_fraction, test_fraction: share of the rows held out for validation / testing where no
            split is given.
        split_seed: seed of that hold-out (independent of the run seed).
        standardize: standardise every feature with the training split's mean and standard
            deviation (saved with the model); ``None``: yes for a Gaussian likelihood, no for a
            Bernoulli one.
        likelihood: ``gaussian`` (continuous data) or ``bernoulli`` (values in [0, 1]) for the
            model's decoder p(x|z); ``None``: keep the model's own.
        image_shape: ``[H, W]`` or ``[C, H, W]`` of one row seen as an image (image models need
            it unless a NumPy file stores images; vector models use it to draw pictures).
    """

    path: str | None = None
    feature_columns: list[str] | None = None
    label_column: str | None = None
    split_column: str | None = None
    val_path: str | None = None
    test_path: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    standardize: bool | None = None
    likelihood: Likelihood | None = None
    image_shape: list[int] | None = None
    #: the shape one observation has for the model, set by :meth:`configure_model` (vectors by
    #: default); not part of the saved config.
    _x_shape: tuple[int, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_options()
        if self.path is None:
            raise ConfigError("data.path is required for the file data set (a .npy, .npz, .csv or "
                              ".parquet file)")
        for key in ("path", "val_path", "test_path"):
            if getattr(self, key) is not None:
                _format_of(Path(getattr(self, key)))
                # absolute from here on: the saved config.yaml finds the file from any folder
                setattr(self, key, _absolute(getattr(self, key)))

    def _check_options(self) -> None:
        for key in ("val_fraction", "test_fraction"):
            v = getattr(self, key)
            if not 0.0 < v < 1.0:
                raise ConfigError(f"data.{key} must be in (0, 1), got {v}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.val_fraction + data.test_fraction must be below 1")
        if self.likelihood not in (None, "gaussian", "bernoulli"):
            raise ConfigError(f"data.likelihood must be 'gaussian', 'bernoulli' or null, got "
                              f"{self.likelihood!r}")
        if self.likelihood == "bernoulli" and self.standardize:
            raise ConfigError("data.standardize=true does not fit data.likelihood=bernoulli (a "
                              "Bernoulli decoder models values in [0, 1])")
        if self.image_shape is not None:
            shape = list(self.image_shape)
            if len(shape) not in (2, 3) or not all(isinstance(s, int) and s >= 1 for s in shape):
                raise ConfigError(f"data.image_shape must be [H, W] or [C, H, W] of positive "
                                  f"integers, got {self.image_shape!r}")
        if self.split_column is not None and (self.val_path or self.test_path):
            raise ConfigError("give the splits either by data.split_column or by "
                              "data.val_path/test_path, not both")

    # ------------------------------------------------------------------ reading
    def table(self) -> Table:
        """The main file's :class:`Table`."""
        return read_table(self.path, feature_columns=self.feature_columns,
                          label_column=self.label_column, split_column=self.split_column)

    def _side_table(self, path: str, main: Table) -> Table:
        t = read_table(path, feature_columns=self.feature_columns or main.feature_names,
                       label_column=self.label_column)
        if t.x.shape[1:] != main.x.shape[1:]:
            raise DataError(f"{path} has rows of shape {t.x.shape[1:]} but {main.source} has "
                            f"{main.x.shape[1:]}")
        if (t.y is None) != (main.y is None):
            raise DataError(f"{path}: labels in one file but not the other")
        return t

    def image_shape_of(self, table: Table) -> tuple[int, ...] | None:
        """(C, H, W) of one row as an image (``image_shape`` or the array's own), or ``None``."""
        if self.image_shape is None:
            return table.natural_image_shape
        shape = tuple(self.image_shape)
        shape = (1, *shape) if len(shape) == 2 else shape
        if math.prod(shape) != table.num_features:
            raise ConfigError(f"data.image_shape {list(self.image_shape)} holds {math.prod(shape)} "
                              f"values but {table.source} has {table.num_features} per row")
        return shape

    @property
    def bernoulli(self) -> bool:
        return self.likelihood == "bernoulli"

    def configure_model(self, model: ModelConfig) -> ModelConfig:
        """The model config with its input size (``x_dim``, or ``x_shape`` of an image model) set
        from the file and its ``likelihood`` set from ``likelihood`` (``None`` here takes the
        model's). Reads the file, so a missing file or bad column fails before any work."""
        table = self.table()
        names = {f.name for f in dataclasses.fields(model)}
        changes: dict[str, Any] = {}
        own = getattr(model, "likelihood", None)
        if self.likelihood is None:
            self.likelihood = "bernoulli" if own == "bernoulli" else "gaussian"
        elif "likelihood" in names and own != self.likelihood:
            changes["likelihood"] = self.likelihood
        if "x_shape" in names:
            shape = self.image_shape_of(table)
            if shape is None:
                raise ConfigError(f"model {type(model).__name__} takes images: set "
                                  f"data.image_shape=[C, H, W] ({table.source} has "
                                  f"{table.num_features} values per row)")
            changes["x_shape"] = shape
        elif "x_dim" in names:
            shape = (table.num_features,)
            changes["x_dim"] = table.num_features
        else:  # a model without a declared input size (e.g. a plugin's): vectors
            shape = (table.num_features,)
        self._x_shape = shape
        if all(getattr(model, k) == v for k, v in changes.items()):
            return model
        try:
            return dataclasses.replace(model, **changes)
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:
            raise ConfigError(f"model: {e}") from None

    # ------------------------------------------------------------------ splitting
    def _split(self, table: Table) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        given = dict(table.given)
        if self.val_path is not None:
            t = self._side_table(self.val_path, table)
            given["val"] = (t.x, t.y)
        if self.test_path is not None:
            t = self._side_table(self.test_path, table)
            given["test"] = (t.x, t.y)
        take = lambda idx: (table.x[idx], None if table.y is None else table.y[idx])  # noqa: E731
        if table.split is not None:
            bad = sorted(set(table.split) - set(_SPLIT_NAMES))
            if bad:
                raise DataError(f"{table.source}: split column {self.split_column!r} holds "
                                f"{bad[:5]}; use train, val and test")
            parts = np.array([_SPLIT_NAMES[s] for s in table.split])
            out = {p: take(np.flatnonzero(parts == p)) for p in ("train", "val", "test")}
            empty = [p for p, (x, _) in out.items() if len(x) == 0]
            if empty:
                raise DataError(f"{table.source}: no rows marked {' or '.join(empty)} in split "
                                f"column {self.split_column!r}")
            return out
        n = len(table.x)
        order = np.random.default_rng(derive_seed(self.split_seed, "file-split")).permutation(n)
        out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        start = 0
        for part, frac in (("test", self.test_fraction), ("val", self.val_fraction)):
            if part in given:
                out[part] = given[part]
                continue
            k = max(1, round(frac * n))
            out[part] = take(np.sort(order[start:start + k]))
            start += k
        if start >= n:
            raise DataError(f"{table.source} has {n} rows: too few to hold out validation and test "
                            "rows and keep training rows (give more data or smaller fractions)")
        out["train"] = take(np.sort(order[start:]))
        return out

    # ------------------------------------------------------------------ loading
    def load(self, seed: int = 0) -> DataSplits:
        """Train/validation/test splits, standardised (if so) with the training split's
        statistics; ``train_eval`` is the training split (the k-NN fit)."""
        table = self.table()
        parts = self._split(table)
        image = self.image_shape_of(table)
        if self.bernoulli:
            for part, (x, _) in parts.items():
                lo, hi = float(x.min()), float(x.max())
                if lo < 0.0 or hi > 1.0:
                    raise DataError(f"{self.source_name()}: a Bernoulli likelihood needs values in "
                                    f"[0, 1], the {part} rows span [{lo:g}, {hi:g}]; rescale them or "
                                    "use data.likelihood=gaussian")
        standardize = (not self.bernoulli) if self.standardize is None else self.standardize
        x_train = parts["train"][0]
        transform = (DataTransform.standardize(x_train, image_shape=image,
                                               feature_names=table.feature_names)
                     if standardize else
                     DataTransform(image_shape=image, feature_names=None if
                                   table.feature_names is None else tuple(table.feature_names)))
        x_shape = self._x_shape or (table.num_features,)
        classes = None
        if table.y is not None:
            classes = np.unique(np.concatenate([y for _, y in parts.values()]))

        def tensors(x: np.ndarray, y: np.ndarray | None) -> tuple[torch.Tensor, Any]:
            t = transform.forward(torch.tensor(x.reshape(len(x), -1)))
            t = t.reshape(len(x), *x_shape)
            lab = None if y is None else torch.from_numpy(
                np.searchsorted(classes, y).astype(np.int64))
            return t, lab

        train, val, test = (tensors(*parts[p]) for p in ("train", "val", "test"))
        return DataSplits(
            train=TensorDataset(*[t for t in train if t is not None]),
            val=val,
            test=test,
            train_eval=train,
            x_shape=tuple(x_shape),
            num_classes=0 if classes is None else len(classes),
            description=self._describe(table, parts, classes, standardize),
            transform=transform,
        )

    def source_name(self) -> str:
        return str(self.path)

    def _describe(self, table: Table, parts: dict, classes: np.ndarray | None,
                  standardize: bool) -> str:
        n = {p: len(parts[p][0]) for p in parts}
        labels = ("no labels" if classes is None else
                  f"{len(classes)} classes" + (f" from column {self.label_column!r}"
                                               if self.label_column else ""))
        return (f"{self.source_name()}: {table.num_features} features, {labels}; {n['train']} "
                f"training, {n['val']} validation, {n['test']} test rows"
                + ("; standardised" if standardize else "")
                + f"; {self.likelihood or 'gaussian'} likelihood")


# ---------------------------------------------------------------------------- in memory
#: In-memory tables by digest, while some config holds them (so a config rebuilt from its saved
#: dict in the same process finds its arrays again).
_IN_MEMORY: weakref.WeakValueDictionary[str, Table] = weakref.WeakValueDictionary()


def _digest(table: Table) -> str:
    h = hashlib.sha256()
    for a in (table.x, table.y, table.split):
        if a is not None:
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(np.ascontiguousarray(a).tobytes())
    for part, (x, y) in sorted(table.given.items()):
        h.update(part.encode())
        h.update(np.ascontiguousarray(x).tobytes())
        if y is not None:
            h.update(np.ascontiguousarray(y).tobytes())
    h.update(repr(table.feature_names).encode())
    return h.hexdigest()[:16]


@DATASETS.register("arrays")
@dataclass
class ArrayDataConfig(FileDataConfig):
    """Arrays or a DataFrame given in Python (build it with :func:`from_arrays`).

    Its saved form (``config.yaml``) names the arrays by ``digest`` only; the arrays themselves
    live in this process. A config read back in the same process while the arrays are alive finds
    them; anywhere else (``torchmim evaluate`` on the run folder, a sweep's worker process) loading
    it is a one-line :class:`DataError` that says to write the arrays to a file — or give
    ``from_arrays(..., path=FILE)`` in the first place, which writes an ``.npz`` and returns a
    ``file`` config that works everywhere.

    Attributes:
        digest: a content hash of the arrays.
        shape: the shape of the feature array (for messages and the saved config).
    """

    digest: str = ""
    shape: list[int] = field(default_factory=list)
    _table: Table | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        DataConfig.__post_init__(self)
        self._check_options()
        if self.path is not None or self.val_path is not None or self.test_path is not None:
            raise ConfigError("the arrays data set holds its data in memory; for files use "
                              "data.name=file")
        self._table = _IN_MEMORY.get(self.digest)

    def table(self) -> Table:
        if self._table is None:
            raise DataError(f"the in-memory arrays of this config (digest {self.digest}, shape "
                            f"{self.shape}) are not in this process; write them to a file "
                            "(from_arrays(x, y, path='data.npz')) and use data.name=file")
        return self._table

    def source_name(self) -> str:
        return f"in-memory arrays {tuple(self.shape)}"


def from_arrays(x: Any, y: Any = None, *, path: str | os.PathLike | None = None,
                feature_columns: list[str] | None = None, label_column: str | None = None,
                split_column: str | None = None, **options: Any) -> FileDataConfig:
    """A data config for arrays or a pandas DataFrame given in Python.

    Args:
        x: features ``(N, D)`` (or images) as a NumPy array, tensor or nested lists, or a
            DataFrame (then ``feature_columns``/``label_column``/``split_column`` pick columns).
        y: labels (N,), optional (for a DataFrame, ``label_column`` instead).
        path: also write the arrays to this ``.npz`` (atomically) and return a ``file`` config
            reading it, which saved runs and other processes can load again.
        options: further :class:`FileDataConfig` options (``val_fraction``, ``standardize``,
            ``likelihood``, ``image_shape``, ...).

    Returns an :class:`ArrayDataConfig` (in memory; see its docs for what saving it means) or,
    with ``path``, a :class:`FileDataConfig`.
    """
    if hasattr(x, "columns") and hasattr(x, "iloc"):  # a DataFrame
        table = table_from_frame(x, feature_columns=feature_columns, label_column=label_column,
                                 split_column=split_column)
        if y is not None:
            if table.y is not None:
                raise ConfigError("give the labels either as y or as label_column, not both")
            table.y = _labels(y, len(table.x), "y")
    else:
        if feature_columns or label_column or split_column:
            raise ConfigError("feature_columns, label_column and split_column pick columns of a "
                              "DataFrame; with arrays give x and y")
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        table = Table(_numeric(a, "x"), source="x")
        if y is not None:
            yy = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y
            table.y = _labels(yy, len(table.x), "y")
    if path is not None:
        return _write_npz(table, Path(path), options)
    digest = _digest(table)
    table = _IN_MEMORY.setdefault(digest, table)
    cfg = ArrayDataConfig(digest=digest, shape=list(table.x.shape),
                          split_column=split_column, **options)
    return cfg


def _write_npz(table: Table, path: Path, options: dict[str, Any]) -> FileDataConfig:
    if table.split is not None:
        raise ConfigError("a split column cannot be written to a .npz; pass path=None or save "
                          "the DataFrame as CSV/Parquet yourself")
    if not path.name.endswith(".npz"):
        raise ConfigError(f"from_arrays(path=...) writes a .npz file, got {path.name}")
    import io

    from ..io import atomic_write_bytes

    arrays = {"x": table.x} if table.y is None else {"x": table.x, "y": table.y}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())  # temporary file, fsync, rename
    return FileDataConfig(path=str(path), **options)
