"""Decoding of one image file into an 8-bit RGB PIL image, whatever its format, mode or misleading extension.

Real ImageNet and face collections contain greyscale and CMYK JPEGs, PNG files named `.JPEG`, and 16-bit PNGs;
all of them decode here to 8-bit RGB. Files that would exhaust memory or cannot be decoded raise InputError.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnrepro.errors import InputError

# The largest image accepted, in pixels: Pillow's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS,
# 89,478,485 in Pillow 10-13), about a 9459x9459 image or 268 MB as RGB. The check reads only the header.
# Pillow itself raises DecompressionBombError from Image.open above twice that size.
MAX_PIXELS = 89_478_485
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "I":
        # Pillow's convert("L") clips 16-bit values at 255; scale the full range down instead.
        values = np.asarray(image, dtype=np.int64)
        if image.mode != "I" or values.max(initial=0) > 255:
            values = values // 257
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    # CMYK, YCbCr, LAB, L, LA, 1, P and RGBA convert directly; alpha is dropped.
    return image.convert("RGB")


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Decode `path` into an 8-bit RGB image, identifying the format from the content, not the extension.

    Raises InputError naming the file when it is empty, truncated, not an image, or larger than MAX_PIXELS.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"image {path} not found: run the download stage again") from None
    if size == 0:
        raise InputError(f"image {path} is an empty file: delete it or download the dataset again")
    return _decode_rgb(path, path)


def load_rgb_bytes(data: bytes, name: str) -> Image.Image:
    """Decode an encoded image held in memory, such as a tar member, like `load_rgb`; `name` goes into errors."""
    if not data:
        raise InputError(f"image {name} is an empty file: delete it or download the dataset again")
    return _decode_rgb(io.BytesIO(data), name)


def _decode_rgb(source: Path | io.BytesIO, path: object) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Images above MAX_PIXELS are rejected below with their size; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise InputError(
                        f"image {path} claims {width}x{height} pixels, more than the limit of {MAX_PIXELS}: "
                        f"it is corrupt or a decompression bomb; remove it from the dataset"
                    )
                image.load()
                return _to_rgb(image)
    except InputError:
        raise
    except Image.DecompressionBombError as err:
        raise InputError(f"image {path} is rejected as a decompression bomb ({err}); remove it") from None
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image file Pillow can read: remove it or replace it") from None
    except (OSError, SyntaxError, ValueError) as err:
        # Pillow raises OSError for truncated data ("image file is truncated") and SyntaxError for some
        # malformed headers.
        raise InputError(f"image {path} could not be decoded ({err}): it is truncated or corrupt") from None
