"""Reading face images for the aligner: header sizes for batching, and pixels as RGB uint8 arrays."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image

from cnnrepro.data import images
from cnnrepro.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif"})


class UnreadableImageError(ValueError):
    """A file that cannot be decoded into an image (corrupt, truncated, not an image, or a decompression bomb)."""


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Return (width, height) from the file header without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise UnreadableImageError(f"{path}: cannot read the image header ({type(err).__name__}: {err})") from err


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 RGB array; raise UnreadableImageError when that fails.

    Greyscale, CMYK, 16-bit and palette images are converted by `cnnrepro.data.images.load_rgb`.
    """
    try:
        return np.asarray(images.load_rgb(path), dtype=np.uint8).copy()
    except InputError as err:
        raise UnreadableImageError(str(err)) from err
