"""ImageNet-style classification: top-k error with the softmax averaged over test-time crops.

An image counts as correct at k when its label is among the k classes with the highest averaged probability.
The top-k error is the fraction of images that are not correct at k. One pass over the images serves several crop schemes:
every image yields the crops of each requested scheme, all of them go through the network as one batch, and the
probabilities are averaged per scheme.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cnnrepro.evaluation import crops

log = logging.getLogger(__name__)


def topk_correct(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Return a bool per image: is its label among the k highest-probability classes?"""
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return np.any(top == labels[:, None], axis=1)


def topk_errors(probs: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Return {"top1_error": ..., "top5_error": ...} for the given class probabilities and labels."""
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} rows of probabilities for {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("no images to evaluate")
    return {f"top{k}_error": float(1.0 - topk_correct(probs, labels, k).mean()) for k in ks}


@dataclass(frozen=True)
class Normalisation:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def apply(self, batch: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=batch.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=batch.dtype).view(1, -1, 1, 1)
        return (batch - mean) / std


class CropDataset(torch.utils.data.Dataset):
    """Images as the crops of every requested scheme, concatenated: (sum of scheme sizes, C, S, S)."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int],
        schemes: Sequence[int],
        image_size: int,
        normalisation: Normalisation,
        loader: Callable[[str | Path], torch.Tensor],
    ) -> None:
        self.paths = list(paths)
        self.labels = list(labels)
        self.schemes = tuple(schemes)
        self.image_size = image_size
        self.normalisation = normalisation
        self.loader = loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = crops.to_float(self.loader(self.paths[index]))
        batch = torch.cat([crops.multicrop(image, scheme, self.image_size) for scheme in self.schemes])
        return self.normalisation.apply(batch), self.labels[index]


def pil_to_tensor_loader(load_rgb: Callable[[str | Path], object]) -> Callable[[str | Path], torch.Tensor]:
    """Wrap an image loader that returns an RGB PIL image into one that returns a uint8 (3, H, W) tensor."""

    def load(path: str | Path) -> torch.Tensor:
        image = np.asarray(load_rgb(path), dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{path}: the loader returned shape {image.shape}, expected (H, W, 3)")
        return torch.from_numpy(image.copy()).permute(2, 0, 1)

    return load


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    dataset: CropDataset,
    batch_size: int,
    device: str | torch.device = "cpu",
    workers: int = 0,
) -> dict[int, np.ndarray]:
    """Return {scheme: (N, classes) softmax averaged over that scheme's crops} for every image of `dataset`.

    `batch_size` counts crops: an image's crops are never split across images, but one image's crops may be
    split over several forward passes. Model and batches use the channels-last layout, which runs convolutions
    faster on CPUs and on GPUs with tensor cores.
    """
    model.eval()
    model.to(memory_format=torch.channels_last)
    sizes = list(dataset.schemes)
    per_image = sum(sizes)
    images_per_batch = max(1, batch_size // per_image)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=images_per_batch, num_workers=workers, shuffle=False, persistent_workers=False
    )
    outputs: dict[int, list[np.ndarray]] = {scheme: [] for scheme in sizes}
    for batch, _ in tqdm(loader, desc="predict", unit="batch", leave=False):
        count = batch.shape[0]
        flat = batch.flatten(0, 1)
        probs = torch.cat(
            [
                torch.softmax(model(chunk.to(device).contiguous(memory_format=torch.channels_last)).float(), dim=1).cpu()
                for chunk in flat.split(batch_size)
            ]
        )
        probs = probs.view(count, per_image, -1)
        start = 0
        for scheme in sizes:
            outputs[scheme].append(probs[:, start : start + scheme].mean(dim=1).numpy())
            start += scheme
    return {scheme: np.concatenate(parts) for scheme, parts in outputs.items()}
