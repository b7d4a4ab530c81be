"""Test-time crops for ImageNet classification, built on tensors so that all crops of an image form one batch.

Three schemes, each at the 224-pixel geometry of AlexNet (Krizhevsky et al. 2012, section 4.1) and GoogLeNet
(Szegedy et al. 2015, section 7), scaled by `image_size / 224` for reduced-size profiles:

- 1 crop: resize the shorter side to 256, take the centre 224 square.
- 10 crops (AlexNet): resize the shorter side to 256, take its centre 256 square, then the 4 corner and the
  centre 224 crops of that square, each also mirrored.
- 144 crops (GoogLeNet): resize the shorter side to 256, 288, 320 and 352; take the left, centre and right
  squares (top, centre and bottom for portrait images); from each square the 4 corner and the centre 224 crops
  plus the whole square resized to 224; each also mirrored. 4 x 3 x 6 x 2 = 144.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SCHEMES = (1, 10, 144)
BASE_CROP = 224
BASE_RESIZE = 256
SCALES_144 = (256, 288, 320, 352)


def scaled(side: int, image_size: int) -> int:
    """Return `side` (in 224-pixel geometry) scaled to an `image_size` crop."""
    return max(1, round(side * image_size / BASE_CROP))


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a float (C, H, W) image with antialiased bilinear interpolation, as PIL's resize does."""
    if image.shape[-2:] == (height, width):
        return image
    out = F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out[0]


def resize_shorter(image: torch.Tensor, side: int) -> torch.Tensor:
    """Resize so that the shorter side is `side` pixels, keeping the aspect ratio."""
    height, width = image.shape[-2:]
    if height <= width:
        return resize(image, side, max(side, round(width * side / height)))
    return resize(image, max(side, round(height * side / width)), side)


def _square(image: torch.Tensor, position: str) -> torch.Tensor:
    """Return the left/centre/right (or top/centre/bottom) square of an image."""
    height, width = image.shape[-2:]
    side = min(height, width)
    offset = {"start": 0, "centre": (max(height, width) - side) // 2, "end": max(height, width) - side}[position]
    if width >= height:
        return image[:, :, offset : offset + side]
    return image[:, offset : offset + side, :]


def _five(square: torch.Tensor, crop: int) -> list[torch.Tensor]:
    """Return the 4 corner crops and the centre crop of a square image."""
    height, width = square.shape[-2:]
    top, left = (height - crop) // 2, (width - crop) // 2
    return [
        square[:, :crop, :crop],
        square[:, :crop, width - crop :],
        square[:, height - crop :, :crop],
        square[:, height - crop :, width - crop :],
        square[:, top : top + crop, left : left + crop],
    ]


def _with_mirrors(crops: list[torch.Tensor]) -> torch.Tensor:
    stacked = torch.stack(crops)
    return torch.cat([stacked, stacked.flip(-1)])


def multicrop(image: torch.Tensor, scheme: int, image_size: int) -> torch.Tensor:
    """Return the (n, C, image_size, image_size) crops of one float (C, H, W) image for a crop scheme."""
    if scheme not in SCHEMES:
        raise ValueError(f"crop scheme {scheme} is not supported; use one of {SCHEMES}")
    crop = image_size
    if scheme == 1:
        resized = resize_shorter(image, scaled(BASE_RESIZE, image_size))
        return _five(_square(resized, "centre"), crop)[4][None]
    if scheme == 10:
        resized = resize_shorter(image, scaled(BASE_RESIZE, image_size))
        return _with_mirrors(_five(_square(resized, "centre"), crop))
    crops = []
    for scale in SCALES_144:
        resized = resize_shorter(image, scaled(scale, image_size))
        for position in ("start", "centre", "end"):
            square = _square(resized, position)
            crops += _five(square, crop)
            crops.append(resize(square, crop, crop))
    return _with_mirrors(crops)


def to_float(image: torch.Tensor) -> torch.Tensor:
    """Convert a uint8 (C, H, W) image to float in [0, 1]."""
    return image.float().div_(255.0) if image.dtype == torch.uint8 else image.float()
