"""MNIST and Fashion-MNIST as in the reference set-up, and the binarisation shared with Omniglot.

Protocol of the reference set-up (``specs/image-architectures.md``; the VampPrior code the paper
follows, ``utils/load_data.py``):

* the 60,000 training images are split into 50,000 for training and 10,000 for validation; the test
  set is the official 10,000. The reference takes the *last* 10,000 images of the training file as
  the validation set (``split_seed=None`` here); by default this library uses a fixed, seeded random
  split (``split_seed=0``), which also works for files sorted by class (such as a 5k subset);
* training images are **dynamically binarised**: every pixel is drawn afresh as Bernoulli(grey
  level) each time it is used (the reference calls ``torch.bernoulli`` on every batch);
* validation and test images are binarised **once** with a fixed seed (the reference:
  ``np.random.seed(777)``), so all runs and epochs are validated and tested on the same binary
  images.

Here every draw is a pure function of a key and the image's index in its source file (a
counter-based generator, :func:`bernoulli_uniforms`), so the draws do not depend on batch
composition, order, caps, the split or worker processes: the training images of epoch ``e`` are a
function of (run seed, ``e``), and the fixed binarisation of an image is the same whichever split it
lands in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..seeding import derive_seed
from .base import DATASETS, DataConfig, DataSplits
from .download import REMOTE_FILES, locate_files
from .idx import read_idx

__all__ = [
    "BINARIZE_MODES",
    "FASHION_MNIST_CLASSES",
    "MNIST_CLASSES",
    "BinarizeMode",
    "BinarizedImages",
    "FashionMNISTConfig",
    "IDXImageConfig",
    "ImageSplitConfig",
    "MNISTConfig",
    "bernoulli_uniforms",
    "binarize_images",
    "build_image_splits",
    "grey_levels",
    "read_idx_images",
]

BinarizeMode = Literal["dynamic", "fixed", "none"]
#: ``dynamic``: training pixels re-drawn every epoch; ``fixed``: every split binarised once;
#: ``none``: grey levels in [0, 1]. Validation, test and k-NN data are fixed-binarised unless
#: ``none``.
BINARIZE_MODES: tuple[str, ...] = ("dynamic", "fixed", "none")

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# ---------- binarising
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def bernoulli_uniforms(key: int, ids: np.ndarray, n: int) -> np.ndarray:
    """Uniforms in [0, 1), shape ``(len(ids), n)``; entry (i, j) depends only on (key, ids[i], j).

    SplitMix64 (Steele et al., 2014) evaluated at counter ``ids[i] * n + j + 1`` of the stream that
    starts at ``key``: a counter-based generator, so any subset of images can be drawn in any order
    (or in worker processes) with identical results. 53-bit resolution.
    """
    ids = np.asarray(ids, dtype=np.uint64).reshape(-1, 1)
    z = ids * np.uint64(n) + np.arange(1, n + 1, dtype=np.uint64)
    z *= _GAMMA
    z += np.uint64(int(key) & 0xFFFFFFFFFFFFFFFF)
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def grey_levels(images: np.ndarray) -> np.ndarray:
    """Pixel probabilities in [0, 1] as float32: uint8 grey levels / 255, float images as is."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(255.0)
    return images.astype(np.float32, copy=False)


def binarize_images(
    images: np.ndarray, key: int, ids: np.ndarray | None = None, *, chunk: int = 2048
) -> np.ndarray:
    """Bernoulli(grey level) draws of ``images`` (N, ...) as uint8 0/1, a function of (key, ids).

    ``images`` are uint8 grey levels (p = g / 255) or float probabilities in [0, 1]. ``ids``
    (default ``arange(N)``) identify the images in the stream; processed ``chunk`` images at a time.
    """
    n = images.shape[0]
    ids = np.arange(n) if ids is None else np.asarray(ids)
    flat = images.reshape(n, -1)
    out = np.empty(flat.shape, dtype=np.uint8)
    for s in range(0, n, chunk):
        block = flat[s : s + chunk]
        p = (
            block.astype(np.float64) / 255.0
            if block.dtype == np.uint8
            else block.astype(np.float64)
        )
        out[s : s + chunk] = bernoulli_uniforms(key, ids[s : s + chunk], flat.shape[1]) < p
    return out.reshape(images.shape)


def _to_tensor(x: np.ndarray) -> Tensor:
    """(N, H, W) 0/1 draws or probabilities → float32 tensor (N, 1, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)


class BinarizedImages(Dataset):
    """Labelled images, served as float32 ``(1, H, W)`` tensors binarised as ``binarize`` says.

    * ``"dynamic"``: each access draws Bernoulli(grey level) afresh, deterministically given
      (``seed``, epoch, image id): the same epoch gives the same images, a new epoch new ones. The
      trainer calls :meth:`set_epoch` before every epoch (epoch 0 until then).
    * ``"fixed"``: binarised once with ``fixed_key`` (default derived from ``seed``).
    * ``"none"``: grey levels in [0, 1].

    Args:
        images: (N, H, W) uint8 grey levels (0–255, p = g/255) or float probabilities in [0, 1].
        labels: (N,) integer labels.
        ids: (N,) identifiers of the images in their source (default ``arange(N)``): the draws of an
            image depend on its id, not on its position in this data set.

    Batched access (``dataset[list_of_indices]``, or ``__getitems__``) binarises a whole batch in
    one vectorised call; the trainer's loader uses it (``batched_indexing``).
    """

    batched_indexing = True

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        binarize: BinarizeMode = "dynamic",
        seed: int = 0,
        ids: np.ndarray | None = None,
        fixed_key: int | None = None,
    ) -> None:
        if binarize not in BINARIZE_MODES:
            raise ConfigError(f"binarize must be one of {list(BINARIZE_MODES)}, got {binarize!r}")
        images = np.asarray(images)
        labels = np.asarray(labels)
        if images.ndim != 3 or labels.shape != (images.shape[0],):
            raise DataError(
                f"expected images (N, H, W) and labels (N,), got shapes {images.shape} "
                f"and {labels.shape}"
            )
        self.images = images
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.ids = np.arange(len(images)) if ids is None else np.asarray(ids, dtype=np.int64)
        self.binarize = binarize
        self.seed = int(seed)
        self.epoch = 0
        self._fixed: np.ndarray | None = None
        if binarize == "fixed":
            key = derive_seed(self.seed, "fixed") if fixed_key is None else fixed_key
            self._fixed = binarize_images(images, key, self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the dynamic binarisation of ``epoch`` (no effect for ``fixed`` and ``none``)."""
        self.epoch = int(epoch)

    def initialization_data(self) -> BinarizedImages:
        """The same images as grey levels (``binarize="none"``): what the trainer hands to
        ``model.initialize_from_data``, as the reference initialises VampPrior pseudo-inputs from
        grey-level training images (the prior's ``init`` option can binarise them instead)."""
        return BinarizedImages(self.images, self.labels.numpy(), binarize="none", seed=self.seed,
                               ids=self.ids)

    def __len__(self) -> int:
        return len(self.images)

    def _index(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray([int(i) for i in indices], dtype=np.int64)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for a data set of {n} images")
        return idx % n if n else idx

    def get_batch(self, indices: Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
        """Images ``(B, 1, H, W)`` float32 and labels ``(B,)`` int64 of ``indices``."""
        idx = self._index(indices)
        if self.binarize == "dynamic":
            x = binarize_images(
                self.images[idx], derive_seed(self.seed, "dynamic", self.epoch), self.ids[idx]
            )
        elif self._fixed is not None:
            x = self._fixed[idx]
        else:
            x = grey_levels(self.images[idx])
        return _to_tensor(x), self.labels[torch.from_numpy(idx)]

    def __getitem__(self, i: int | Sequence[int] | np.ndarray) -> tuple[Tensor, Tensor]:
        if isinstance(i, (list, tuple, np.ndarray, torch.Tensor)):
            return self.get_batch(i)
        x, y = self.get_batch([i])
        return x[0], y[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Tensor, Tensor]]:
        x, y = self.get_batch(indices)
        return list(zip(x, y, strict=True))

    def __repr__(self) -> str:
        h, w = self.images.shape[1:]
        return (
            f"BinarizedImages({len(self)} images {h}x{w}, binarize={self.binarize!r}, "
            f"seed={self.seed}, epoch={self.epoch})"
        )


# ---------- splits
@dataclass
class ImageSplitConfig(DataConfig):
    """Options common to the binarised image data sets (not registered itself).

    Attributes:
        root: folder with the data files; default: search ``$TORCHMIM_DATA/<name>``, then
            ``~/.cache/torchmim/<name>`` (and system folders where a data set names them).
        download: fetch missing files (into ``root`` or the cache) from their official URLs.
        binarize: ``dynamic`` (the reference), ``fixed`` or ``none`` (grey levels in [0, 1]).
        n_train: keep only the first ``n_train`` training images after the split (None: all).
        n_val: how many images the split holds out of the training file for validation.
        n_test: keep only the first ``n_test`` test images (None: all).
        n_train_eval: how many (fixed-binarised) training images ``train_eval`` holds for the k-NN
            classifier (the first of the training split; None: all).
        split_seed: seed of the train/validation split, independent of the run seed so that all runs
            share one validation set; None: no shuffling, the last ``n_val`` images of the training
            file are the validation set (the reference's split of MNIST).
        binarize_seed: seed of the fixed binarisation of validation, test and ``train_eval`` images
            (777 as in the reference; the draws themselves differ from NumPy's).
    """

    root: str | None = None
    download: bool = False
    binarize: BinarizeMode = "dynamic"
    n_train: int | None = None
    n_val: int | None = 10_000
    n_test: int | None = None
    n_train_eval: int | None = 10_000
    split_seed: int | None = 0
    binarize_seed: int = 777

    def __post_init__(self) -> None:
        super().__post_init__()  # field types
        if self.binarize not in BINARIZE_MODES:
            raise ConfigError(
                f"data.binarize must be one of {list(BINARIZE_MODES)}, got {self.binarize!r}"
            )
        for name in ("n_train", "n_val", "n_test", "n_train_eval"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"data.{name} must be a positive integer or null, got {value!r}")
        if self.root is not None and not isinstance(self.root, (str, os.PathLike)):
            raise ConfigError(f"data.root must be a path, got {self.root!r}")
        for name in ("split_seed", "binarize_seed"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"data.{name} must be a non-negative integer, got {value}")


def _fixed_tensor(images: np.ndarray, ids: np.ndarray, key: int, binarize: str) -> Tensor:
    """Binarised once with ``key`` (grey levels if ``binarize="none"``), (N, 1, H, W) float32."""
    if binarize == "none":
        return _to_tensor(grey_levels(images))
    return _to_tensor(binarize_images(images, key, ids))


def build_image_splits(
    cfg: ImageSplitConfig,
    *,
    seed: int,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    n_val: int,
    num_classes: int,
    description: str,
    train_ids: np.ndarray | None = None,
    test_ids: np.ndarray | None = None,
    train_part: str = "train",
    test_part: str = "test",
    source: str = "the training data",
) -> DataSplits:
    """Split ``train`` into training and validation images and binarise everything as ``cfg`` says.

    The last ``n_val`` images of the (``split_seed``-permuted) training data are the validation set;
    the first ``n_train`` of the rest the training set; the first ``n_test`` test images the test
    set. Fixed draws use keys derived from ``(binarize_seed, train_part / test_part)`` and the image
    ids.

    Raises:
        ConfigError: ``n_val`` leaves no training image, or ``n_train``/``n_test`` exceed what
            there is.
    """
    (x_pool, y_pool), (x_test, y_test) = train, test
    n_pool = len(x_pool)
    train_ids = np.arange(n_pool) if train_ids is None else np.asarray(train_ids)
    test_ids = np.arange(len(x_test)) if test_ids is None else np.asarray(test_ids)
    if n_val >= n_pool:
        raise ConfigError(
            f"data.n_val={n_val} leaves no training images: {source} holds only "
            f"{n_pool} images; set data.n_val below {n_pool} (e.g. {max(1, n_pool // 6)})"
        )
    if cfg.split_seed is None:
        order = np.arange(n_pool)
    else:
        order = np.random.default_rng(derive_seed(cfg.split_seed, "validation-split")).permutation(
            n_pool
        )
    train_idx, val_idx = order[: n_pool - n_val], order[n_pool - n_val :]
    if cfg.n_train is not None:
        if cfg.n_train > len(train_idx):
            raise ConfigError(
                f"data.n_train={cfg.n_train} but only {len(train_idx)} training images "
                f"remain after holding out n_val={n_val} of {source}"
            )
        train_idx = train_idx[: cfg.n_train]
    test_idx = np.arange(len(x_test))
    if cfg.n_test is not None:
        if cfg.n_test > len(test_idx):
            raise ConfigError(
                f"data.n_test={cfg.n_test} but the test set has {len(test_idx)} images"
            )
        test_idx = test_idx[: cfg.n_test]
    eval_idx = train_idx if cfg.n_train_eval is None else train_idx[: cfg.n_train_eval]

    key_train = derive_seed(cfg.binarize_seed, "fixed", train_part)
    key_test = derive_seed(cfg.binarize_seed, "fixed", test_part)
    as_labels = lambda y: torch.from_numpy(np.asarray(y, dtype=np.int64))
    train_ds = BinarizedImages(
        x_pool[train_idx],
        y_pool[train_idx],
        binarize=cfg.binarize,
        seed=seed,
        ids=train_ids[train_idx],
        fixed_key=key_train,
    )
    return DataSplits(
        train=train_ds,
        val=(
            _fixed_tensor(x_pool[val_idx], train_ids[val_idx], key_train, cfg.binarize),
            as_labels(y_pool[val_idx]),
        ),
        test=(
            _fixed_tensor(x_test[test_idx], test_ids[test_idx], key_test, cfg.binarize),
            as_labels(y_test[test_idx]),
        ),
        train_eval=(
            _fixed_tensor(x_pool[eval_idx], train_ids[eval_idx], key_train, cfg.binarize),
            as_labels(y_pool[eval_idx]),
        ),
        x_shape=(1, *x_pool.shape[1:]),
        num_classes=num_classes,
        description=(
            f"{description}; {_binarize_phrase(cfg)}: {len(train_idx)} training, "
            f"{len(val_idx)} validation, {len(test_idx)} test images"
        ),
    )


def _binarize_phrase(cfg: ImageSplitConfig) -> str:
    if cfg.binarize == "dynamic":
        return (
            f"training images re-binarised every epoch, the others binarised once "
            f"(seed {cfg.binarize_seed})"
        )
    if cfg.binarize == "fixed":
        return f"binarised once (seed {cfg.binarize_seed})"
    return "grey levels in [0, 1]"


# ---------- IDX data
def read_idx_images(
    images_path: str | os.PathLike, labels_path: str | os.PathLike, *, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """A pair of IDX files: uint8 images (N, H, W) and int64 labels (N,) in [0, num_classes).

    Raises:
        DataError: a file is missing or corrupt, the images are not uint8 (N, H, W), or the
            labels do not match them in number or range (the message names the file).
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, H, W), got "
            f"{images.dtype} of shape {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{labels_path}: expected a 1-D array of integer labels, got {labels.dtype} "
            f"of shape {labels.shape}"
        )
    if len(labels) != len(images):
        raise DataError(
            f"{labels_path} holds {len(labels)} labels but {images_path} holds {len(images)} images"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{labels_path}: labels must lie in [0, {num_classes}), found "
            f"[{labels.min()}, {labels.max()}]"
        )
    return images, labels.astype(np.int64)


@dataclass
class IDXImageConfig(ImageSplitConfig):
    """A 10-class data set of four IDX files (MNIST's format); the file names can be overridden.

    Attributes:
        train_images, train_labels, test_images, test_labels: file names inside the data folder (an
            unpacked ``x`` is accepted for ``x.gz`` and vice versa) or absolute paths.
    """

    dataset_name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    system_dirs: ClassVar[tuple[str, ...]] = ()
    install_hint: ClassVar[str] = ""

    train_images: str = "train-images-idx3-ubyte.gz"
    train_labels: str = "train-labels-idx1-ubyte.gz"
    test_images: str = "t10k-images-idx3-ubyte.gz"
    test_labels: str = "t10k-labels-idx1-ubyte.gz"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_val is None:
            raise ConfigError(
                "data.n_val must be set: the number of training images held out for "
                "validation (10000 in the reference)"
            )

    def _filenames(self) -> list[str]:
        return [self.train_images, self.train_labels, self.test_images, self.test_labels]

    def _hint(self) -> str:
        known = REMOTE_FILES.get(self.dataset_name, {})
        lines = [
            "Set data.download=true to fetch the official files"
            + (
                f" (e.g. from {next(iter(known.values())).urls[0].rsplit('/', 1)[0]}/)"
                if known
                else ""
            )
            + ", or put the files in one of these folders (or point data.root at them)."
        ]
        if self.install_hint:
            lines.append(self.install_hint)
        return " ".join(lines)

    def locate(self) -> dict[str, Path]:
        """Paths of the four files (downloading them if ``download``); DataError if not found."""
        return locate_files(
            self.dataset_name,
            self._filenames(),
            root=self.root,
            system_dirs=self.system_dirs,
            download=self.download,
            hint=self._hint(),
        )

    def read(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], Path]:
        """``((train images, labels), (test images, labels), folder)`` as uint8 / int64 arrays."""
        paths = self.locate()
        train = read_idx_images(paths[self.train_images], paths[self.train_labels])
        test = read_idx_images(paths[self.test_images], paths[self.test_labels])
        if train[0].shape[1:] != test[0].shape[1:]:
            raise DataError(
                f"training images are {train[0].shape[1:]} but test images "
                f"{test[0].shape[1:]} ({paths[self.train_images]}, {paths[self.test_images]})"
            )
        return train, test, paths[self.train_images].parent

    def load(self, seed: int = 0) -> DataSplits:
        """The reference protocol (module docstring); ``seed`` drives the dynamic draws."""
        train, test, folder = self.read()
        h, w = train[0].shape[1:]
        return build_image_splits(
            self,
            seed=seed,
            train=train,
            test=test,
            n_val=int(self.n_val),
            num_classes=10,
            description=f"{self.title} {h}x{w} from {folder}",
            source=self.train_images,
        )


@DATASETS.register("mnist")
@dataclass
class MNISTConfig(IDXImageConfig):
    """MNIST (LeCun et al.), 28×28 digits, 60k training + 10k test images, 10 classes.

    For a subset stored under other names (e.g. ``train5k-images-idx3-ubyte.gz``), set
    ``train_images``/``train_labels`` and an ``n_val`` that fits (e.g. 1000 of 5000).
    """

    dataset_name: ClassVar[str] = "mnist"
    title: ClassVar[str] = "MNIST"


@DATASETS.register("fashion-mnist")
@dataclass
class FashionMNISTConfig(IDXImageConfig):
    """Fashion-MNIST (Xiao et al., 2017), 28×28 clothing images, 60k + 10k, 10 classes.

    Also found in ``/usr/share/datasets/fashion-mnist``, where the Debian/Ubuntu package
    ``dataset-fashion-mnist`` installs the official files.
    """

    dataset_name: ClassVar[str] = "fashion-mnist"
    title: ClassVar[str] = "Fashion-MNIST"
    system_dirs: ClassVar[tuple[str, ...]] = ("/usr/share/datasets/fashion-mnist",)
    install_hint: ClassVar[str] = (
        "On Debian/Ubuntu, `apt-get install dataset-fashion-mnist` installs "
        "them in /usr/share/datasets/fashion-mnist."
    )
