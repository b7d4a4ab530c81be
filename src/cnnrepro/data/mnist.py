"""MNIST reader: the IDX files of LeCun et al. (1998), gzip-compressed as they are published.

An IDX file starts with a big-endian magic number whose third byte is the element type (0x08: uint8) and whose
fourth byte is the number of dimensions, followed by one big-endian uint32 per dimension and the raw data.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from cnnrepro.errors import InputError

IMAGE_MAGIC = 0x00000803  # uint8, 3 dimensions
LABEL_MAGIC = 0x00000801  # uint8, 1 dimension
ROWS = COLS = 28
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _missing_hint(split: str, kind: str, name: str) -> str:
    if split == "train" and kind == "images":
        return f"set train.lenet5.data to test-holdout, or supply {name}"
    return f"supply {name} (run `dvc repro download@mnist`)"


def _read_idx(path: Path, split: str, kind: str) -> bytes:
    """Return the decompressed bytes of `path`, or of its uncompressed twin when only that exists."""
    plain = path.with_suffix("")
    if path.is_file():
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read()
        except (OSError, EOFError, zlib.error) as err:
            raise InputError(f"{path} is not a complete gzip file ({err}): download it again") from None
    if plain.is_file():
        return plain.read_bytes()
    raise InputError(f"{split} {kind} are not in {path.parent}: {_missing_hint(split, kind, path.name)}")


def _parse_header(data: bytes, path: Path, magic: int, dims: int) -> tuple[int, ...]:
    header_size = 4 + 4 * dims
    if len(data) < header_size:
        raise InputError(f"{path} is {len(data)} bytes, shorter than an IDX header: download it again")
    found = struct.unpack(">I", data[:4])[0]
    if found != magic:
        raise InputError(
            f"{path} has IDX magic number 0x{found:08x}, expected 0x{magic:08x}: "
            f"it is not an MNIST {'image' if dims == 3 else 'label'} file"
        )
    return struct.unpack(f">{dims}I", data[4:header_size])


def _images(path: Path, split: str) -> np.ndarray:
    data = _read_idx(path, split, "images")
    count, rows, cols = _parse_header(data, path, IMAGE_MAGIC, 3)
    if (rows, cols) != (ROWS, COLS):
        raise InputError(f"{path} contains {rows}x{cols} images, expected {ROWS}x{COLS}")
    expected = 16 + count * rows * cols
    if len(data) != expected:
        raise InputError(
            f"{path} is {len(data)} bytes after decompression, but its header promises {count} images "
            f"({expected} bytes): the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols).copy()


def _labels(path: Path, split: str) -> np.ndarray:
    data = _read_idx(path, split, "labels")
    (count,) = _parse_header(data, path, LABEL_MAGIC, 1)
    if len(data) != 8 + count:
        raise InputError(
            f"{path} is {len(data)} bytes after decompression, but its header promises {count} labels: "
            f"the file is truncated or corrupt, download it again"
        )
    labels = np.frombuffer(data, dtype=np.uint8, offset=8).astype(np.int64)
    if labels.size and labels.max() > 9:
        raise InputError(f"{path} contains label {int(labels.max())}; MNIST labels are 0-9")
    return labels


def load(folder: Path, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]:
    """Read one MNIST split from `folder`: uint8 images (N, 28, 28) and int64 labels (N,).

    Raises InputError naming the file when it is missing, truncated or not an IDX file of the right kind, or
    when the image and label counts differ.
    """
    if split not in FILES:
        raise InputError(f"MNIST split {split!r} does not exist; use 'train' or 'test'")
    folder = Path(folder)
    image_name, label_name = FILES[split]
    images = _images(folder / image_name, split)
    labels = _labels(folder / label_name, split)
    if len(images) != len(labels):
        raise InputError(
            f"{folder}: {image_name} contains {len(images)} images but {label_name} contains {len(labels)} labels; "
            f"the two files come from different sets"
        )
    return images, labels
