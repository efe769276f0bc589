"""Turning what users pass to ``fit`` — arrays, tensors, Datasets, DataLoaders — into batches of x."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from ..errors import DataError

__all__ = ["CASTABLE_DTYPES", "as_dataloader", "as_tensor", "batch_x", "check_finite"]


#: The non-float dtypes taken as numbers (and cast to the model's float dtype) by ``fit`` and by
#: the model's ``encode``/``decode``/...: integers and booleans, as binary data (0/1, often uint8
#: or bool) and count data usually come. Complex numbers, strings and objects are refused.
CASTABLE_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def as_tensor(data: Any, *, name: str = "data", dtype: torch.dtype | None = None) -> Tensor:
    """A floating tensor from an array-like (integer and boolean arrays are cast to float, as
    :data:`CASTABLE_DTYPES` says), with clear errors for non-numeric or empty input."""
    if isinstance(data, Tensor):
        t = data
    else:
        try:
            t = torch.as_tensor(np.asarray(data))
        except (TypeError, ValueError) as e:
            raise DataError(f"{name} is not a numeric array ({e})") from None
    if not (t.is_floating_point() or t.dtype in CASTABLE_DTYPES):
        raise DataError(f"{name} must be numeric, got dtype {t.dtype}")
    if t.dim() == 0 or t.shape[0] == 0:
        raise DataError(f"{name} is empty (shape {tuple(t.shape)})")
    return t.to(dtype or torch.get_default_dtype()) if not t.is_floating_point() or dtype else t


def check_finite(x: Tensor, *, name: str = "data") -> Tensor:
    """Raise :class:`DataError` naming the first row with NaN or Inf."""
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = bad.reshape(bad.shape[0], -1).any(1).nonzero().flatten()
        kind = "NaN" if torch.isnan(x).any() else "Inf"
        raise DataError(f"{name} contains {kind} values in {len(rows)} row(s), first at row "
                        f"{int(rows[0])}")
    return x


def batch_x(batch: Any) -> Tensor:
    """The observations of a batch: the tensor itself, the first item of a tuple, or ``batch["x"]``."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, Mapping):
        if "x" not in batch:
            raise DataError(f"a dict batch must have key 'x', got keys {sorted(batch)}")
        return batch["x"]
    if isinstance(batch, Sequence) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise DataError(f"cannot find observations in a batch of type {type(batch).__name__}")


def as_dataloader(
    data: Any,
    *,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    num_workers: int = 0,
    name: str = "data",
) -> tuple[DataLoader, bool]:
    """A DataLoader over ``data``; also returns whether the data was checked for NaN/Inf up front.

    Arrays and tensors (or a tuple ``(x, y)`` of them, x first) are validated once here; batches of user
    Datasets and DataLoaders are validated as they arrive.

    In-memory data (a ``TensorDataset``, or a Dataset with ``batched_indexing = True`` whose
    ``dataset[list_of_indices]`` returns a whole batch) is fetched one batch per index operation instead
    of one sample at a time plus collation: the toy epochs spend ~12% of their time in per-sample
    fetching otherwise (docs/benchmarks.md).
    """
    if isinstance(data, DataLoader):
        return data, False
    if isinstance(data, Dataset) and not isinstance(data, TensorDataset):
        if getattr(data, "batched_indexing", False):
            return _batched_loader(data, batch_size, shuffle, generator, drop_last, num_workers), False
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          drop_last=drop_last, num_workers=num_workers), False
    if isinstance(data, TensorDataset):
        tensors = data.tensors
    elif isinstance(data, tuple):  # (x, y, ...) arrays of equal length; only x is modelled
        tensors = tuple(as_tensor(d, name=name) for d in data)
        if any(len(t) != len(tensors[0]) for t in tensors):
            raise DataError(f"{name}: the arrays of the tuple have different lengths "
                            f"{[len(t) for t in tensors]}")
    else:
        tensors = (as_tensor(data, name=name),)
    x = tensors[0]
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    check_finite(x, name=name)
    dataset = TensorDataset(x, *tensors[1:])
    return _batched_loader(dataset, batch_size, shuffle, generator, drop_last, num_workers), True


def _identity(batch: Any) -> Any:
    return batch


def _batched_loader(dataset: Dataset, batch_size: int, shuffle: bool,
                    generator: torch.Generator | None, drop_last: bool, num_workers: int) -> DataLoader:
    """A DataLoader whose sampler yields lists of indices and whose dataset returns whole batches."""
    base = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(dataset, batch_size=None, sampler=sampler, collate_fn=_identity,
                      num_workers=num_workers)
