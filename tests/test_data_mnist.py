"""MNIST reader on the real IDX files, and its errors on broken copies of them."""

from __future__ import annotations

import gzip
import hashlib
import shutil

import numpy as np
import pytest

from cnnrepro.data import mnist
from cnnrepro.errors import InputError

# MD5 of the decompressed official files, as published with MNIST and checked by torchvision.
T10K_IMAGES_MD5 = "2646ac647ad5339dbf082846283269ea"
T10K_LABELS_MD5 = "27ae3e4e09519cfbb04c329615203637"


def test_mnist_test_split_real(shared_data):
    images, labels = mnist.load(shared_data / "mnist", "test")
    assert images.shape == (10_000, 28, 28), f"images shape {images.shape}"
    assert images.dtype == np.uint8, f"images dtype {images.dtype}"
    assert labels.shape == (10_000,), f"labels shape {labels.shape}"
    assert labels.dtype == np.int64, f"labels dtype {labels.dtype}"
    counts = np.bincount(labels, minlength=10)
    assert counts.min() > 800, f"every digit appears in the test set, counts {counts}"
    raw = gzip.decompress((shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    assert hashlib.md5(raw).hexdigest() == T10K_IMAGES_MD5, "shared test images are the official file"
    assert images.tobytes() == raw[16:], "decoded pixels equal the file's data bytes"
    raw_labels = gzip.decompress((shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert hashlib.md5(raw_labels).hexdigest() == T10K_LABELS_MD5, "shared test labels are the official file"


def test_mnist_missing_train_images_hint(shared_data):
    with pytest.raises(InputError) as info:
        mnist.load(shared_data / "mnist", "train")
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message, message
    assert "test-holdout" in message, message


def _copy(shared_data, tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(shared_data / "mnist", folder)
    return folder


def test_mnist_truncated_gzip(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path)
    path = folder / "t10k-images-idx3-ubyte.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="t10k-images-idx3-ubyte.gz") as info:
        mnist.load(folder, "test")
    assert "gzip" in str(info.value), str(info.value)


def test_mnist_short_payload(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path)
    path = folder / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(InputError, match="promises 10000 images"):
        mnist.load(folder, "test")


def test_mnist_swapped_files_bad_magic(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path)
    images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    images.write_bytes(labels.read_bytes())
    with pytest.raises(InputError, match="magic number 0x00000801") as info:
        mnist.load(folder, "test")
    assert str(images) in str(info.value), str(info.value)


def test_mnist_count_mismatch(shared_data, tmp_path):
    folder = _copy(shared_data, tmp_path)
    # The training labels (60,000) beside the test images (10,000).
    shutil.copy(folder / "train-labels-idx1-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(InputError, match="10000 images but .* 60000 labels"):
        mnist.load(folder, "test")


def test_mnist_uncompressed_files(shared_data, tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    for name in mnist.FILES["test"]:
        (folder / name.removesuffix(".gz")).write_bytes(gzip.decompress((shared_data / "mnist" / name).read_bytes()))
    images, labels = mnist.load(folder, "test")
    reference_images, reference_labels = mnist.load(shared_data / "mnist", "test")
    assert np.array_equal(images, reference_images), "uncompressed images decode the same"
    assert np.array_equal(labels, reference_labels), "uncompressed labels decode the same"
