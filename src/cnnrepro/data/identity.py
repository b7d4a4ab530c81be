"""Identity-labelled face sets laid out as `<identity>/<image>`, such as ORL, CASIA-WebFace or aligned crops."""

from __future__ import annotations

import logging
from pathlib import Path

from cnnrepro.data.imagenet import Item
from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".webp"}


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def scan(folder: Path) -> tuple[list[Item], list[str]]:
    """List the images of `folder` and the sorted identity names; each item's label indexes that list.

    Identity folders without images are left out of the list (and logged), so every label has images.
    Files at the top level, such as manifest.json, are ignored. Raises InputError when no identity has images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"identity folder {folder} not found: run the download stage that writes it")
    per_identity: dict[str, list[Path]] = {}
    empty = []
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        images = sorted(p for p in entry.rglob("*") if p.is_file() and is_image_name(p.name))
        if images:
            per_identity[entry.name] = images
        else:
            empty.append(entry.name)
    if empty:
        log.warning("%s: %d identity folders contain no images and are skipped: %s", folder, len(empty), empty[:5])
    if not per_identity:
        raise InputError(f"no <identity>/<image> folders with images found in {folder} ({sorted(IMAGE_SUFFIXES)})")
    names = sorted(per_identity)
    items = [Item(path, label) for label, name in enumerate(names) for path in per_identity[name]]
    return items, names
