"""Training data as uint8 image stores: decoded and resized once, then cropped per epoch in the workers.

Decoding JPEGs and resizing them dominates a PIL-based input pipeline on a CPU. Here each dataset is decoded
once into one uint8 array (N x C x S x S) saved as `.npy` under `.cnnrepro/prepared/`. The cache is keyed by
the data folder's manifest digest and the stored side, and the training processes memory-map it. An epoch then
only crops, flips and copies small tensors.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from cnnrepro import atomic
from cnnrepro.errors import InputError
from cnnrepro.training.augment import CropPolicy, center_crop, sample_seed

log = logging.getLogger(__name__)

# The papers crop 224 from images whose shorter side is 256; stores keep the same margin around the crop.
CROP_MARGIN = 256 / 224
# Part of every cache folder name: raise it when the decoding or layout of stores changes, so old caches are
# not reused.
STORE_VERSION = 2


@dataclass
class ImageStore:
    """Decoded images (uint8, N x C x H x W, possibly memory-mapped), int64 labels and class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def tensor(self, indices: np.ndarray | None = None) -> torch.Tensor:
        chosen = self.images if indices is None else self.images[np.asarray(indices)]
        return torch.from_numpy(np.ascontiguousarray(chosen))


class StoreDataset(Dataset):
    """Images of a store at `indices`, cropped by `policy` with per-image seeds; yields (image, label, colour)."""

    def __init__(self, store: ImageStore, indices: np.ndarray, policy: CropPolicy, seed: int) -> None:
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.policy = policy
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        index = int(self.indices[position])
        image = torch.from_numpy(np.array(self.store.images[index]))
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, index))
        image, color = self.policy(image, generator)
        return image, int(self.store.labels[index]), color


def split_validation(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (train indices, validation indices), a seeded random `fraction` of range(count) held out."""
    order = np.random.default_rng(seed).permutation(count)
    held = int(round(count * fraction))
    if fraction > 0 and held == 0:
        held = 1
    return np.sort(order[held:]), np.sort(order[:held])


def subset_identities(
    store: ImageStore,
    train_indices: np.ndarray,
    val_indices: np.ndarray,
    identities: int = 0,
    images_fraction: float = 1.0,
) -> tuple[ImageStore, np.ndarray, np.ndarray]:
    """Restrict a split identity store to fewer identities and fewer training images per identity.

    Keeps the first `identities` identities in name order (0 keeps all), then `images_fraction` of each kept
    identity's training images: round(n * fraction) of its n, at least one, spaced evenly through its images
    in store order. Neither choice depends on a seed. `val_indices` keep only the kept identities' images and
    are never thinned, so the validation images of an identity are the same for every subset.

    Returns (store, train indices, validation indices). The returned store shares the images, and its classes
    are the kept names in name order. Its labels index those classes, and the images of dropped identities get
    label -1, which no returned index points to.
    """
    if identities < 0 or identities > len(store.classes):
        raise ValueError(
            f"identities must be between 0 and the {len(store.classes)} identities of the store, got {identities}"
        )
    if not 0.0 < images_fraction <= 1.0:
        raise ValueError(f"images_fraction must be in (0, 1], got {images_fraction}")
    train_indices, val_indices = np.asarray(train_indices), np.asarray(val_indices)
    if identities == 0 and images_fraction == 1.0:
        return store, train_indices, val_indices

    count = identities or len(store.classes)
    kept = sorted(range(len(store.classes)), key=lambda label: store.classes[label])[:count]
    relabel = np.full(len(store.classes), -1, dtype=np.int64)
    relabel[kept] = np.arange(count)
    labels = relabel[store.labels]

    chosen = []
    train_labels = labels[train_indices]
    for label in range(count):
        own = train_indices[train_labels == label]  # sorted, because train_indices are sorted
        if len(own) == 0:
            continue
        keep = max(1, round(len(own) * images_fraction))
        # Because keep <= len(own), the positions i * len(own) // keep are distinct and start at 0.
        chosen.append(own[(np.arange(keep) * len(own)) // keep])
    train_kept = np.sort(np.concatenate(chosen)) if chosen else train_indices[:0]
    val_kept = val_indices[labels[val_indices] >= 0]
    subset = ImageStore(store.images, labels, [store.classes[label] for label in kept])
    return subset, train_kept, val_kept


def channel_stats(store: ImageStore, indices: np.ndarray, limit: int = 5000) -> tuple[list[float], list[float]]:
    """Return per-channel mean and std in [0, 1] units over up to `limit` evenly spaced training images."""
    chosen = np.asarray(indices)[:: max(1, len(indices) // limit)]
    pixels = store.tensor(chosen).double() / 255.0
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return mean.tolist(), std.tolist()


# -- preparation ---------------------------------------------------------------------------------------------


def _cached(cache: Path, build) -> ImageStore:
    """Load the store in `cache`, or build it with `build(folder)` into a temporary folder renamed onto `cache`.

    `build` may write `images.npy` itself (a memory-mapped array that never has to fit in RAM); otherwise the
    returned store's images are saved here.
    """
    if not (cache / "images.npy").is_file():
        with atomic.atomic_dir(cache) as tmp:
            store = build(tmp)
            if isinstance(store.images, np.memmap):
                store.images.flush()
            else:
                np.save(tmp / "images.npy", store.images)
            np.save(tmp / "labels.npy", store.labels)
            (tmp / "classes.json").write_text(json.dumps(store.classes), encoding="utf-8")
            log.info("prepared %d images %s in %s", len(store), store.images.shape[1:], cache)
    images = np.load(cache / "images.npy", mmap_mode="r")
    labels = np.load(cache / "labels.npy")
    classes = json.loads((cache / "classes.json").read_text(encoding="utf-8"))
    return ImageStore(images, labels, classes)


def mnist_store(folder: Path, split: str, cache_root: Path, digest: str) -> ImageStore:
    """Load MNIST digits padded from 28 x 28 to LeNet-5's 32 x 32 input with background (LeCun et al., 1998)."""
    from cnnrepro.data import mnist

    def build(tmp: Path) -> ImageStore:
        images, labels = mnist.load(folder, split)
        padded = np.zeros((len(images), 1, 32, 32), dtype=np.uint8)
        padded[:, 0, 2:30, 2:30] = images
        return ImageStore(padded, np.asarray(labels, dtype=np.int64), [str(d) for d in range(10)])

    return _cached(cache_root / f"mnist-{split}-{digest[:16]}-v{STORE_VERSION}", build)


def _decode(path: Path, side: int) -> torch.Tensor:
    """Decode an image to RGB uint8, scale its shorter side to `side` and take the central square."""
    from torchvision.transforms.v2 import functional as TF

    from cnnrepro.data.imagenet import load_rgb

    # PIL decodes once per dataset and size; load_rgb also converts CMYK and greyscale files to RGB.
    image = TF.pil_to_tensor(load_rgb(path))
    image = TF.resize(image, side, antialias=True)
    return center_crop(image, side)


def _store_from_items(items, classes: list[str], side: int, what: str, tmp: Path) -> ImageStore:
    shape = (len(items), 3, side, side)
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=np.uint8, shape=shape)
    labels = np.empty(len(items), dtype=np.int64)
    for i, item in enumerate(tqdm(items, desc=f"prepare {what}", unit="img", leave=False)):
        try:
            images[i] = _decode(Path(item.path), side).numpy()
        except Exception as err:
            raise InputError(f"{item.path}: cannot decode image ({err}); delete or replace the file") from err
        labels[i] = int(item.label)
    return ImageStore(images, labels, classes)


def imagenet_store(folder: Path, split: str, side: int, cache_root: Path, digest: str) -> ImageStore:
    """ImageNet-layout images at `side` x `side` (shorter side scaled to `side`, central square kept).

    NOTE: the central square drops the edges of non-square photos, so random crops never reach them; the
    papers crop from the whole rescaled image. Imagenette's 224 x 224 images lose nothing.
    """
    from cnnrepro.data import imagenet

    def build(tmp: Path) -> ImageStore:
        items = imagenet.split(folder, split)
        if not items:
            raise InputError(f"{folder}: the {split} split has no images; run `dvc repro download@imagenet`")
        return _store_from_items(items, list(imagenet.classes(folder)), side, f"imagenet {split}", tmp)

    return _cached(cache_root / f"imagenet-{split}-{side}-{digest[:16]}-v{STORE_VERSION}", build)


def faces_folder(root: Path, image_size: int) -> Path:
    """Pick the aligned-face size folder under `root`: the smallest one at least `image_size`, else the largest."""
    sizes = sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()) if root.is_dir() else []
    if not sizes:
        raise InputError(f"{root} has no aligned face folders <size>/<identity>/; run `dvc repro align@faces`")
    larger = [s for s in sizes if s >= image_size]
    return root / str(larger[0] if larger else sizes[-1])


def faces_store(root: Path, image_size: int, cache_root: Path, digest: str) -> ImageStore:
    """Aligned identity images resized to image_size x image_size; the label is the identity."""
    from cnnrepro.data import identity

    folder = faces_folder(root, image_size)

    def build(tmp: Path) -> ImageStore:
        items, names = identity.scan(folder)
        if not items:
            raise InputError(f"{folder} has no face images; run `dvc repro align@faces`")
        return _store_from_items(items, list(names), image_size, "faces", tmp)

    return _cached(cache_root / f"faces-{folder.name}-{image_size}-{digest[:16]}-v{STORE_VERSION}", build)
