"""The `train@<key>` stage body: data, model and recipe of each paper wired into the shared loop.

Keys: lenet5, alexnet, deepface and googlenet-1 .. googlenet-7. The GoogLeNet members read one params section
and share their initial weights, as the seven models of Szegedy et al. (2014, section 7) did; member k samples
its crops and batch order with seed + k.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnrepro import atomic, manifest, paths
from cnnrepro import params as params_module
from cnnrepro.errors import InputError
from cnnrepro.training import checkpoint, data, distributed, loop, schedules
from cnnrepro.training.augment import BatchColor, CropPolicy, rgb_pca

log = logging.getLogger(__name__)

GOOGLENET_MEMBERS = 7
# Data folder of each family, relative to the repository root; dvc.yaml lists the same folders as deps.
DATA_FOLDERS = {
    "lenet5": ("mnist", "data/raw/mnist"),
    "alexnet": ("imagenet", "data/raw/imagenet"),
    "googlenet": ("imagenet", "data/raw/imagenet"),
    "deepface": ("faces", "data/aligned/faces"),
}
# LeNet-5's input scaling: background (0) maps to -0.1 and full ink (1) to 1.175, so mean is about 0 and
# variance about 1 over MNIST.
LENET_MEAN, LENET_STD = [0.1 / 1.275], [1.0 / 1.275]


@dataclass(frozen=True)
class TrainKey:
    """A stage key split into its params section (family) and GoogLeNet member number (0 for the others)."""

    key: str
    family: str
    member: int = 0

    @classmethod
    def parse(cls, key: str) -> TrainKey:
        if key in ("lenet5", "alexnet", "deepface"):
            return cls(key, key)
        match = re.fullmatch(r"googlenet-(\d+)", key)
        if match and 1 <= int(match.group(1)) <= GOOGLENET_MEMBERS:
            return cls(key, "googlenet", int(match.group(1)))
        raise InputError(
            f"unknown training key {key!r}; use lenet5, alexnet, deepface or googlenet-1 .. "
            f"googlenet-{GOOGLENET_MEMBERS}"
        )

    @property
    def section(self) -> str:
        return f"train.{self.family}"


@dataclass
class Prepared:
    """Everything the loop and the saved model need from one family's data."""

    store: data.ImageStore
    train_indices: np.ndarray
    val_indices: np.ndarray
    train_policy: CropPolicy
    eval_policy: CropPolicy
    color: BatchColor
    mean: list[float]
    std: list[float]
    evaluation: dict[str, Any]
    build_options: dict[str, Any]


def _build_options(family: str, section: Any) -> dict[str, Any]:
    names = {
        "lenet5": ("activation",),
        "alexnet": ("towers", "lrn", "overlapping_pool", "dropout", "activation", "init"),
        "deepface": ("dropout", "init", "variant"),
        "googlenet": ("aux_heads", "batch_norm", "dropout", "init"),
    }[family]
    return {name: getattr(section, name) for name in names}


def _deepface_subset(
    store: data.ImageStore, section: Any, train_indices: np.ndarray, val_indices: np.ndarray, folder: Path
) -> tuple[data.ImageStore, np.ndarray, np.ndarray]:
    """Apply train.deepface.identities and images_fraction after the validation split of all images.

    The validation set is then the images of the kept identities that training on every image would hold
    out, because the split does not depend on the subset and images_fraction thins only the training images.
    """
    available = len(store.classes)
    if section.identities > available:
        raise InputError(
            f"train.deepface.identities = {section.identities} but {folder} has only {available} identities; "
            f"choose at most {available}, or 0 for all"
        )
    store, train_indices, val_indices = data.subset_identities(
        store, train_indices, val_indices, section.identities, section.images_fraction
    )
    if len(train_indices) == 0:
        raise InputError(
            f"train.deepface: the {len(store.classes)} kept identities have no training images; "
            f"raise train.deepface.identities or lower val_fraction"
        )
    log.info(
        "deepface trains on %d identities: %d training and %d validation images",
        len(store.classes),
        len(train_indices),
        len(val_indices),
    )
    return store, train_indices, val_indices


def prepare(family: str, section: Any, root: Path, digest: str, info: distributed.DistInfo) -> Prepared:
    """Load (and on first use decode and cache) the family's training store; choose the held-out splits."""
    cache = paths.state_dir(root) / "prepared"
    folder = root / DATA_FOLDERS[family][1]
    size = section.image_size
    evaluation: dict[str, Any]

    def load() -> data.ImageStore:
        if family == "lenet5":
            split = "train" if section.data == "official" else "test"
            return data.mnist_store(folder, split, cache, digest)
        if family == "deepface":
            return data.faces_store(folder, size, cache, digest)
        return data.imagenet_store(folder, "train", round(size * data.CROP_MARGIN), cache, digest)

    # Rank 0 decodes and caches the store; the other ranks read the cache once it is complete.
    store = load() if info.is_main else None
    distributed.barrier(info)
    store = store if store is not None else load()

    pool = np.arange(len(store))
    if family == "lenet5" and section.data == "test-holdout":
        if section.holdout >= len(store):
            raise InputError(
                f"train.lenet5.holdout = {section.holdout} leaves no training images out of {len(store)}; "
                f"choose a smaller holdout"
            )
        order = np.random.default_rng(section.seed).permutation(len(store))
        held = np.sort(order[: section.holdout])
        pool = np.sort(order[section.holdout :])
        evaluation = {"split": "test", "indices": held.tolist()}
    elif family == "lenet5":
        evaluation = {"split": "test"}
    elif family == "deepface":
        evaluation = {"split": "lfw"}
    else:
        evaluation = {"split": "eval"}

    train_rel, val_rel = data.split_validation(len(pool), section.val_fraction, section.seed)
    train_indices, val_indices = pool[train_rel], pool[val_rel]
    if family == "deepface":
        store, train_indices, val_indices = _deepface_subset(store, section, train_indices, val_indices, folder)

    if family == "lenet5":
        mean, std = LENET_MEAN, LENET_STD
    else:
        mean, std = data.channel_stats(store, train_indices)

    photometric = 0.0
    eigen: dict[str, torch.Tensor] = {}
    if family == "alexnet":
        train_policy = CropPolicy("crop_flip", size, pca_std=section.pca_std if section.pca_color else 0.0)
        if section.pca_color:
            sample = train_indices[:: max(1, len(train_indices) // 2000)]
            eigenvalues, eigenvectors = rgb_pca(store.tensor(sample))
            eigen = {"eigenvalues": eigenvalues, "eigenvectors": eigenvectors}
    elif family == "googlenet":
        photometric = section.photometric_strength if section.photometric else 0.0
        train_policy = CropPolicy(
            "resized_crop",
            size,
            scale=tuple(section.crop_scale),
            ratio=tuple(section.crop_ratio),
            photometric=photometric,
        )
    else:
        train_policy = CropPolicy("center", size)
    color = BatchColor(mean, std, photometric=photometric > 0, **eigen)
    return Prepared(
        store=store,
        train_indices=train_indices,
        val_indices=val_indices,
        train_policy=train_policy,
        eval_policy=CropPolicy("center", size),
        color=color,
        mean=mean,
        std=std,
        evaluation=evaluation,
        build_options=_build_options(family, section),
    )


@torch.no_grad()
def feature_max(model: torch.nn.Module, prepared: Prepared, batch_size: int = 64) -> torch.Tensor:
    """Return DeepFace's per-component maximum of the F7 features over the training images.

    DeepFace (Taigman et al., CVPR 2014) divides each feature component by this maximum before L2
    normalisation.
    """
    model.eval()
    device = next(model.parameters()).device
    result = None
    indices = prepared.train_indices
    for start in range(0, len(indices), batch_size):
        batch = prepared.store.tensor(indices[start : start + batch_size])
        images = torch.stack([prepared.eval_policy(image, torch.Generator())[0] for image in batch])
        features = model.features(prepared.color(images.to(device))).float().flatten(1)
        top = features.max(dim=0).values
        result = top if result is None else torch.maximum(result, top)
    return result.cpu()


def summary(records: list[dict[str, float]]) -> dict[str, float | None]:
    """Compute a run's headline metrics from its epoch records; best_epoch minimises the validation error.

    Without a validation set, best_epoch minimises the training error instead.
    """
    last = records[-1]
    has_val = not math.isnan(last["val_error"])
    scores = [r["val_error"] if has_val else r["train_error"] for r in records]
    best = int(np.argmin(scores))
    # JSON has no NaN, so a run without a validation set reports null validation errors.
    return {
        "train_loss": last["train_loss"],
        "train_error": last["train_error"],
        "val_error": last["val_error"] if has_val else None,
        "best_epoch": records[best]["epoch"],
        "best_val_error": records[best]["val_error"] if has_val else None,
        "epochs": len(records),
        "images_per_s": float(np.mean([r["images_per_s"] for r in records])),
        "seconds": float(sum(r["seconds"] for r in records)),
    }


def write_plot(path: Path, records: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    atomic.write_text(path, buffer.getvalue())


def _log_describe(ctx, model: torch.nn.Module, input_shape: tuple[int, ...]) -> None:
    from cnnrepro.models import describe

    rows = describe.table(model, input_shape)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "describe.json"
        target.write_text(json.dumps(rows, indent=2, default=str), encoding="utf-8")
        ctx.run.log_artifact(target, "describe")


def train_stage(ctx, key: str, info: distributed.DistInfo) -> dict[str, float]:
    """Train one key and write models/<key>/model.pt, metrics/train/<key>.json and plots/train/<key>.csv."""
    from cnnrepro import models
    from cnnrepro.tracking.run import git_commit

    parsed = TrainKey.parse(key)
    section = ctx.params[parsed.section]
    dataset_name = DATA_FOLDERS[parsed.family][0]
    digest = ctx.data_digests.get(dataset_name, "nodigest")
    prepared = prepare(parsed.family, section, ctx.root, digest, info)

    build_kwargs = {
        "num_classes": len(prepared.store.classes),
        "image_size": section.image_size,
        "width": section.width,
        **prepared.build_options,
    }
    # Every GoogLeNet member starts from the weights of section.seed; only the data order differs.
    loop.seed_everything(section.seed)
    try:
        model = models.build(parsed.family, **build_kwargs)
    except ValueError as err:
        raise InputError(f"{parsed.section}: the model cannot be built with these params: {err}") from None
    run_seed = section.seed + parsed.member
    loop.seed_everything(run_seed)

    train_set = data.StoreDataset(prepared.store, prepared.train_indices, prepared.train_policy, run_seed)
    val_set = data.StoreDataset(prepared.store, prepared.val_indices, prepared.eval_policy, run_seed)
    settings = loop.LoopSettings.from_section(
        section,
        seed=run_seed,
        polyak_decay=section.polyak_decay if parsed.family == "googlenet" else None,
        name=key,
    )
    section_dump = params_module.dump(section)
    print_fp = checkpoint.fingerprint(key, section_dump, ctx.data_digests, info.world_size)
    resume = checkpoint.ResumeStore(paths.state_dir(ctx.root) / "checkpoints" / key / print_fp[:16])

    def on_epoch(record: dict[str, float]) -> None:
        ctx.run.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=int(record["epoch"]))

    result = loop.fit(
        model,
        train_set,
        val_set,
        settings,
        schedule=schedules.for_section(parsed.family, section),
        color=prepared.color,
        resume=resume,
        info=info,
        on_epoch=on_epoch,
    )
    metrics = summary(result.records)
    if not info.is_main:
        return metrics

    evaluated = result.evaluated
    extra: dict[str, Any] = {}
    if parsed.family == "deepface":
        extra["feature_max"] = feature_max(evaluated, prepared)
        # The training-set size of each section 5.1 ablation, for its results table.
        metrics.update(identities=len(prepared.store.classes), train_images=len(prepared.train_indices))
    channels = int(prepared.store.images.shape[1])
    saved = {
        "state_dict": {k: v.detach().cpu() for k, v in evaluated.state_dict().items()},
        "family": parsed.family,
        "build_kwargs": build_kwargs,
        "classes": list(prepared.store.classes),
        "normalization": {"mean": list(prepared.mean), "std": list(prepared.std)},
        "input_shape": [channels, section.image_size, section.image_size],
        "evaluation": prepared.evaluation,
        "params": section_dump,
        "seed": run_seed,
        "git_commit": git_commit(ctx.root),
        **extra,
    }
    with atomic.atomic_dir(ctx.root / "models" / key) as folder:
        torch.save(saved, folder / checkpoint.MODEL_FILE)
        manifest.write(folder)
    atomic.write_json(ctx.root / "metrics" / "train" / f"{key}.json", metrics)
    write_plot(ctx.root / "plots" / "train" / f"{key}.csv", result.records)

    cpu_model = evaluated.to("cpu").eval()
    try:
        _log_describe(ctx, cpu_model, (1, channels, section.image_size, section.image_size))
    except (ImportError, AttributeError) as err:
        log.warning("no layer table logged for %s: %s", key, err)
    ctx.run.log_model(cpu_model, name=key)
    resume.clear()
    return metrics
