"""Per-image alignment: pick one detected face, map it onto the crop with align.method, warp every size.

The methods are `none` (the square around the detector box, resized), `2d` (a similarity fitting five
landmarks to the template) and `3d` (DeepFace's frontalization, in `frontal`). Images of one batch share
their size, so the warp of all of them runs as one `grid_sample` per output size. An image without a
detected face gets a centre crop instead, and its record marks it as a fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cnnrepro.faces import frontal, transform
from cnnrepro.faces.detector import Detections
from cnnrepro.faces.mesh import Landmarker

ALIGNED = "aligned"
FALLBACK = "fallback-center"
# align.method 3d only: a detected face whose 3D alignment failed and that got the 2D alignment instead.
FALLBACK_2D = "fallback-2d"
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


def box_transform(box: Sequence[float], size: int, margin: float = 0.0) -> np.ndarray:
    """Return the 2 x 3 map from the image onto a size x size crop of the square around a detector box.

    The square's side is the box's longer side, widened by `margin` of the crop side on each side, and it
    shares the box's centre. This is DeepFace's unaligned input: the detector's crop, without any warp.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) / (1.0 - 2.0 * margin)
    scale = size / side
    tx = (size - 1) / 2 - scale * (x1 + x2) / 2
    ty = (size - 1) / 2 - scale * (y1 + y2) / 2
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]])


@dataclass(frozen=True)
class FrontalOptions:
    """The inputs of align.method 3d beyond the 2D settings: landmark function, generic shape and switches."""

    landmarker: Landmarker
    shape: frontal.FaceShape
    residuals: bool = True
    mirror: bool = True
    # The face mesh runs on a square of this many box sides around the detector box, resized to mesh_size pixels.
    crop_scale: float = 2.0
    mesh_size: int = 256


def mesh_landmarks(
    images: torch.Tensor, boxes: Sequence[Sequence[float]], options: FrontalOptions
) -> list[np.ndarray | None]:
    """Run the face mesh on a square crop around each (image, box) pair; return landmarks in image pixels.

    `images` is the uint8 batch (n, H, W, 3) whose i-th image has the i-th box. An image without a mesh
    gives None.
    """
    if len(boxes) == 0:
        return []
    matrices = np.stack([box_transform(box, options.mesh_size, 0.5 - 0.5 / options.crop_scale) for box in boxes])
    pixels = images.permute(0, 3, 1, 2).float()
    crops = transform.to_uint8(transform.warp(pixels, matrices, options.mesh_size))
    found, points = options.landmarker(crops)
    landmarks: list[np.ndarray | None] = []
    for matrix, hit, mesh in zip(matrices, found, points, strict=True):
        if not hit:
            landmarks.append(None)
            continue
        scale = matrix[0, 0]
        in_image = np.empty_like(mesh)
        in_image[:, :2] = transform.apply(transform.invert(matrix), mesh[:, :2])
        in_image[:, 2] = mesh[:, 2] / scale
        landmarks.append(in_image)
    return landmarks


def align_batch(
    images: torch.Tensor,
    detections: Sequence[Detections],
    paths: Sequence[str],
    *,
    sizes: Sequence[int],
    select: str,
    margin: float,
    fallback_fraction: float,
    method: str = "2d",
    frontal_options: FrontalOptions | None = None,
) -> tuple[list[AlignmentRecord], dict[int, np.ndarray]]:
    """Align a uint8 batch (N, H, W, 3) given its detections, with align.method none, 2d or 3d.

    Returns one record per image and, per output size, the uint8 crops (N, size, size, 3).
    """
    if method not in ("none", "2d", "3d"):
        raise ValueError(f"invalid alignment method {method!r}; allowed: none, 2d, 3d")
    if method == "3d" and frontal_options is None:
        raise ValueError("align.method 3d needs frontal_options with a landmarker and a generic shape")
    count, height, width = images.shape[:3]
    records: list[AlignmentRecord] = []
    matrices: dict[int, list[np.ndarray | None]] = {size: [] for size in sizes}
    pending: list[int] = []
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
            if method == "none":
                matrices[size].append(box_transform(found.boxes[chosen], size, margin))
            elif method == "2d":
                matrices[size].append(transform.umeyama(landmarks, transform.template(size, margin)))
            else:
                matrices[size].append(None)
        if method == "3d":
            pending.append(i)

    sources = {size: [None if m is None else transform.source_points(m[None], size)[0] for m in matrices[size]]
               for size in sizes}
    hidden = {size: np.zeros((count, size, size), dtype=bool) for size in sizes}
    if pending:
        _frontalize_pending(images, records, pending, sizes, margin, frontal_options, sources, hidden)

    pixels = images.permute(0, 3, 1, 2).float()
    crops = {}
    for size in sizes:
        warped = transform.sample(pixels, np.stack(sources[size]))
        if method == "3d" and frontal_options.mirror:
            warped = frontal.mirror_hidden(warped, torch.as_tensor(hidden[size], device=warped.device))
        crops[size] = transform.to_uint8(warped)
    return records, crops


def _frontalize_pending(
    images: torch.Tensor,
    records: list[AlignmentRecord],
    pending: list[int],
    sizes: Sequence[int],
    margin: float,
    options: FrontalOptions,
    sources: dict[int, list[np.ndarray | None]],
    hidden: dict[int, np.ndarray],
) -> None:
    """Fill `sources` and `hidden` of the detected faces in `pending` with their frontal warps.

    A face without a face mesh, or whose camera fit fails, gets the 2D similarity alignment instead and the
    status FALLBACK_2D.
    """
    boxes = [records[i].box for i in pending]
    meshes = mesh_landmarks(images[pending], boxes, options)
    for i, mesh in zip(pending, meshes, strict=True):
        record = records[i]
        warps = None
        if mesh is None:
            record.message = "face mesh found no face in the detector box; used the 2D alignment"
        else:
            try:
                warps = {size: frontal.frontalize(options.shape, mesh[:, :2], size, margin, options.residuals)
                         for size in sizes}
            except ValueError as err:
                record.message = f"3D alignment failed ({err}); used the 2D alignment"
        if warps is None:
            record.status = FALLBACK_2D
            five = np.asarray(record.landmarks, dtype=np.float64).reshape(5, 2)
            for size in sizes:
                matrix = transform.umeyama(five, transform.template(size, margin))
                sources[size][i] = transform.source_points(matrix[None], size)[0]
            continue
        first = warps[sizes[0]]
        record.message = f"camera fit rms {first.rms:.2f} px, {first.hidden.mean():.1%} of pixels hidden"
        for size, warp in warps.items():
            sources[size][i] = warp.source
            hidden[size][i] = warp.hidden
