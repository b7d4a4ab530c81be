"""Compare training input throughput: the uint8 store of cnnrepro.training against ImageFolder-style PIL loading.

Both pipelines read the ImageNet-layout training images from disk and produce GoogLeNet's training crops
(random 8-100% area, aspect 3/4..4/3, resized to --size, random mirror) with the same number of DataLoader
workers. The store is built first (decode and resize once, as the train stage does on first use) and its
build time is reported separately. Prints images/s of both and their ratio.

    python benchmarks/input_pipeline.py data/raw/imagenet --size 112 --workers 2 --batches 30
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader


def _throughput(loader: DataLoader, batches: int) -> float:
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    seen = 0
    started = time.perf_counter()
    for _ in range(batches):
        images = next(iterator)[0]
        seen += images.shape[0]
    return seen / (time.perf_counter() - started)


class _ImageFolderItems(torch.utils.data.Dataset):
    """ImageFolder's per-item work (PIL open + transform) over the same image list as the store."""

    def __init__(self, items, transform) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        from torchvision.datasets.folder import pil_loader

        item = self.items[index]
        return self.transform(pil_loader(str(item.path))), item.label


def imagefolder_loader(folder: Path, size: int, batch_size: int, workers: int) -> DataLoader:
    from torchvision import transforms

    from cnnrepro.data import imagenet

    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
            transforms.RandomHorizontalFlip(),
            transforms.PILToTensor(),
        ]
    )
    dataset = _ImageFolderItems(imagenet.split(folder, "train"), transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)


def store_loader(folder: Path, size: int, batch_size: int, workers: int, cache: Path) -> tuple[DataLoader, float]:
    from cnnrepro.training import data
    from cnnrepro.training.augment import CropPolicy

    started = time.perf_counter()
    store = data.imagenet_store(folder, "train", round(size * data.CROP_MARGIN), cache, "benchmark")
    built = time.perf_counter() - started
    policy = CropPolicy("resized_crop", size, photometric=0.4)
    dataset = data.StoreDataset(store, np.arange(len(store)), policy, seed=0)
    sampler = torch.utils.data.RandomSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers), built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="ImageNet-layout folder with train/<wnid>/*.JPEG")
    parser.add_argument("--size", type=int, default=112, help="crop side in pixels")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for both pipelines")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=30, help="batches timed per pipeline")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as cache:
        loader, built = store_loader(args.folder, args.size, args.batch_size, args.workers, Path(cache))
        store_rate = _throughput(loader, args.batches)
        del loader
    baseline_rate = _throughput(imagefolder_loader(args.folder, args.size, args.batch_size, args.workers), args.batches)

    print(f"store build (once per dataset and size): {built:.1f} s")
    print(f"ImageFolder + PIL + RandomResizedCrop: {baseline_rate:8.0f} images/s")
    print(f"uint8 store + tensor crops:            {store_rate:8.0f} images/s")
    print(f"ratio: {store_rate / baseline_rate:.1f}x  ({args.workers} workers, {args.size} px, batch {args.batch_size})")


if __name__ == "__main__":
    main()
