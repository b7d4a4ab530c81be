"""The align stage's output format: every crop of one size in a single uint8 array file, plus one index.

A folder of aligned crops contains `crops-<size>.npy` per output size, each a (N, size, size, 3) uint8 RGB array,
and `crops.csv`, whose row i names crop i of every array: its image key `<identity>/<stem>`, the identity and
the alignment status. Rows are sorted by key. One file per size, not one PNG per crop, because DVC hashes
a folder output file by file: thousands of crops made every `dvc status` and no-op `dvc repro` walk and
stat each one, as the output of align and again as a dependency of training and evaluation. Readers
memory-map the arrays, so opening a store reads only the index.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

INDEX = "crops.csv"
INDEX_COLUMNS = ("key", "identity", "status")


def crops_name(size: int) -> str:
    """Return the file name of the crops array of one output size."""
    return f"crops-{size}.npy"


def image_key(path: str) -> str:
    """Return the key `<identity>/<stem>` of an image path `<identity>/<file>`."""
    identity, name = path.split("/", 1)
    return f"{identity}/{Path(name).stem}"


@dataclass(frozen=True)
class IndexRow:
    """One crop of the store: its image key, identity and alignment status."""

    key: str
    identity: str
    status: str


def write_index(path: Path, rows: Sequence[IndexRow]) -> None:
    """Write `crops.csv`; the caller writes it inside a temporary folder that is renamed into place."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(INDEX_COLUMNS)
        writer.writerows((row.key, row.identity, row.status) for row in rows)


def write(folder: Path, rows: Sequence[IndexRow], crops: dict[int, np.ndarray]) -> None:
    """Write a whole store held in memory: the index and each size's (len(rows), size, size, 3) uint8 array."""
    for size, array in crops.items():
        expected = (len(rows), size, size, 3)
        if array.shape != expected or array.dtype != np.uint8:
            raise ValueError(f"crops of size {size}: got {array.dtype} {array.shape}, expected uint8 {expected}")
    folder.mkdir(parents=True, exist_ok=True)
    write_index(folder / INDEX, rows)
    for size, array in crops.items():
        np.save(folder / crops_name(size), array)


def read_index(path: Path, stage: str) -> list[IndexRow]:
    """Read `crops.csv`; raise InputError naming the file and `stage`, the DVC stage that rewrites it."""
    if not path.is_file():
        raise InputError(f"{path} not found: the aligned-crop index is missing; run `dvc repro {stage}`")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not set(INDEX_COLUMNS) <= set(reader.fieldnames):
            raise InputError(
                f"{path} has columns {reader.fieldnames}, expected {list(INDEX_COLUMNS)}; run `dvc repro {stage}`"
            )
        return [IndexRow(row["key"], row["identity"], row["status"]) for row in reader]


def sizes(folder: Path) -> list[int]:
    """Return the crop sizes stored in `folder`, ascending."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("crops-*.npy"):
        digits = path.stem.removeprefix("crops-")
        if digits.isdigit():
            found.append(int(digits))
    return sorted(found)


def pick_size(folder: Path, image_size: int, stage: str) -> int:
    """Pick the stored crop size for a network input: the smallest size >= image_size, else the largest."""
    stored = sizes(folder)
    if not stored:
        raise InputError(
            f"{folder} has no aligned crops ({crops_name(image_size)} or another size); run `dvc repro {stage}`"
        )
    larger = [size for size in stored if size >= image_size]
    return larger[0] if larger else stored[-1]


class AlignedCrops:
    """A read-only aligned-crop store of one size: `images` is the memory-mapped (N, S, S, 3) uint8 array."""

    def __init__(self, folder: Path, size: int, stage: str) -> None:
        self.folder = Path(folder)
        self.size = size
        self.rows = read_index(self.folder / INDEX, stage)
        array_path = self.folder / crops_name(size)
        if not array_path.is_file():
            raise InputError(f"{array_path} not found; run `dvc repro {stage}`")
        try:
            self.images = np.load(array_path, mmap_mode="r")
        except ValueError as err:
            raise InputError(f"{array_path} is not a NumPy array file ({err}); run `dvc repro {stage}`") from err
        expected = (len(self.rows), size, size, 3)
        if self.images.shape != expected or self.images.dtype != np.uint8:
            raise InputError(
                f"{array_path} contains {self.images.dtype} {self.images.shape}, expected uint8 {expected} to match "
                f"{self.folder / INDEX}; run `dvc repro {stage}`"
            )
        self._row_of = {row.key: i for i, row in enumerate(self.rows)}

    @classmethod
    def open(cls, folder: Path, image_size: int, stage: str) -> AlignedCrops:
        """Open the store of the size that `pick_size` picks for `image_size`."""
        return cls(folder, pick_size(folder, image_size, stage), stage)

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, key: str) -> int | None:
        """Return the row of image key `key`, or None when the store has no crop for it."""
        return self._row_of.get(key)

    def by_identity(self) -> Iterator[tuple[str, list[int]]]:
        """Yield (identity, rows) in sorted identity order, the rows in key order."""
        grouped: dict[str, list[int]] = {}
        for i, row in enumerate(self.rows):
            grouped.setdefault(row.identity, []).append(i)
        for identity in sorted(grouped):
            yield identity, grouped[identity]
