"""Omniglot (Lake et al., 2015), 28×28 binarised, from ``chardata.mat`` or the original PNGs.

Two sources:

* **chardata.mat**, the 28×28 Omniglot of the VAE literature (IWAE repository; the VampPrior code
  the paper follows loads it): ``data`` (784 × 24,345 training images, grey levels in [0, 1]),
  ``testdata`` (784 × 8,070), ``target``/``testtarget`` (one-hot alphabet labels, 50 × N) and, in
  the published file, ``targetchar``/``testtargetchar`` (the character within its alphabet). Each
  column is a 28×28 image in **Fortran (column-major) order**: the VampPrior code does
  ``data.T.reshape((-1, 28, 28)).reshape((-1, 784), order='F')`` and views the result row-major,
  i.e. image = ``column.reshape(28, 28, order="F")``. Reference split: the training images are
  shuffled and the last **1,345** held out for validation; the test set is ``testdata``.
* **PNG folders or .zip archives** of the Omniglot repository (``images_background.zip``,
  ``images_evaluation.zip`` or the small subsets), laid out ``ALPHABET/characterNN/NNNN_MM.png``
  (any leading folders are ignored) with 105×105 images, black ink (0) on white. They are inverted
  (ink = 1) and shrunk to 28×28 by area averaging (Pillow's BOX filter), so a pixel's grey level is
  the fraction of it covered by ink. An image found in several sources (same alphabet, character and
  file name, as in the two small subsets, which share Greek and Latin) is loaded once. Split: within
  every character a seeded ``test_fraction`` (default 25 %, 5 of 20 drawings, about chardata's 8,070
  / 32,415) of the drawings is the test set; the validation images are then drawn (seeded) from the
  rest, by default as many as chardata's proportion 1,345 / 24,345.

Labels are alphabets by default (``labels: character`` for characters, numbered across alphabets).
Binarisation as for MNIST (:mod:`torchmim.data.images`): dynamic for training, fixed for the rest.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from ..errors import ConfigError, DataError
from ..seeding import derive_seed
from .base import DATASETS, DataSplits
from .download import REMOTE_FILES, cache_dir, find_file, locate_files, search_dirs
from .images import ImageSplitConfig, build_image_splits

__all__ = [
    "REFERENCE_N_VAL",
    "OmniglotConfig",
    "OmniglotImages",
    "read_chardata",
    "read_omniglot_pngs",
    "split_by_character",
]

#: Validation images the reference holds out of chardata's 24,345 training images.
REFERENCE_N_VAL = 1345
_CHARDATA_TRAIN = 24_345
_SIDE = 28


@dataclass
class OmniglotImages:
    """Omniglot images with alphabet and character labels.

    Attributes:
        images: (N, 28, 28), ink = high: uint8 grey levels (PNG source) or float32 in [0, 1]
            (chardata).
        alphabet: (N,) int64 alphabet index into ``alphabet_names``.
        character: (N,) int64 character index into ``character_names`` (None if the file has none).
        alphabet_names: names of the alphabets (folder names; ``alphabet NN`` for chardata, which
            stores no names).
        character_names: ``ALPHABET/characterNN`` (PNG) or ``alphabet NN/character MM`` (chardata).
        files: the PNG of every image (``ALPHABET/characterNN/NNNN_MM.png``), None for chardata.
    """

    images: np.ndarray
    alphabet: np.ndarray
    character: np.ndarray | None
    alphabet_names: list[str]
    character_names: list[str]
    files: list[str] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: np.ndarray) -> OmniglotImages:
        """The images at ``idx`` (names kept, so labels stay comparable)."""
        return OmniglotImages(
            self.images[idx],
            self.alphabet[idx],
            None if self.character is None else self.character[idx],
            self.alphabet_names,
            self.character_names,
            None if self.files is None else [self.files[i] for i in idx],
        )


# ---------- chardata
def _columns_to_images(data: np.ndarray, key: str, path: Path) -> np.ndarray:
    """784 × N (or N × 784) Fortran-ordered columns → (N, 28, 28) float32 images."""
    if data.ndim != 2 or _SIDE * _SIDE not in data.shape:
        raise DataError(
            f"{path}: {key!r} must be a 784 x N matrix of 28x28 images, got shape {data.shape}"
        )
    cols = data if data.shape[0] == _SIDE * _SIDE else data.T
    if not np.issubdtype(cols.dtype, np.number):
        raise DataError(f"{path}: {key!r} is not numeric ({cols.dtype})")
    # column j, pixel k = r + 28 c  →  image[j, r, c]  (Fortran order)
    images = cols.T.reshape(-1, _SIDE, _SIDE).transpose(0, 2, 1).astype(np.float32)
    if images.size and (not np.isfinite(images).all() or images.min() < 0 or images.max() > 1):
        raise DataError(
            f"{path}: {key!r} must hold grey levels in [0, 1], found values in "
            f"[{np.nanmin(images):g}, {np.nanmax(images):g}]"
        )
    return np.ascontiguousarray(images)


def _alphabet_labels(target: np.ndarray, n: int, key: str, path: Path) -> np.ndarray:
    """Alphabet indices from a one-hot (C × N or N × C) matrix or a vector of indices."""
    target = np.asarray(target)
    if target.ndim == 2 and 1 in target.shape and target.size == n:
        return target.reshape(-1).astype(np.int64)
    if target.ndim == 2 and target.shape[1] == n:
        return target.argmax(axis=0).astype(np.int64)
    if target.ndim == 2 and target.shape[0] == n:
        return target.argmax(axis=1).astype(np.int64)
    if target.ndim == 1 and target.shape[0] == n:
        return target.astype(np.int64)
    raise DataError(f"{path}: {key!r} of shape {target.shape} does not label {n} images")


def read_chardata(path: str | os.PathLike) -> tuple[OmniglotImages, OmniglotImages]:
    """``(train, test)`` from the IWAE ``chardata.mat`` (see the module docstring for its layout).

    Raises:
        DataError: the file is missing, not a MATLAB file, lacks ``data``/``testdata``/``target``/
            ``testtarget``, or holds malformed arrays.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"Omniglot file not found: {path}")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... for non-MAT input
        raise DataError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from None
    missing = [k for k in ("data", "testdata", "target", "testtarget") if k not in mat]
    if missing:
        raise DataError(
            f"{path}: missing {', '.join(map(repr, missing))}; chardata.mat holds data, "
            f"target, testdata and testtarget"
        )
    x_train = _columns_to_images(np.asarray(mat["data"]), "data", path)
    x_test = _columns_to_images(np.asarray(mat["testdata"]), "testdata", path)
    a_train = _alphabet_labels(mat["target"], len(x_train), "target", path)
    a_test = _alphabet_labels(mat["testtarget"], len(x_test), "testtarget", path)
    n_alpha = int(max(a_train.max(initial=-1), a_test.max(initial=-1)) + 1)
    for key in ("target", "testtarget"):
        if np.ndim(mat[key]) == 2 and min(np.shape(mat[key])) > 1:
            n_alpha = max(n_alpha, min(np.shape(mat[key])))
    alphabet_names = [f"alphabet {i:02d}" for i in range(n_alpha)]
    c_train = c_test = None
    character_names: list[str] = []
    if "targetchar" in mat and "testtargetchar" in mat:
        ch_train = np.asarray(mat["targetchar"]).reshape(-1).astype(np.int64)
        ch_test = np.asarray(mat["testtargetchar"]).reshape(-1).astype(np.int64)
        if len(ch_train) != len(x_train) or len(ch_test) != len(x_test):
            raise DataError(
                f"{path}: 'targetchar'/'testtargetchar' do not match the number of images"
            )
        pairs = np.concatenate([np.stack([a_train, ch_train], 1), np.stack([a_test, ch_test], 1)])
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        c_train, c_test = inverse[: len(x_train)], inverse[len(x_train) :]
        character_names = [f"alphabet {a:02d}/character {c:02d}" for a, c in uniq]
    return (
        OmniglotImages(x_train, a_train, c_train, alphabet_names, character_names),
        OmniglotImages(x_test, a_test, c_test, alphabet_names, character_names),
    )


# ---------- PNGs
def _is_png_entry(parts: Sequence[str]) -> bool:
    """A path ``.../ALPHABET/characterNN/NAME.png``, not a macOS resource fork or hidden file."""
    return (
        len(parts) >= 3
        and parts[-1].lower().endswith(".png")
        and not any(p.startswith(("__MACOSX", ".")) for p in parts)
    )


def _read_png_source(
    source: Path, size: int, images: dict[tuple[str, str, str], np.ndarray]
) -> int:
    """Decode the PNGs of a folder or .zip archive into ``images`` (keyed by alphabet, character and
    file name; keys already present are skipped); returns how many PNGs the source holds."""
    count = 0
    if source.is_dir():
        for p in sorted(source.rglob("*.png")):
            parts = p.relative_to(source).parts
            if _is_png_entry(parts):
                count += 1
                key = (parts[-3], parts[-2], parts[-1])
                if key not in images:
                    try:
                        raw = p.read_bytes()
                    except OSError as e:
                        raise DataError(f"{p}: cannot read ({e.strerror or e})") from None
                    images[key] = _png_to_array(raw, str(p), size)
        return count
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{source}: not a readable .zip archive of Omniglot PNGs ({e})") from None
    with archive:
        for name in sorted(archive.namelist()):
            parts = PurePosixPath(name).parts
            if _is_png_entry(parts):
                count += 1
                key = (parts[-3], parts[-2], parts[-1])
                if key not in images:
                    try:
                        raw = archive.read(name)
                    except (zipfile.BadZipFile, OSError, EOFError) as e:
                        raise DataError(f"{source}: cannot read {name} ({e})") from None
                    images[key] = _png_to_array(raw, f"{source}:{name}", size)
    return count


def _png_to_array(data: bytes, where: str, size: int) -> np.ndarray:
    """Decode one PNG, invert (ink = 255) and shrink to ``size``×``size`` by area averaging."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            grey = im.convert("L").resize((size, size), Image.Resampling.BOX)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{where}: cannot decode the PNG ({e})") from None
    return 255 - np.asarray(grey, dtype=np.uint8)


def read_omniglot_pngs(
    sources: Sequence[str | os.PathLike], *, size: int = _SIDE
) -> OmniglotImages:
    """Omniglot images from folders and/or .zip archives of the original PNGs, inverted and resized.

    Images are ordered by (alphabet, character, file name); duplicates across sources are loaded
    once. Alphabets and characters are numbered in sorted order of their names.

    Raises:
        DataError: a source is missing or unreadable, a PNG cannot be decoded, or no PNG is found in
            the layout ``ALPHABET/characterNN/NNNN_MM.png``.
    """
    decoded: dict[tuple[str, str, str], np.ndarray] = {}
    for src in sources:
        src = Path(src)
        if not src.exists():
            raise DataError(f"Omniglot PNG source not found: {src}")
        if _read_png_source(src, size, decoded) == 0:
            raise DataError(f"{src}: no PNG images in the layout ALPHABET/characterNN/NNNN_MM.png")
    keys = sorted(decoded)
    alphabet_names = sorted({k[0] for k in keys})
    character_names = sorted({f"{k[0]}/{k[1]}" for k in keys})
    a_index = {n: i for i, n in enumerate(alphabet_names)}
    c_index = {n: i for i, n in enumerate(character_names)}
    images = np.stack([decoded[k] for k in keys]) if keys else np.zeros((0, size, size), np.uint8)
    return OmniglotImages(
        images=images,
        alphabet=np.array([a_index[k[0]] for k in keys], dtype=np.int64),
        character=np.array([c_index[f"{k[0]}/{k[1]}"] for k in keys], dtype=np.int64),
        alphabet_names=alphabet_names,
        character_names=character_names,
        files=["/".join(k) for k in keys],
    )


def split_by_character(
    character: np.ndarray, test_fraction: float, seed: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: within every character, ``round(test_fraction * count)`` drawings go
    to the test set, chosen with ``seed`` (None: the last ones in file order).

    The training indices are sorted (the split into training and validation permutes them later).
    With a ``seed`` the test indices come in a seeded random order, so that any prefix of the test
    set (``data.n_test``, ``eval.nll_points``) is a uniform sample of it: in file order they are
    grouped by alphabet, and the first 1,000 of the small subsets' 1,210 test drawings would hold 7
    of the 8 alphabets (the first 300, used for the NLL, 3 of them)."""
    rng = None if seed is None else np.random.default_rng(derive_seed(seed, "omniglot-test-split"))
    train, test = [], []
    for c in np.unique(character):
        idx = np.flatnonzero(character == c)
        if rng is not None:
            idx = rng.permutation(idx)
        k = int(round(test_fraction * len(idx)))
        train.append(idx[: len(idx) - k])
        test.append(idx[len(idx) - k :])
    cat = lambda parts: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    test_idx = cat(test)
    if rng is not None:
        test_idx = rng.permutation(test_idx)
    return cat(train), test_idx


# ---------- config
@DATASETS.register("omniglot")
@dataclass
class OmniglotConfig(ImageSplitConfig):
    """Omniglot 28×28, binarised (see the module docstring for the sources and the split).

    Attributes:
        source: ``chardata`` (the reference's file), ``png`` (original images) or ``auto``
            (chardata if found, else the PNGs; with ``download`` and neither found, chardata is
            downloaded).
        chardata_file: name (in the data folder) or absolute path of the ``.mat`` file.
        png_files: folders or .zip archives of PNGs, names in the data folder or absolute paths;
            every one must exist (an unpacked folder ``x`` is accepted for ``x.zip``).
        labels: ``alphabet`` or ``character``.
        n_val: validation images held out of the training images; None: 1,345 for chardata (the
            reference), the same proportion (1,345 / 24,345) of the training part for PNGs.
        test_fraction: PNG source only: the share of each character's drawings in the test set.
    """

    source: Literal["auto", "chardata", "png"] = "auto"
    chardata_file: str = "chardata.mat"
    png_files: list[str] = field(
        default_factory=lambda: ["images_background.zip", "images_evaluation.zip"]
    )
    labels: Literal["alphabet", "character"] = "alphabet"
    n_val: int | None = None
    test_fraction: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source not in ("auto", "chardata", "png"):
            raise ConfigError(f"data.source must be auto, chardata or png, got {self.source!r}")
        if self.labels not in ("alphabet", "character"):
            raise ConfigError(f"data.labels must be alphabet or character, got {self.labels!r}")
        if not 0.0 < float(self.test_fraction) < 1.0:
            raise ConfigError(f"data.test_fraction must lie in (0, 1), got {self.test_fraction!r}")
        if not self.png_files:
            raise ConfigError("data.png_files must name at least one folder or .zip archive")

    # ---------- finding the files
    def _hint(self) -> str:
        url = REMOTE_FILES["omniglot"]["chardata.mat"].urls[0]
        return (
            f"Set data.download=true to fetch chardata.mat ({url}) or, with data.source=png, the "
            "PNG archives of https://github.com/brendenlake/omniglot (python/), or put the files "
            "in one of these folders (or point data.root at them). Default cache: "
            f"{cache_dir() / 'omniglot'}"
        )

    def _find(self, names: Sequence[str]) -> dict[str, Path] | None:
        for d in search_dirs("omniglot", self.root):
            found = {n: find_file(d, n) for n in names}
            if all(p is not None for p in found.values()):
                return found  # type: ignore[return-value]
        return None

    def _resolve_source(self) -> tuple[str, list[Path]]:
        """("chardata" | "png", paths), downloading when asked; DataError if nothing is found."""
        if self.source in ("auto", "chardata"):
            found = self._find([self.chardata_file])
            if found:
                return "chardata", [found[self.chardata_file]]
        if self.source in ("auto", "png"):
            found = self._find(self.png_files)
            if found:
                return "png", [found[n] for n in self.png_files]
        names = [self.chardata_file] if self.source != "png" else list(self.png_files)
        if self.source == "auto" and not self.download:
            dirs = search_dirs("omniglot", self.root)
            raise DataError(
                f"omniglot: neither {self.chardata_file} nor the PNG sources "
                f"({', '.join(self.png_files)}) were found. Looked in: "
                + "; ".join(str(d) for d in dirs)
                + f". {self._hint()}"
            )
        paths = locate_files(
            "omniglot", names, root=self.root, download=self.download, hint=self._hint()
        )
        kind = "png" if self.source == "png" else "chardata"
        return kind, [paths[n] for n in names]

    # ---------- loading
    def _labels(self, part: OmniglotImages, path: Path) -> np.ndarray:
        if self.labels == "alphabet":
            return part.alphabet
        if part.character is None:
            raise DataError(
                f"{path}: no character labels ('targetchar'/'testtargetchar'); use "
                "data.labels=alphabet"
            )
        return part.character

    def load(self, seed: int = 0) -> DataSplits:
        """Training, validation and test images as the protocol (module docstring) says."""
        kind, paths = self._resolve_source()
        if kind == "chardata":
            train, test = read_chardata(paths[0])
            n_val = REFERENCE_N_VAL if self.n_val is None else self.n_val
            desc = f"Omniglot 28x28 from {paths[0]}"
            train_ids = test_ids = None
            train_part, test_part = "train", "test"
        else:
            everything = read_omniglot_pngs(paths)
            assert everything.character is not None
            train_idx, test_idx = split_by_character(
                everything.character, self.test_fraction, self.split_seed
            )
            if len(train_idx) < 2 or len(test_idx) == 0:
                raise ConfigError(
                    f"data.test_fraction={self.test_fraction} leaves "
                    f"{len(train_idx)} training and {len(test_idx)} test images"
                )
            train, test = everything.subset(train_idx), everything.subset(test_idx)
            n_val = (
                max(1, round(len(train) * REFERENCE_N_VAL / _CHARDATA_TRAIN))
                if self.n_val is None
                else self.n_val
            )
            desc = (
                f"Omniglot {len(everything.alphabet_names)} alphabets, "
                f"{len(everything.character_names)} characters, from the PNGs of "
                + ", ".join(str(p) for p in paths)
                + " resized to 28x28"
            )
            train_ids, test_ids = train_idx, test_idx
            train_part = test_part = "png"
        names = train.alphabet_names if self.labels == "alphabet" else train.character_names
        return build_image_splits(
            self,
            seed=seed,
            train=(train.images, self._labels(train, paths[0])),
            test=(test.images, self._labels(test, paths[0])),
            n_val=n_val,
            num_classes=len(names),
            description=desc,
            train_ids=train_ids,
            test_ids=test_ids,
            train_part=train_part,
            test_part=test_part,
            source="the Omniglot training images",
        )
