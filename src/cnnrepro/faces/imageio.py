"""Reading face images as RGB uint8 arrays, whatever their mode (greyscale PGM, CMYK, 16-bit, palette)."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif"})


class UnreadableImageError(ValueError):
    """A file that PIL cannot decode into an image (corrupt, truncated, not an image, or a decompression bomb)."""


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Return (width, height) from the file header without decoding the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UnreadableImageError(f"{path}: cannot read the image header ({type(err).__name__}: {err})") from err


# NOTE: the data package's `cnnrepro.data.imagenet.load_rgb` is meant to be the one shared reader; this is a
# stand-in with the same contract until that module exists on this branch.
def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 RGB array; raise UnreadableImageError when that fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                    # 16-bit greyscale: keep the top 8 bits instead of letting convert() clip at 255.
                    wide = np.asarray(image, dtype=np.uint32)
                    grey = (wide >> 8).astype(np.uint8) if wide.max() > 255 else wide.astype(np.uint8)
                    return np.repeat(grey[:, :, None], 3, axis=2)
                return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise UnreadableImageError(f"{path}: cannot decode the image ({type(err).__name__}: {err})") from err
