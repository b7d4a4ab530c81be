"""Similarity alignment: fit five landmarks onto a canonical template and warp with the inverse mapping.

The template is the five-point layout of insightface's ArcFace crops (112 x 112 pixels: eye centres, nose tip,
mouth corners), kept in fractions of the side so that it scales to any output size. A `margin` shrinks it
towards the centre, which leaves more of the head in the crop.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.functional import grid_sample

# insightface ArcFace template in pixels of a 112 x 112 crop, pixel centres at integer coordinates.
_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
TEMPLATE_UNIT = (_ARCFACE_112 + 0.5) / 112.0


def template(size: int, margin: float = 0.0) -> np.ndarray:
    """Return the (5, 2) template in pixel coordinates of a size x size crop (pixel centres at integers)."""
    unit = 0.5 + (TEMPLATE_UNIT - 0.5) * (1.0 - 2.0 * margin)
    return unit * size - 0.5


def umeyama(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Return the 2 x 3 similarity (rotation, uniform scale, translation) that best maps source onto target.

    Least squares as derived by Umeyama (1991), with the reflection case excluded. Points are (n, 2).
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - mean_s, target - mean_t
    covariance = dst.T @ src / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = (src**2).sum() / len(source)
    if variance == 0:
        raise ValueError("cannot fit a similarity to landmarks that all coincide")
    scale = (singular * sign).sum() / variance
    translation = mean_t - scale * rotation @ mean_s
    return np.hstack([scale * rotation, translation[:, None]])


def center_crop_transform(height: int, width: int, size: int, fraction: float = 1.0) -> np.ndarray:
    """Return the 2 x 3 map from the image onto a size x size crop of its central square.

    The square's side is `fraction` of the shorter image side.
    """
    side = min(height, width) * fraction
    scale = size / side
    # Pixel centres: source centre ((w - 1) / 2, (h - 1) / 2) maps to output centre ((size - 1) / 2, ...).
    tx = (size - 1) / 2 - scale * (width - 1) / 2
    ty = (size - 1) / 2 - scale * (height - 1) / 2
    return np.array([[scale, 0.0, tx], [0.0, scale, ty]])


def invert(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def warp(images: torch.Tensor, matrices: np.ndarray, size: int) -> torch.Tensor:
    """Warp a float batch (N, 3, H, W) into (N, 3, size, size) crops.

    `matrices` (N, 2, 3) map image pixels to crop pixels. Each crop pixel samples the image bilinearly at
    the exact inverse image of its centre; pixels that fall outside the image are black.
    """
    return sample(images, source_points(matrices, size))


def source_points(matrices: np.ndarray, size: int) -> np.ndarray:
    """Return the image pixel (x, y) that each pixel of a size x size crop samples: (N, size, size, 2)."""
    inverse = np.stack([invert(m) for m in matrices])  # crop -> image
    axis = np.arange(size, dtype=np.float64)
    gx, gy = np.meshgrid(axis, axis)
    ones = np.ones_like(gx)
    crop_points = np.stack([gx, gy, ones], axis=-1)  # (size, size, 3)
    return np.einsum("nij,hwj->nhwi", inverse, crop_points)


def sample(images: torch.Tensor, source: np.ndarray) -> torch.Tensor:
    """Sample a float batch (N, 3, H, W) bilinearly at image pixels `source` (N, S, S, 2); outside is black."""
    height, width = images.shape[2:]
    # The pixel -> [-1, 1] normalisation of grid_sample (align_corners=False).
    grid = np.empty_like(source)
    grid[..., 0] = (2.0 * source[..., 0] + 1.0) / width - 1.0
    grid[..., 1] = (2.0 * source[..., 1] + 1.0) / height - 1.0
    grid_t = torch.as_tensor(grid, dtype=images.dtype, device=images.device)
    return grid_sample(images, grid_t, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_uint8(crops: torch.Tensor) -> np.ndarray:
    """Round float crops (N, 3, S, S) in 0..255 to uint8 arrays (N, S, S, 3)."""
    return crops.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
