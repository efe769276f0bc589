"""The image data layer: IDX files, MNIST, Fashion-MNIST, Omniglot, binarisation, downloads.

Real files: the MNIST test set and 5k subset and the Omniglot small subsets in ``../shared/data``
(see its README), and the full Fashion-MNIST of the Debian package ``dataset-fashion-mnist``.
Downloads are tested against a local HTTP server on 127.0.0.1 only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader

import torchmim.data.download as dl
from torchmim.config import from_dict, to_dict
from torchmim.data import (
    DATASETS,
    BinarizedImages,
    DataConfig,
    FashionMNISTConfig,
    MNISTConfig,
    OmniglotConfig,
    RemoteFile,
    binarize_images,
    download_url,
    fetch,
    read_chardata,
    read_idx,
    read_omniglot_pngs,
    write_idx,
)
from torchmim.errors import ConfigError, DataError

from .conftest import FASHION_FILES

SHARED = Path(__file__).parents[1].parent / "shared" / "data"
MNIST_DIR = SHARED / "mnist"
OMNIGLOT_DIR = SHARED / "omniglot"
MNIST_5K = {
    "train_images": "train5k-images-idx3-ubyte.gz",
    "train_labels": "train5k-labels-idx1-ubyte.gz",
}
SMALL_ZIPS = ["images_background_small1.zip", "images_background_small2.zip"]


# ---------- fixtures
def _need(paths: list[Path], how: str) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.fail(f"real data files missing: {', '.join(missing)}. {how}", pytrace=False)


@pytest.fixture
def mnist_dir() -> Path:
    _need(
        [
            MNIST_DIR / "t10k-images-idx3-ubyte.gz",
            MNIST_DIR / "t10k-labels-idx1-ubyte.gz",
            MNIST_DIR / MNIST_5K["train_images"],
            MNIST_DIR / MNIST_5K["train_labels"],
        ],
        "They live in shared/data/mnist beside the repository (see shared/data/README.md).",
    )
    return MNIST_DIR


@pytest.fixture
def omniglot_dir() -> Path:
    _need(
        [OMNIGLOT_DIR / z for z in SMALL_ZIPS],
        "They live in shared/data/omniglot beside the repository (see shared/data/README.md).",
    )
    return OMNIGLOT_DIR


@pytest.fixture
def isolated_cache(monkeypatch, tmp_path) -> Path:
    """HOME and $TORCHMIM_DATA pointing into tmp_path, so no real cache is searched or written."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(dl.ENV_VAR, raising=False)
    return home


def _small_idx_set(
    folder: Path,
    n_train: int = 60,
    n_test: int = 20,
    seed: int = 0,
    names: tuple[str, ...] = tuple(FASHION_FILES),
    compress: bool = True,
) -> dict:
    """Four small MNIST-like IDX files in ``folder``; returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": (np.arange(n_train) % 10).astype(np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, arr in zip(names, arrays.values(), strict=True):
        write_idx(folder / (name if compress else name.removesuffix(".gz")), arr)
    return arrays


# ---------- IDX: real files
def test_mnist_test_files_read_with_the_right_shapes_and_checksums(mnist_dir):
    images_path, labels_path = (
        mnist_dir / "t10k-images-idx3-ubyte.gz",
        mnist_dir / "t10k-labels-idx1-ubyte.gz",
    )
    assert dl.md5sum(images_path) == "9fb629c4189551a2d022fa330f9573f3"
    assert dl.md5sum(labels_path) == "ec29112dd5afa0611ce80d1b7f02629c"
    x, y = read_idx(images_path), read_idx(labels_path)
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.dtype == np.uint8
    assert x.min() == 0 and x.max() == 255
    # the well-known class counts of the MNIST test set
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert x.flags.writeable and x.flags.c_contiguous


def test_mnist_5k_subset_is_balanced_and_disjoint_from_the_test_set(mnist_dir):
    x = read_idx(mnist_dir / MNIST_5K["train_images"])
    y = read_idx(mnist_dir / MNIST_5K["train_labels"])
    assert x.shape == (5000, 28, 28) and x.dtype == np.uint8 and y.shape == (5000,)
    assert np.bincount(y).tolist() == [500] * 10
    test = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    assert not {r.tobytes() for r in x} & {r.tobytes() for r in test}


def test_fashion_mnist_files_read_with_the_right_shapes(fashion_dir):
    x_train = read_idx(fashion_dir / "train-images-idx3-ubyte.gz")
    y_train = read_idx(fashion_dir / "train-labels-idx1-ubyte.gz")
    x_test = read_idx(fashion_dir / "t10k-images-idx3-ubyte.gz")
    y_test = read_idx(fashion_dir / "t10k-labels-idx1-ubyte.gz")
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    # Fashion-MNIST is exactly balanced: 6000 / 1000 images of each of the 10 classes
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert x_train.max() == 255 and 0.2 < x_train[:1000].mean() / 255 < 0.4


# ---------- IDX: format
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("suffix", [".idx", ".idx.gz"])
def test_write_then_read_round_trips(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    arr = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / f"a{suffix}", arr)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype).newbyteorder("=") and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, arr)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if suffix.endswith(".gz") else b"\x00\x00")


def test_idx_bytes_follow_the_format(tmp_path):
    path = write_idx(tmp_path / "a.idx", np.array([[1, 2, 3], [4, 5, 256]], dtype=np.int32))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 2])  # int32, two dimensions
    assert raw[4:12] == b"\x00\x00\x00\x02\x00\x00\x00\x03"  # big-endian sizes
    assert raw[12:16] == b"\x00\x00\x00\x01" and raw[-4:] == b"\x00\x00\x01\x00"  # big-endian data
    assert len(raw) == 12 + 6 * 4


def test_gzip_is_detected_by_magic_bytes_not_suffix(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    gz = write_idx(tmp_path / "gzipped-but-no-suffix", arr, compress=True)
    plain = write_idx(tmp_path / "plain-but-named.gz", arr, compress=False)
    np.testing.assert_array_equal(read_idx(gz), arr)
    np.testing.assert_array_equal(read_idx(plain), arr)


def test_write_idx_is_reproducible_and_rejects_unsupported_dtypes(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    a, b = write_idx(tmp_path / "a.gz", arr), write_idx(tmp_path / "b.gz", arr)
    assert a.read_bytes() == b.read_bytes()  # no gzip timestamp
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "c.idx", np.arange(3, dtype=np.int64))
    assert not (tmp_path / "c.idx").exists()


def _corruptions(tmp_path: Path) -> list[tuple[Path, str]]:
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    good = write_idx(tmp_path / "good.idx", arr).read_bytes()
    good_gz = gzip.compress(good, mtime=0)
    cases = {
        "truncated.idx": (good[:-10], "truncated"),
        "trailing.idx": (good + b"xx", "trailing"),
        "empty.idx": (b"", "too short"),
        "header.idx": (good[:9], "truncated IDX header"),
        "magic.idx": (b"PK\x03\x04" + good[4:], "not an IDX file"),
        "dtype.idx": (good[:2] + b"\x0a" + good[3:], "unsupported IDX element type 0x0A"),
        "truncated.gz": (good_gz[: len(good_gz) // 2], "corrupt or truncated gzip"),
        "crc.gz": (good_gz[:-8] + bytes(8), "corrupt or truncated gzip"),
    }
    out = []
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        out.append((tmp_path / name, message))
    return out


def test_corrupt_idx_files_raise_data_errors_naming_the_file(tmp_path):
    for path, message in _corruptions(tmp_path):
        with pytest.raises(DataError) as info:
            read_idx(path)
        assert str(path) in str(info.value), path
        assert message in str(info.value), (path, str(info.value))
        assert isinstance(info.value, ValueError)


def test_missing_idx_file_and_directory_raise_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found.*nope.idx"):
        read_idx(tmp_path / "nope.idx")
    with pytest.raises(DataError, match="directory"):
        read_idx(tmp_path)


# ---------- binarisation
def test_dynamic_binarisation_is_reproducible_per_epoch_and_differs_between_epochs():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = np.arange(50) % 10
    ds = BinarizedImages(images, labels, binarize="dynamic", seed=3)
    ds.set_epoch(1)
    x1 = ds.get_batch(range(50))[0]
    x1_again = BinarizedImages(images, labels, binarize="dynamic", seed=3)
    x1_again.set_epoch(1)
    assert torch.equal(x1, x1_again.get_batch(range(50))[0])
    assert torch.equal(x1, ds.get_batch(range(50))[0])  # a second access in the same epoch
    ds.set_epoch(2)
    x2 = ds.get_batch(range(50))[0]
    assert x1.dtype == torch.float32 and x1.shape == (50, 1, 28, 28)
    assert set(x1.unique().tolist()) == {0.0, 1.0}
    # two independent draws differ in sum_p 2 p (1 - p) pixels on average
    p = images.astype(np.float64) / 255
    expected = (2 * p * (1 - p)).sum()
    assert abs(float((x1 != x2).sum()) - expected) < 5 * np.sqrt(expected)
    other_seed = BinarizedImages(images, labels, binarize="dynamic", seed=4)
    other_seed.set_epoch(1)
    assert not torch.equal(x1, other_seed.get_batch(range(50))[0])


def test_dynamic_binarisation_mean_matches_the_grey_level(mnist_dir):
    levels = (np.arange(784) % 256).astype(np.uint8).reshape(28, 28)  # every grey level, 0 to 255
    images = np.tile(levels, (8, 1, 1))
    ds = BinarizedImages(images, np.zeros(8), binarize="dynamic", seed=0)
    draws = []
    for epoch in range(1, 101):
        ds.set_epoch(epoch)
        draws.append(ds.get_batch(range(8))[0][:, 0].numpy())
    mean = np.mean(draws, axis=(0, 1))  # 800 draws per pixel
    p = images[0] / 255.0
    z = (mean - p) / np.sqrt(p * (1 - p) / 800 + 1e-12)
    assert np.abs(z).max() < 5.5
    assert mean[p == 0].max() == 0 and mean[p == 1].min() == 1
    # the per-image mean of real digits matches the mean grey level
    x = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:200]
    real = BinarizedImages(x, np.zeros(200), binarize="dynamic", seed=1)
    real.set_epoch(7)
    got = real.get_batch(range(200))[0].mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(got, x.reshape(200, -1).mean(1) / 255, atol=0.04)
    assert abs(got.mean() - x.mean() / 255) < 0.005


def test_batched_item_and_worker_access_agree():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    ds = BinarizedImages(images, np.arange(40) % 10, binarize="dynamic", seed=5)
    ds.set_epoch(3)
    batch = ds.get_batch([7, 2, 39])[0]
    assert torch.equal(batch[0], ds[7][0]) and torch.equal(batch[2], ds[39][0])
    assert torch.equal(ds.get_batch([2])[0][0], batch[1])  # independent of the batch's company
    assert ds[-1][1].dtype == torch.int64 and int(ds[-1][1]) == 9
    with pytest.raises(IndexError):
        ds[40]
    loader = DataLoader(ds, batch_size=8, shuffle=False, num_workers=2)
    from_workers = torch.cat([x for x, _ in loader])
    assert torch.equal(from_workers, ds.get_batch(range(40))[0])


def test_fixed_and_grey_modes():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    fixed = BinarizedImages(images, np.zeros(20), binarize="fixed", seed=0, fixed_key=11)
    a = fixed.get_batch(range(20))[0]
    fixed.set_epoch(5)
    assert torch.equal(a, fixed.get_batch(range(20))[0])
    np.testing.assert_array_equal(a[:, 0].numpy(), binarize_images(images, 11))
    grey = BinarizedImages(images, np.zeros(20), binarize="none")
    np.testing.assert_allclose(
        grey.get_batch(range(20))[0][:, 0].numpy(), images / 255.0, rtol=1e-6
    )
    with pytest.raises(ConfigError):
        BinarizedImages(images, np.zeros(20), binarize="sometimes")  # type: ignore[arg-type]


# ---------- MNIST configs
def test_registered_names_and_from_dict():
    for name, cls in [
        ("mnist", MNISTConfig),
        ("fashion-mnist", FashionMNISTConfig),
        ("omniglot", OmniglotConfig),
    ]:
        assert DATASETS.get(name) is cls
    cfg = from_dict(DataConfig, {"name": "mnist", "n_val": 1000, "binarize": "fixed", **MNIST_5K})
    assert isinstance(cfg, MNISTConfig) and to_dict(cfg)["name"] == "mnist"
    assert from_dict(DataConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="binarize"):
        from_dict(DataConfig, {"name": "mnist", "binarize": "sometimes"})
    with pytest.raises(ConfigError, match="n_train"):
        MNISTConfig(n_train=0)
    with pytest.raises(ConfigError, match="n_val"):
        MNISTConfig(n_val=None)


def test_fashion_mnist_reference_protocol(fashion_dir, isolated_cache):
    splits = FashionMNISTConfig().load(seed=0)  # found in /usr/share/datasets/fashion-mnist
    assert len(splits.train) == 50_000
    assert splits.val[0].shape == (10_000, 1, 28, 28) and splits.test[0].shape == (
        10_000,
        1,
        28,
        28,
    )
    assert splits.train_eval[0].shape == (10_000, 1, 28, 28)  # capped by n_train_eval
    assert splits.x_shape == (1, 28, 28) and splits.num_classes == 10
    for x, y in (splits.val, splits.test, splits.train_eval):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert set(x.unique().tolist()) == {0.0, 1.0}
    assert np.bincount(splits.test[1].numpy()).tolist() == [1000] * 10
    assert str(fashion_dir) in splits.description
    x, y = splits.train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_fashion_mnist_from_dict_preset(fashion_dir):
    cfg = from_dict(
        DataConfig, {"name": "fashion-mnist", "n_train": 1000, "n_val": 500, "n_test": 500}
    )
    s = cfg.load(seed=0)
    assert (len(s.train), len(s.val[0]), len(s.test[0]), len(s.train_eval[0])) == (
        1000,
        500,
        500,
        1000,
    )
    assert s.x_shape == (1, 28, 28) and s.num_classes == 10
    # validation and test are binarised once, whatever the run seed
    t = cfg.load(seed=99)
    assert torch.equal(s.val[0], t.val[0]) and torch.equal(s.test[0], t.test[0])
    assert torch.equal(s.train_eval[0], t.train_eval[0]) and torch.equal(s.val[1], t.val[1])
    # ... while the dynamic training images follow the run seed
    s.train.set_epoch(1), t.train.set_epoch(1)
    assert not torch.equal(s.train.get_batch(range(100))[0], t.train.get_batch(range(100))[0])


def test_mnist_5k_subset_split_sizes_and_disjointness(mnist_dir):
    cfg = MNISTConfig(
        root=str(mnist_dir), n_val=1000, binarize="none", n_train_eval=None, **MNIST_5K
    )
    s = cfg.load(seed=0)
    assert (len(s.train), len(s.val[0]), len(s.test[0]), len(s.train_eval[0])) == (
        4000,
        1000,
        10000,
        4000,
    )
    raw = read_idx(mnist_dir / MNIST_5K["train_images"])
    labels = read_idx(mnist_dir / MNIST_5K["train_labels"])
    row_of = {r.tobytes(): i for i, r in enumerate(raw)}
    val_rows = [row_of[(v[0].numpy() * 255).round().astype(np.uint8).tobytes()] for v in s.val[0]]
    train_rows = s.train.ids.tolist()
    assert not set(val_rows) & set(train_rows) and len(set(val_rows) | set(train_rows)) == 5000
    np.testing.assert_array_equal(s.val[1].numpy(), labels[val_rows])
    assert 60 < np.bincount(s.val[1].numpy()).min()  # a random split of a class-sorted file
    test = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_allclose(s.test[0][:, 0].numpy(), test / 255.0, rtol=1e-6)
    ids = s.train.ids
    np.testing.assert_allclose(s.train_eval[0][:, 0].numpy(), raw[ids] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(s.train_eval[1].numpy(), labels[ids])


def test_binarised_images_and_labels_line_up(mnist_dir):
    """A 5-NN classifier on the raw binarised pixels must work: labels belong to their images."""
    from sklearn.neighbors import KNeighborsClassifier

    s = MNISTConfig(root=str(mnist_dir), n_val=500, n_test=1000, n_train_eval=None, **MNIST_5K)
    splits = s.load(seed=0)
    flat = lambda t: t.flatten(1).numpy()
    knn = KNeighborsClassifier(5, algorithm="brute").fit(
        flat(splits.train_eval[0]), splits.train_eval[1].numpy()
    )
    assert knn.score(flat(splits.test[0]), splits.test[1].numpy()) > 0.8
    assert knn.score(flat(splits.val[0]), splits.val[1].numpy()) > 0.8
    splits.train.set_epoch(1)
    x, y = splits.train.get_batch(range(1000))
    assert knn.score(flat(x), y.numpy()) > 0.85


def test_split_is_fixed_by_split_seed_and_caps_take_the_first_images(mnist_dir):
    base = dict(root=str(mnist_dir), n_val=500, **MNIST_5K)
    a = MNISTConfig(**base).load(seed=0)
    b = MNISTConfig(**base).load(seed=1)
    c = MNISTConfig(**base, split_seed=1).load(seed=0)
    capped = MNISTConfig(**base, n_train=300, n_test=200, n_train_eval=100).load(seed=0)
    assert np.array_equal(a.train.ids, b.train.ids) and not np.array_equal(a.train.ids, c.train.ids)
    assert np.array_equal(capped.train.ids, a.train.ids[:300])
    assert torch.equal(capped.test[0], a.test[0][:200]) and torch.equal(capped.val[0], a.val[0])
    assert torch.equal(capped.train_eval[0], a.train_eval[0][:100])
    # the reference's split: no shuffling, the last n_val images of the file are the validation set
    ref = MNISTConfig(**base, split_seed=None).load(seed=0)
    assert np.array_equal(ref.train.ids, np.arange(4500))
    assert set(ref.val[1].tolist()) == {9}  # the 5k file is sorted by class


def test_fixed_binarisation_of_an_image_does_not_depend_on_its_split(mnist_dir):
    base = dict(root=str(mnist_dir), n_val=500, **MNIST_5K)
    dyn = MNISTConfig(**base).load(seed=0)
    fixed = MNISTConfig(**base, binarize="fixed").load(seed=0)
    # train_eval (fixed draws) equals the training images of binarize="fixed"
    assert torch.equal(fixed.train.get_batch(range(100))[0], dyn.train_eval[0][:100])
    assert torch.equal(fixed.val[0], dyn.val[0])
    for epoch in (1, 2):
        fixed.train.set_epoch(epoch)
        assert torch.equal(fixed.train.get_batch(range(10))[0], dyn.train_eval[0][:10])


def test_split_that_does_not_fit_raises_config_errors(mnist_dir):
    with pytest.raises(ConfigError, match="n_val=10000.*5000"):
        MNISTConfig(root=str(mnist_dir), **MNIST_5K).load()
    with pytest.raises(ConfigError, match="n_train=4600"):
        MNISTConfig(root=str(mnist_dir), n_val=500, n_train=4600, **MNIST_5K).load()
    with pytest.raises(ConfigError, match="n_test"):
        MNISTConfig(root=str(mnist_dir), n_val=500, n_test=20_000, **MNIST_5K).load()


def test_missing_files_say_where_they_were_looked_for(isolated_cache, tmp_path, monkeypatch):
    with pytest.raises(DataError) as info:
        MNISTConfig().load()
    msg = str(info.value)
    assert str(isolated_cache / ".cache" / "torchmim" / "mnist") in msg
    assert "download=true" in msg and "train-images-idx3-ubyte.gz" in msg
    monkeypatch.setenv(dl.ENV_VAR, str(tmp_path / "data"))
    with pytest.raises(DataError) as info:
        FashionMNISTConfig(root=str(tmp_path)).load()
    msg = str(info.value)
    assert str(tmp_path) in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "/usr/share/datasets/fashion-mnist (" not in msg  # an explicit root is the only place
    with pytest.raises(DataError) as info:
        MNISTConfig().load()
    assert str(tmp_path / "data" / "mnist") in str(info.value)


def test_search_paths_env_var_torchvision_layout_and_unpacked_files(
    isolated_cache, tmp_path, monkeypatch
):
    monkeypatch.setenv(dl.ENV_VAR, str(tmp_path / "cache"))
    arrays = _small_idx_set(tmp_path / "cache" / "mnist", compress=False)  # unpacked names
    s = MNISTConfig(n_val=10).load()
    assert len(s.train) == 50 and len(s.test[0]) == 20
    assert str(tmp_path / "cache" / "mnist") in s.description
    _small_idx_set(tmp_path / "tv" / "FashionMNIST" / "raw", seed=1)
    s = FashionMNISTConfig(root=str(tmp_path / "tv"), n_val=10, binarize="none").load()
    assert s.test[0].shape == (20, 1, 28, 28)
    assert not np.allclose(s.test[0][:, 0].numpy(), arrays["test_x"] / 255)


def test_malformed_label_files_raise_data_errors(tmp_path):
    arrays = _small_idx_set(tmp_path)
    write_idx(tmp_path / "short-labels.gz", arrays["train_y"][:-1])
    write_idx(tmp_path / "bad-labels.gz", np.full(60, 12, dtype=np.uint8))
    write_idx(tmp_path / "float-images.gz", arrays["train_x"].astype(np.float32))
    for override, message in [
        ({"train_labels": "short-labels.gz"}, "59 labels"),
        ({"train_labels": "bad-labels.gz"}, r"\[0, 10\)"),
        ({"train_images": "float-images.gz"}, "uint8"),
    ]:
        with pytest.raises(DataError, match=message) as info:
            FashionMNISTConfig(root=str(tmp_path), n_val=10, **override).load()
        assert str(tmp_path) in str(info.value)


# ---------- Omniglot
def _glyph(rng: np.random.Generator) -> np.ndarray:
    """A random 28x28 grey image with an asymmetric mark (so a transpose would show)."""
    img = (rng.random((28, 28)) < 0.1) * rng.random((28, 28))
    img[2:20, 3] = 1.0  # a vertical bar in column 3
    return img


def _write_chardata(
    path: Path,
    n_train: int = 40,
    n_test: int = 12,
    n_alpha: int = 5,
    seed: int = 0,
    with_chars: bool = True,
) -> dict:
    rng = np.random.default_rng(seed)
    parts = {}
    for key, n in (("", n_train), ("test", n_test)):
        imgs = np.stack([_glyph(rng) for _ in range(n)])
        alpha = rng.integers(0, n_alpha, n)
        chars = rng.integers(1, 4, n)
        parts[key] = (imgs, alpha, chars)
    content = {}
    for key, (imgs, alpha, chars) in parts.items():
        # each column is one image in Fortran order, as in the IWAE file
        content[f"{key}data"] = np.stack([im.flatten(order="F") for im in imgs], axis=1)
        content[f"{key}target"] = np.eye(n_alpha)[:, alpha]
        if with_chars:
            content[f"{key}targetchar"] = chars[None, :].astype(np.float64)
    scipy.io.savemat(path, content)
    return parts


def test_chardata_is_read_in_fortran_order(tmp_path):
    parts = _write_chardata(tmp_path / "chardata.mat")
    train, test = read_chardata(tmp_path / "chardata.mat")
    np.testing.assert_allclose(train.images, parts[""][0], atol=1e-7)
    np.testing.assert_allclose(test.images, parts["test"][0], atol=1e-7)
    assert train.images.dtype == np.float32 and train.images[:, 2:20, 3].min() == 1.0
    # the VampPrior reference's transformation gives the same images
    mat = scipy.io.loadmat(tmp_path / "chardata.mat")
    ref = mat["data"].T.astype("float32").reshape((-1, 28, 28)).reshape((-1, 784), order="F")
    np.testing.assert_array_equal(ref.reshape(-1, 28, 28), train.images)
    np.testing.assert_array_equal(train.alphabet, parts[""][1])
    np.testing.assert_array_equal(test.alphabet, parts["test"][1])
    pairs = sorted(
        set(zip(*parts[""][1:], strict=True)) | set(zip(*parts["test"][1:], strict=True))
    )
    assert len(train.character_names) == len(pairs)
    assert [pairs[i] for i in train.character] == list(zip(*parts[""][1:], strict=True))


def test_omniglot_chardata_config(tmp_path, isolated_cache):
    _write_chardata(tmp_path / "chardata.mat", n_train=60, n_test=20)
    with pytest.raises(ConfigError, match="n_val=1345"):  # the reference's default does not fit
        OmniglotConfig(root=str(tmp_path)).load()
    cfg = OmniglotConfig(root=str(tmp_path), n_val=10)
    s = cfg.load(seed=0)
    assert (len(s.train), len(s.val[0]), len(s.test[0])) == (50, 10, 20)
    assert s.num_classes == 5 and s.x_shape == (1, 28, 28)
    assert set(s.val[0].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(s.val[0], cfg.load(seed=8).val[0])
    chars = OmniglotConfig(root=str(tmp_path), n_val=10, labels="character").load()
    assert chars.num_classes > 5
    grey = OmniglotConfig(root=str(tmp_path), n_val=10, binarize="none", split_seed=None).load()
    np.testing.assert_allclose(
        grey.test[0][:, 0].numpy(), read_chardata(tmp_path / "chardata.mat")[1].images
    )


def test_chardata_errors(tmp_path):
    _write_chardata(tmp_path / "nochars.mat", with_chars=False)
    with pytest.raises(DataError, match="character labels"):
        OmniglotConfig(
            root=str(tmp_path), chardata_file="nochars.mat", n_val=5, labels="character"
        ).load()
    (tmp_path / "junk.mat").write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(DataError, match="junk.mat"):
        read_chardata(tmp_path / "junk.mat")
    scipy.io.savemat(tmp_path / "partial.mat", {"data": np.zeros((784, 3))})
    with pytest.raises(DataError, match="missing.*testdata"):
        read_chardata(tmp_path / "partial.mat")
    with pytest.raises(DataError, match="not found"):
        read_chardata(tmp_path / "absent.mat")


def test_omniglot_pngs_from_the_real_subsets(omniglot_dir):
    one = read_omniglot_pngs([omniglot_dir / SMALL_ZIPS[0]])
    both = read_omniglot_pngs([omniglot_dir / z for z in SMALL_ZIPS])
    assert len(one) == 2720 and one.alphabet_names == [
        "Balinese",
        "Early_Aramaic",
        "Greek",
        "Korean",
        "Latin",
    ]
    assert len(both) == 2720 + 3120 - 1000  # Greek and Latin are in both subsets: loaded once
    assert len(both.alphabet_names) == 8 and len(both.character_names) == 242
    assert both.images.shape == (4840, 28, 28) and both.images.dtype == np.uint8
    assert np.bincount(both.character).tolist() == [20] * 242
    # ink = high: the border is almost always background (0), strokes are a small part of the image
    assert (both.images[:, [0, -1], :] > 0).mean() < 0.01 and 0.03 < both.images.mean() / 255 < 0.15
    assert both.images.max() == 255 and (both.images[:, 12:16, 12:16] > 0).mean() > 0.2
    # area averaging keeps each image's ink fraction; original PNGs are black ink on white
    with zipfile.ZipFile(omniglot_dir / SMALL_ZIPS[0]) as z:
        for i in (0, 500, 2719):
            name = next(n for n in z.namelist() if n.endswith(one.files[i]))
            original = np.asarray(
                Image.open(io.BytesIO(z.read(name))).convert("L"), dtype=np.float64
            )
            assert original.shape == (105, 105)
            ink = 1 - original / 255
            assert abs(one.images[i].mean() / 255 - ink.mean()) < 0.01


def test_omniglot_png_folder_equals_zip(omniglot_dir, tmp_path):
    with zipfile.ZipFile(omniglot_dir / SMALL_ZIPS[1]) as z:
        members = [n for n in z.namelist() if "/Tagalog/character0" in n and n.endswith(".png")]
        z.extractall(tmp_path, members)
    folder = read_omniglot_pngs([tmp_path / "images_background_small2"])
    from_zip = read_omniglot_pngs([omniglot_dir / SMALL_ZIPS[1]])
    idx = [from_zip.files.index(f) for f in folder.files]
    assert len(folder) == 9 * 20 and folder.alphabet_names == ["Tagalog"]
    np.testing.assert_array_equal(folder.images, from_zip.images[idx])


@pytest.fixture
def png_cache(monkeypatch):
    """Decode each set of PNG sources once per test (the loads below only differ in the split)."""
    from torchmim.data import omniglot

    real, cache = omniglot.read_omniglot_pngs, {}

    def cached(sources, **kwargs):
        key = tuple(str(s) for s in sources)
        if key not in cache:
            cache[key] = real(sources, **kwargs)
        return cache[key]

    monkeypatch.setattr(omniglot, "read_omniglot_pngs", cached)
    return cached


def test_omniglot_png_config_split(omniglot_dir, isolated_cache, png_cache):
    base = dict(root=str(omniglot_dir), source="png", png_files=SMALL_ZIPS)
    s = OmniglotConfig(**base).load(seed=0)
    n_test = 242 * 5  # 25 % of every character's 20 drawings
    assert len(s.test[0]) == n_test and len(s.train) + len(s.val[0]) == 4840 - n_test
    assert len(s.val[0]) == round((4840 - n_test) * 1345 / 24345)
    assert s.num_classes == 8 and s.x_shape == (1, 28, 28)
    assert "8 alphabets" in s.description
    everything = png_cache([omniglot_dir / z for z in SMALL_ZIPS])
    # every training image is from the non-test part, and each character keeps 15 of 20 drawings
    test_ids = set(range(4840)) - set(s.train.ids.tolist())
    assert len(test_ids) == n_test + len(s.val[0])
    per_char = np.bincount(everything.character[s.train.ids], minlength=242)
    assert per_char.max() <= 15
    again = OmniglotConfig(**base).load(seed=5)
    assert np.array_equal(again.train.ids, s.train.ids) and torch.equal(again.test[0], s.test[0])
    other = OmniglotConfig(**base, split_seed=1).load(seed=0)
    assert not np.array_equal(other.train.ids, s.train.ids)
    chars = OmniglotConfig(**base, labels="character", n_val=100).load()
    assert chars.num_classes == 242 and len(chars.val[0]) == 100
    # a prefix of the test set is a uniform sample of it, not the first alphabets in file order
    # (fails if the test indices come sorted: the first 300 drawings then hold 3 of 8 alphabets)
    first = OmniglotConfig(**base, n_test=300).load(seed=0)
    share = np.bincount(np.asarray(first.test[1]), minlength=8) / 300
    whole = np.bincount(np.asarray(s.test[1]), minlength=8) / n_test
    assert (share > 0).all() and np.abs(share - whole).max() < 0.08


def test_omniglot_source_auto_and_missing(omniglot_dir, tmp_path, isolated_cache):
    with pytest.raises(DataError, match="neither chardata.mat nor"):
        OmniglotConfig().load()
    with pytest.raises(DataError, match="images_background.zip"):
        OmniglotConfig(root=str(tmp_path), source="png").load()
    for z in SMALL_ZIPS:
        (tmp_path / z).write_bytes((omniglot_dir / z).read_bytes())
    auto_png = OmniglotConfig(root=str(tmp_path), png_files=SMALL_ZIPS, n_val=50).load()
    assert "PNGs" in auto_png.description
    _write_chardata(tmp_path / "chardata.mat")
    auto_mat = OmniglotConfig(root=str(tmp_path), png_files=SMALL_ZIPS, n_val=5).load()
    assert "chardata.mat" in auto_mat.description
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="broken.zip"):
        OmniglotConfig(root=str(tmp_path), source="png", png_files=["broken.zip"]).load()


# ---------- downloads
class _FileServer(ThreadingHTTPServer):
    """Serves ``files`` (path → bytes) on 127.0.0.1 with ``Range: bytes=N-``; logs requests."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_once: set[str] = set()  # paths whose next response stops halfway
        self.ignore_range = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"


class _RangeHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's naming
        srv: _FileServer = self.server  # type: ignore[assignment]
        rng = self.headers.get("Range")
        srv.requests.append((self.path, rng))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng and not srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in srv.cut_once:
            srv.cut_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    srv = _FileServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _payload(n: int = 300_000, seed: int = 0) -> tuple[bytes, str]:
    data = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    return data, hashlib.md5(data).hexdigest()


def test_download_verifies_and_renames_into_place(server, tmp_path):
    data, md5 = _payload()
    server.files["/f.bin"] = data
    dest = download_url(
        server.url("/f.bin"), tmp_path / "sub" / "f.bin", md5=md5, timeout=5, retries=0
    )
    assert dest.read_bytes() == data and not (tmp_path / "sub" / "f.bin.part").exists()
    assert server.requests == [("/f.bin", None)]


def test_download_resumes_a_partial_file_with_a_range_request(server, tmp_path):
    data, md5 = _payload()
    server.files["/f.bin"] = data
    (tmp_path / "f.bin.part").write_bytes(data[:100_000])
    download_url(server.url("/f.bin"), tmp_path / "f.bin", md5=md5, timeout=5, retries=0)
    assert server.requests == [("/f.bin", "bytes=100000-")]
    assert (tmp_path / "f.bin").read_bytes() == data


def test_interrupted_download_is_retried_from_where_it_stopped(server, tmp_path):
    data, md5 = _payload()
    server.files["/f.bin"] = data
    server.cut_once.add("/f.bin")
    download_url(server.url("/f.bin"), tmp_path / "f.bin", md5=md5, timeout=5, retries=2, backoff=0)
    assert [r for _, r in server.requests] == [None, f"bytes={len(data) // 2}-"]
    assert (tmp_path / "f.bin").read_bytes() == data


def test_complete_part_file_and_servers_that_ignore_ranges(server, tmp_path):
    data, md5 = _payload()
    server.files["/f.bin"] = data
    (tmp_path / "a.part").write_bytes(
        data
    )  # complete but not yet verified/renamed: server says 416
    download_url(server.url("/f.bin"), tmp_path / "a", md5=md5, timeout=5, retries=0)
    assert (tmp_path / "a").read_bytes() == data
    server.ignore_range = True  # a 200 answer to a Range request: the .part is overwritten
    (tmp_path / "b.part").write_bytes(b"garbage" * 100)
    download_url(server.url("/f.bin"), tmp_path / "b", md5=md5, timeout=5, retries=0)
    assert (tmp_path / "b").read_bytes() == data


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    data, md5 = _payload()
    server.files["/f.bin"] = data
    wrong = "0" * 32
    with pytest.raises(DataError) as info:
        download_url(server.url("/f.bin"), tmp_path / "f.bin", md5=wrong, timeout=5, retries=0)
    assert wrong in str(info.value) and md5 in str(info.value)
    assert not (tmp_path / "f.bin").exists() and not (tmp_path / "f.bin.part").exists()


def test_http_404_fails_at_once(server, tmp_path):
    start = time.perf_counter()
    with pytest.raises(DataError, match="404") as info:
        download_url(
            server.url("/missing.bin"), tmp_path / "m.bin", timeout=5, retries=3, backoff=1
        )
    assert server.url("/missing.bin") in str(info.value)
    assert len(server.requests) == 1 and time.perf_counter() - start < 2


def test_offline_gives_a_clear_error_naming_url_and_destination(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    with socket.socket() as s:  # a port on 127.0.0.1 that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.gz"
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        download_url(url, tmp_path / "x.gz", timeout=1, retries=1, backoff=0)
    msg = str(info.value)
    assert url in msg and str(tmp_path / "x.gz") in msg and "offline" in msg and "2 attempt" in msg
    assert time.perf_counter() - start < 5


def test_a_silent_server_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/slow"
        start = time.perf_counter()
        with pytest.raises(DataError, match="could not download"):
            download_url(url, tmp_path / "slow", timeout=0.3, retries=0)
        assert time.perf_counter() - start < 3


def test_fetch_tries_mirrors_and_a_config_can_download(
    server, tmp_path, monkeypatch, isolated_cache
):
    arrays = _small_idx_set(tmp_path / "served")
    table = {}
    for name in FASHION_FILES:
        content = (tmp_path / "served" / name).read_bytes()
        server.files[f"/mirror2/{name}"] = content
        table[name] = RemoteFile(
            name,
            (server.url(f"/mirror1/{name}"), server.url(f"/mirror2/{name}")),
            hashlib.md5(content).hexdigest(),
        )
    monkeypatch.setitem(dl.REMOTE_FILES, "mnist", table)
    root = tmp_path / "mnist-root"
    s = MNISTConfig(root=str(root), download=True, n_val=10, binarize="none").load()
    assert sorted(p.name for p in root.iterdir()) == sorted(FASHION_FILES)
    np.testing.assert_allclose(s.test[0][:, 0].numpy(), arrays["test_x"] / 255, rtol=1e-6)
    assert any(p.startswith("/mirror1/") for p, _ in server.requests)  # 404, then the next mirror
    n = len(server.requests)
    MNISTConfig(root=str(root), download=True, n_val=10).load()
    assert len(server.requests) == n  # present files are not fetched again
    # without a root, downloads go to the cache ($TORCHMIM_DATA/<name>)
    monkeypatch.setenv(dl.ENV_VAR, str(tmp_path / "cache"))
    path = fetch("mnist", FASHION_FILES[3], timeout=5, retries=0)
    assert path == tmp_path / "cache" / "mnist" / FASHION_FILES[3] and path.exists()
    with pytest.raises(DataError, match="no download source"):
        fetch("mnist", "train5k-images-idx3-ubyte.gz")


def test_known_files_table():
    assert (
        dl.REMOTE_FILES["mnist"]["t10k-images-idx3-ubyte.gz"].md5
        == "9fb629c4189551a2d022fa330f9573f3"
    )
    for files in dl.REMOTE_FILES.values():
        for name, remote in files.items():
            assert remote.filename == name and remote.urls
            assert all(
                u.startswith(("https://", "http://")) and u.endswith(name) for u in remote.urls
            )
            assert remote.md5 is None or re.fullmatch(r"[0-9a-f]{32}", remote.md5)
    assert dl.REMOTE_FILES["omniglot"]["chardata.mat"].md5 is None  # no published checksum
