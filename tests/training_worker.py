"""A tiny training run on synthetic images, launched by the training tests in subprocesses and under torchrun.

Usage: python tests/training_worker.py OUT [--epochs N] [--resume DIR] [--slow-from EPOCH]
Writes OUT/records.json and OUT/weights.pt (trained and averaged weights) from rank 0.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def synthetic_store(count: int = 64, side: int = 14, seed: int = 0):
    """Images whose label (0..3) is the brightest colour channel plus a texture bit, so a tiny net can learn it."""
    from cnnrepro.training.data import ImageStore

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 120, size=(count, 3, side, side), dtype=np.uint8)
    labels = rng.integers(0, 4, size=count)
    for i, label in enumerate(labels):
        images[i, label % 3] += 120
        if label == 3:
            images[i, :, ::2] //= 2
    return ImageStore(images, labels.astype(np.int64), ["a", "b", "c", "d"])


class TinyNet(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def run(
    out: Path,
    *,
    epochs: int = 3,
    resume: str | None = None,
    slow_from: int = 0,
    seed: int = 0,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict:
    from cnnrepro.training import checkpoint, distributed, loop
    from cnnrepro.training.augment import BatchColor, CropPolicy
    from cnnrepro.training.data import StoreDataset
    from cnnrepro.training.schedules import Schedule, step_decay_factor

    torch.set_num_threads(1)
    info = distributed.setup("cpu")
    store = synthetic_store()
    # Validation reuses a quarter of the training images: the tests compare runs, not generalisation.
    train_idx, val_idx = np.arange(64), np.arange(48, 64)
    policy = CropPolicy("resized_crop", 12, scale=(0.5, 1.0), photometric=0.3)
    torch.manual_seed(seed)
    model = TinyNet()
    settings = loop.LoopSettings(
        epochs=epochs, batch_size=16, lr=0.05, momentum=0.9, weight_decay=1e-4, seed=seed, workers=0,
        device="cpu", precision=precision, polyak_decay=0.9, deterministic=True, threads=1, name="tiny",
        channels_last=channels_last,
    )

    def on_epoch(record):
        if slow_from and record["epoch"] >= slow_from:
            time.sleep(3)

    result = loop.fit(
        model,
        StoreDataset(store, train_idx, policy, seed),
        StoreDataset(store, val_idx, CropPolicy("center", 12), seed),
        settings,
        schedule=Schedule(lambda e: step_decay_factor(e, 0.5, 1)),
        color=BatchColor([0.5] * 3, [0.25] * 3, photometric=True),
        resume=checkpoint.ResumeStore(Path(resume)) if resume else None,
        info=info,
        on_epoch=on_epoch,
    )
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "records.json").write_text(json.dumps(result.records))
        torch.save({"model": result.model.state_dict(), "averaged": result.averaged.state_dict()}, out / "weights.pt")
    distributed.cleanup(info)
    return {"records": result.records, "model": result.model.state_dict(), "averaged": result.averaged.state_dict()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resume")
    parser.add_argument("--slow-from", type=int, default=0)
    args = parser.parse_args()
    run(args.out, epochs=args.epochs, resume=args.resume, slow_from=args.slow_from)
