"""Per-image alignment: pick one detected face, fit its landmarks to the template, warp crops of every size.

Images of one batch share their size, so the warp of all of them runs as one `grid_sample` per output size.
An image without a detected face gets a centre crop instead, and its record marks it as a fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cnnrepro.faces import transform
from cnnrepro.faces.detector import Detections

ALIGNED = "aligned"
FALLBACK = "fallback-center"
ERROR = "error"


@dataclass
class AlignmentRecord:
    """One row of the alignment report."""

    path: str
    status: str
    score: float | None = None
    box: tuple[float, float, float, float] | None = None
    landmarks: tuple[float, ...] | None = None
    faces: int = 0
    chosen: int | None = None
    message: str = ""


def choose_face(detections: Detections, height: int, width: int, rule: str) -> int | None:
    """Return the index of the face to align: the largest box, or the box whose centre is nearest the image's."""
    if len(detections) == 0:
        return None
    boxes = detections.boxes.astype(np.float64)
    if rule == "largest":
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return int(np.argmax(area))
    if rule == "central":
        centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 - (width - 1) / 2
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 - (height - 1) / 2
        return int(np.argmin(centre_x**2 + centre_y**2))
    raise ValueError(f"unknown face selection rule {rule!r}; allowed: largest, central")


def align_batch(
    images: torch.Tensor,
    detections: Sequence[Detections],
    paths: Sequence[str],
    *,
    sizes: Sequence[int],
    select: str,
    margin: float,
    fallback_fraction: float,
) -> tuple[list[AlignmentRecord], dict[int, np.ndarray]]:
    """Align a uint8 batch (N, H, W, 3) given its detections.

    Returns one record per image and, per output size, the uint8 crops (N, size, size, 3).
    """
    count, height, width = images.shape[:3]
    records: list[AlignmentRecord] = []
    matrices: dict[int, list[np.ndarray]] = {size: [] for size in sizes}
    for i in range(count):
        found = detections[i]
        chosen = choose_face(found, height, width, select)
        if chosen is None:
            records.append(AlignmentRecord(path=paths[i], status=FALLBACK, message="no face detected"))
            for size in sizes:
                matrices[size].append(transform.center_crop_transform(height, width, size, fallback_fraction))
            continue
        landmarks = found.landmarks[chosen].astype(np.float64)
        records.append(
            AlignmentRecord(
                path=paths[i],
                status=ALIGNED,
                score=float(found.scores[chosen]),
                box=tuple(float(v) for v in found.boxes[chosen]),
                landmarks=tuple(float(v) for v in landmarks.reshape(-1)),
                faces=len(found),
                chosen=chosen,
            )
        )
        for size in sizes:
            matrices[size].append(transform.umeyama(landmarks, transform.template(size, margin)))

    pixels = images.permute(0, 3, 1, 2).float()
    crops = {size: transform.to_uint8(transform.warp(pixels, np.stack(matrices[size]), size)) for size in sizes}
    return records, crops
