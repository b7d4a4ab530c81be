"""ILSVRC2012-style classification data: the full ILSVRC2012 set or its 10-class subset Imagenette.

The download stage writes `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG` and `meta/` (the devkit ground truth,
`map_clsloc.txt`, the Kaggle `LOC_val_solution.csv` and `LOC_synset_mapping.txt`, `imagenet_class_index.json`).

Class indices are positions in the sorted list of wnids, the order of `imagenet_class_index.json`,
`torchvision.datasets.ImageFolder` and timm. The devkit's ground-truth file lists 1-based devkit IDs in another
order (`map_clsloc.txt` maps them to wnids). This module only ever turns a devkit ID into a wnid, and a wnid into
an index through `classes()`, so a devkit ID is never used as a class index.

Splits: images named `ILSVRC2012_val_*` are the evaluation split, labelled by the devkit ground truth and checked
against the folder they sit in; every other image is training data, labelled by its folder. In ILSVRC2012 that
is train/ versus val/. Imagenette mixes 500 ILSVRC2012 validation images into both of its folders, and they
become its evaluation split.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cnnrepro.data.images import load_rgb
from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

__all__ = [
    "Item",
    "classes",
    "split",
    "read_devkit_ground_truth",
    "read_kaggle_solution",
    "imagenet1k_wnids",
    "load_rgb",
]

WNID = re.compile(r"^n\d{8}$")
VAL_NAME = re.compile(r"^(ILSVRC2012_val_\d{8})\.[A-Za-z]+$")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
MAP_CLSLOC = "map_clsloc.txt"
KAGGLE_SOLUTION = "LOC_val_solution.csv"
SYNSET_MAPPING = "LOC_synset_mapping.txt"
CLASS_INDEX = "imagenet_class_index.json"
NUM_VAL_IMAGES = 50_000


@dataclass(frozen=True)
class Item:
    """One labelled image: `label` indexes the dataset's sorted class list."""

    path: Path
    label: int


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def classes(folder: Path) -> list[str]:
    """Return the sorted wnids that name the class folders under `folder`/train and `folder`/val."""
    folder = Path(folder)
    found: set[str] = set()
    for part in ("train", "val"):
        sub = folder / part
        if not sub.is_dir():
            continue
        for entry in sub.iterdir():
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            if not WNID.match(entry.name):
                raise InputError(f"{entry} is not named like a WordNet id (n01440764): remove it or rename it")
            found.add(entry.name)
    if not found:
        raise InputError(f"no class folders (train/<wnid>, val/<wnid>) in {folder}: run `dvc repro download@imagenet`")
    return sorted(found)


def read_map_clsloc(path: Path) -> dict[int, str]:
    """Read the devkit's `map_clsloc.txt`: {1-based devkit ID: wnid}."""
    mapping: dict[int, str] = {}
    text = _read_text(path)
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < 2 or not WNID.match(fields[0]) or not fields[1].isdigit():
            raise InputError(f"{path}, line {number}: expected '<wnid> <devkit id> <name>', found {line!r}")
        devkit_id = int(fields[1])
        if devkit_id in mapping:
            raise InputError(f"{path}, line {number}: devkit id {devkit_id} appears twice")
        mapping[devkit_id] = fields[0]
    if sorted(mapping) != list(range(1, len(mapping) + 1)):
        raise InputError(f"{path}: devkit ids are not 1..{len(mapping)}; the file is incomplete")
    return mapping


def read_devkit_ground_truth(gt_txt: Path, map_clsloc: Path) -> dict[str, str]:
    """Read the devkit validation ground truth: {"ILSVRC2012_val_00000001": wnid, ...}.

    Line i of `gt_txt` contains the 1-based devkit ID of validation image i; `map_clsloc` turns it into a wnid.
    """
    id_to_wnid = read_map_clsloc(map_clsloc)
    labels: dict[str, str] = {}
    for number, line in enumerate(_read_text(gt_txt).splitlines(), 1):
        value = line.strip()
        if not value.isdigit() or int(value) not in id_to_wnid:
            raise InputError(
                f"{gt_txt}, line {number}: {value!r} is not a devkit id in {map_clsloc} (1..{len(id_to_wnid)})"
            )
        labels[f"ILSVRC2012_val_{number:08d}"] = id_to_wnid[int(value)]
    if len(labels) != NUM_VAL_IMAGES:
        log.warning("%s lists %d images; the ILSVRC2012 validation set has %d", gt_txt, len(labels), NUM_VAL_IMAGES)
    return labels


def read_kaggle_solution(csv_path: Path) -> dict[str, str]:
    """Read Kaggle's `LOC_val_solution.csv`: {image id: wnid of its first box}.

    Each row's PredictionString contains `wnid x_min y_min x_max y_max` per box, all boxes of one class.
    """
    labels: dict[str, str] = {}
    text = _read_text(csv_path)
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header != ["ImageId", "PredictionString"]:
        raise InputError(f"{csv_path}: expected the header 'ImageId,PredictionString', found {header!r}")
    for number, row in enumerate(reader, 2):
        if len(row) != 2 or not row[1].split():
            raise InputError(f"{csv_path}, line {number}: expected 'ImageId,wnid x y x y ...', found {row!r}")
        wnid = row[1].split()[0]
        if not WNID.match(wnid):
            raise InputError(f"{csv_path}, line {number}: {wnid!r} is not a WordNet id")
        labels[row[0]] = wnid
    return labels


def imagenet1k_wnids(meta: Path) -> list[str]:
    """Return the 1000 ILSVRC2012 wnids, sorted, from `LOC_synset_mapping.txt` or `imagenet_class_index.json`.

    `meta` is either one of those files or a folder containing one of them.
    """
    meta = Path(meta)
    if meta.is_dir():
        for name in (SYNSET_MAPPING, CLASS_INDEX):
            if (meta / name).is_file():
                return imagenet1k_wnids(meta / name)
        raise InputError(f"neither {SYNSET_MAPPING} nor {CLASS_INDEX} is in {meta}: run the download stage")
    text = _read_text(meta)
    if meta.suffix == ".json":
        try:
            index = json.loads(text)
            wnids = [index[str(i)][0] for i in range(len(index))]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise InputError(f"{meta} is not a class index {{\"0\": [wnid, name], ...}} ({err})") from None
        if wnids != sorted(wnids):
            raise InputError(f"{meta}: class indices are not in sorted wnid order")
    else:
        wnids = [line.split()[0] for line in text.splitlines() if line.strip()]
    bad = [w for w in wnids if not WNID.match(w)]
    if bad or len(set(wnids)) != 1000:
        raise InputError(f"{meta} must list 1000 distinct wnids; found {len(set(wnids))}, invalid: {bad[:3]}")
    return sorted(wnids)


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path} not found: run `dvc repro download@imagenet`") from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not a text file ({err})") from None


def _ground_truth(folder: Path) -> dict[str, str]:
    meta = folder / "meta"
    return read_devkit_ground_truth(meta / GROUND_TRUTH, meta / MAP_CLSLOC)


def _walk_images(folder: Path) -> list[tuple[Path, str]]:
    """Return (image path, folder wnid) for every image under train/ and val/, sorted by path."""
    found = []
    for part in ("train", "val"):
        sub = folder / part
        if not sub.is_dir():
            continue
        for class_dir in sorted(sub.iterdir()):
            if not class_dir.is_dir() or class_dir.name.startswith("."):
                continue
            for path in sorted(class_dir.iterdir()):
                if _is_image(path):
                    found.append((path, class_dir.name))
    return found


def split(folder: Path, which: Literal["train", "eval"]) -> list[Item]:
    """List the images of one split with their class indices (see the module docstring for the rule).

    Raises InputError when an evaluation image is missing from the ground truth, sits in a folder other than
    its ground-truth class, or when the split is empty.
    """
    if which not in ("train", "eval"):
        raise InputError(f"ImageNet split {which!r} does not exist; use 'train' or 'eval'")
    folder = Path(folder)
    names = classes(folder)
    index = {wnid: i for i, wnid in enumerate(names)}
    truth = _ground_truth(folder) if which == "eval" else {}
    items = []
    for path, folder_wnid in _walk_images(folder):
        match = VAL_NAME.match(path.name)
        if which == "train":
            if not match:
                items.append(Item(path, index[folder_wnid]))
            continue
        if not match:
            continue
        image_id = match.group(1)
        if image_id not in truth:
            raise InputError(f"{path}: {image_id} is not in the devkit ground truth ({GROUND_TRUTH})")
        wnid = truth[image_id]
        if wnid != folder_wnid:
            raise InputError(
                f"{path} sits in folder {folder_wnid}, but the devkit ground truth labels {image_id} as {wnid}: "
                f"the download is mislabelled; run `dvc repro download@imagenet` again"
            )
        items.append(Item(path, index[wnid]))
    if not items:
        raise InputError(f"the {which} split of {folder} has no images: run `dvc repro download@imagenet`")
    return items
