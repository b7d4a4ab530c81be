"""The one training loop of every model: SGD with momentum, a per-epoch schedule, optional Polyak averaging.

`fit` runs in one process or in each process of a torchrun job (DistributedDataParallel, a DistributedSampler
and a per-rank share of the global batch). It checkpoints at every epoch boundary and resumes from there, with
mixed precision, channels_last and torch.compile as set in the params section.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from cnnrepro.errors import InputError
from cnnrepro.training import checkpoint
from cnnrepro.training.augment import BatchColor
from cnnrepro.training.data import StoreDataset
from cnnrepro.training.distributed import DistInfo, all_sum, barrier
from cnnrepro.training.schedules import Schedule

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """The trained network, its Polyak average (or None) and one record per epoch."""

    model: nn.Module
    averaged: nn.Module | None
    records: list[dict[str, float]] = field(default_factory=list)

    @property
    def evaluated(self) -> nn.Module:
        """The network to evaluate and save: the Polyak average where there is one."""
        return self.averaged if self.averaged is not None else self.model


def resolve_device(name: str, info: DistInfo = DistInfo()) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("device = 'cuda' but torch finds no CUDA device; set device to auto or cpu")
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """Return the autocast dtype (None: fp32). auto is bf16 on CUDA devices that support it, else fp32."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name == "fp16" and device.type != "cuda":
        raise InputError("precision = 'fp16' needs a CUDA device (GradScaler); use bf16 or fp32 on CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def configure_determinism(deterministic: bool) -> None:
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def cpu_threads(requested: int, workers: int, world_size: int = 1) -> int:
    """Return the torch thread count per process: `requested`, or the cores left after the data workers."""
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // world_size - workers)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def polyak_update(decay: float):
    """Return an AveragedModel multi_avg_fn: an exponential moving average with a warm-up of its decay.

    After n updates the decay is min(decay, (1 + n) / (10 + n)), the `num_updates` rule of TensorFlow's
    ExponentialMovingAverage. Without it, a short run with decay 0.999 would keep most of the initial weights.
    """

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        count = float(num_averaged)
        weight = 1.0 - min(decay, (1.0 + count) / (10.0 + count))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:
            # Integer buffers (BatchNorm's num_batches_tracked) follow the model.
            for target, source in zip(averaged, current, strict=True):
                target.copy_(source)

    return update


def logits_of(outputs: Any) -> torch.Tensor:
    """Return the class scores of a model output (GoogLeNet's training output also has auxiliary logits)."""
    return getattr(outputs, "logits", outputs)


def loss_of(model: nn.Module, outputs: Any, target: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "loss"):
        return model.loss(outputs, target)
    return F.cross_entropy(logits_of(outputs), target)


@torch.no_grad()
def error_rate(model: nn.Module, loader: DataLoader, color: BatchColor, device: torch.device, autocast) -> float:
    """Top-1 error of `model` in eval mode over `loader`."""
    was_training = model.training
    model.eval()
    wrong = total = 0
    for images, labels, _ in loader:
        images = color(images.to(device, non_blocking=True))
        labels = labels.to(device, non_blocking=True)
        with autocast():
            logits = logits_of(model(images))
        wrong += int((logits.argmax(dim=1) != labels).sum())
        total += labels.numel()
    model.train(was_training)
    return wrong / max(total, 1)


@dataclass
class LoopSettings:
    """Settings of `fit` beyond the datasets, usually taken from a params section."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    seed: int = 0
    workers: int = 0
    max_batches: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    polyak_decay: float | None = None
    threads: int = 0
    name: str = "train"

    @classmethod
    def from_section(cls, section: Any, *, seed: int | None = None, polyak_decay: float | None = None, name: str):
        return cls(
            epochs=section.epochs,
            batch_size=section.batch_size,
            lr=section.optimizer.lr,
            momentum=section.optimizer.momentum,
            weight_decay=section.optimizer.weight_decay,
            seed=section.seed if seed is None else seed,
            workers=section.workers,
            max_batches=section.max_batches,
            device=section.device,
            precision=section.precision,
            channels_last=section.channels_last,
            compile=section.compile,
            deterministic=section.deterministic,
            polyak_decay=polyak_decay,
            threads=section.threads,
            name=name,
        )


def _loader(dataset: StoreDataset, batch_size: int, settings: LoopSettings, sampler=None, seed: int = 0):
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=settings.workers,
        pin_memory=torch.cuda.is_available() and settings.device != "cpu",
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(seed),
        drop_last=False,
    )


def fit(
    model: nn.Module,
    train_set: StoreDataset,
    val_set: StoreDataset | None,
    settings: LoopSettings,
    *,
    schedule: Schedule,
    color: BatchColor,
    resume: checkpoint.ResumeStore | None = None,
    info: DistInfo = DistInfo(),
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train `model` on `train_set` for settings.epochs epochs; return the trained and averaged networks.

    `on_epoch(record)` runs on rank 0 after each epoch (also for epochs restored from a checkpoint). The
    record contains epoch (1-based), train_loss, train_error, val_error (NaN without a validation set), lr,
    images_per_s and seconds.
    """
    if settings.batch_size % info.world_size:
        raise InputError(
            f"batch_size = {settings.batch_size} is the global batch and must divide evenly over "
            f"{info.world_size} processes; choose a multiple of {info.world_size}"
        )
    configure_determinism(settings.deterministic)
    device = resolve_device(settings.device, info)
    dtype = resolve_precision(settings.precision, device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(settings.threads, settings.workers, info.world_size))
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    model = model.to(device, memory_format=memory_format)
    color = color.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    averaged = None
    if settings.polyak_decay is not None:
        averaged = AveragedModel(model, multi_avg_fn=polyak_update(settings.polyak_decay), use_buffers=True)

    start_epoch, records = 0, []
    state = resume.load() if resume is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        schedule.load_state_dict(state["schedule"])
        if averaged is not None:
            averaged.load_state_dict(state["averaged"])
        checkpoint.set_rng_state(state["rng"])
        start_epoch, records = int(state["epoch"]), list(state["records"])
        if info.is_main and on_epoch is not None:
            for record in records:
                on_epoch(record)

    network: nn.Module = model
    if info.enabled:
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if settings.compile:
        network = torch.compile(network)
    evaluated = averaged if averaged is not None else model

    per_rank = settings.batch_size // info.world_size
    sampler = DistributedSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=settings.seed, drop_last=False
    )
    val_loader = _loader(val_set, per_rank, settings) if val_set is not None and len(val_set) else None

    for epoch in range(start_epoch, settings.epochs):
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        loader = _loader(train_set, per_rank, settings, sampler=sampler, seed=settings.seed * 100_003 + epoch)
        lr = settings.lr * schedule.factor(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr

        batches = len(loader) if not settings.max_batches else min(len(loader), settings.max_batches)
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        wrong = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        started = time.perf_counter()
        bar = tqdm(
            total=batches,
            desc=f"{settings.name} epoch {epoch + 1}/{settings.epochs}",
            unit="batch",
            disable=not info.is_main,
            leave=False,
        )
        for step, (images, labels, colors) in enumerate(loader):
            if step >= batches:
                break
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            images = color(images, colors).contiguous(memory_format=memory_format)
            with autocast():
                outputs = network(images)
                loss = loss_of(model, outputs, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if averaged is not None:
                averaged.update_parameters(model)

            count = labels.numel()
            seen += count
            loss_sum += loss.detach().double() * count
            wrong += (logits_of(outputs).detach().argmax(dim=1) != labels).sum()
            bar.update(1)
            if info.is_main and step % 10 == 0:
                elapsed = time.perf_counter() - started
                bar.set_postfix(img_s=f"{seen * info.world_size / max(elapsed, 1e-9):.0f}", loss=f"{loss.item():.3f}")
        bar.close()
        train_seconds = time.perf_counter() - started

        loss_total, wrong_total, seen_total = all_sum(info, [loss_sum.item(), float(wrong.item()), float(seen)], device)
        train_loss = loss_total / max(seen_total, 1)
        train_error = wrong_total / max(seen_total, 1)
        val_error = error_rate(evaluated, val_loader, color, device, autocast) if val_loader else float("nan")
        schedule.observe(epoch, train_error if val_loader is None else val_error)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_error": train_error,
            "val_error": val_error,
            "lr": lr,
            "images_per_s": seen_total / max(train_seconds, 1e-9),
            "seconds": time.perf_counter() - started,
        }
        records.append(record)
        if info.is_main:
            log.info(
                "%s epoch %d/%d: train loss %.4f, train error %.4f, val error %.4f, lr %.3g, %.0f images/s, %.1f s",
                settings.name,
                epoch + 1,
                settings.epochs,
                train_loss,
                train_error,
                val_error,
                lr,
                record["images_per_s"],
                record["seconds"],
            )
            if on_epoch is not None:
                on_epoch(record)
            if resume is not None:
                resume.save(
                    {
                        "epoch": epoch + 1,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict(),
                        "schedule": schedule.state_dict(),
                        "averaged": averaged.state_dict() if averaged is not None else None,
                        "rng": checkpoint.rng_state(),
                        "records": records,
                    }
                )
        barrier(info)

    return FitResult(model=model, averaged=averaged.module if averaged is not None else None, records=records)
