"""Reading face images for the aligner, from a folder or a packed tar: header sizes for batching, RGB pixels."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from cnnrepro.data import images, packed
from cnnrepro.errors import InputError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".tif", ".tiff", ".webp", ".gif"})


class UnreadableImageError(ValueError):
    """A file that cannot be decoded into an image (corrupt, truncated, not an image, or a decompression bomb)."""


def image_size(path: str | os.PathLike[str] | io.BytesIO, name: str | None = None) -> tuple[int, int]:
    """Return (width, height) from the header of a file or an in-memory image without decoding the pixels."""
    name = name or str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise UnreadableImageError(f"{name}: cannot read the image header ({type(err).__name__}: {err})") from err


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to an (H, W, 3) uint8 RGB array; raise UnreadableImageError when that fails.

    Greyscale, CMYK, 16-bit and palette images are converted by `cnnrepro.data.images.load_rgb`.
    """
    try:
        return np.asarray(images.load_rgb(path), dtype=np.uint8).copy()
    except InputError as err:
        raise UnreadableImageError(str(err)) from err


class FolderImages:
    """Images stored as files under `root`, addressed by their relative path `<identity>/<file>`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __str__(self) -> str:
        return str(self.root)

    def list(self) -> list[str]:
        """Return the relative paths `<identity>/<file>` of the image files one level down, sorted."""
        if not self.root.is_dir():
            raise InputError(
                f"{self.root} is not a folder: run the download stage first (dvc repro download@<dataset>)"
            )
        found = []
        for identity in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for file in sorted(identity.iterdir()):
                if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(f"{identity.name}/{file.name}")
        return found

    def size(self, rel: str) -> tuple[int, int]:
        return image_size(self.root / rel)

    def load(self, rel: str) -> np.ndarray:
        return load_rgb(self.root / rel)


class TarImages:
    """Images stored as members `<identity>/<file>` of an uncompressed tar (`cnnrepro.data.packed`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.members = packed.TarMembers(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def list(self) -> list[str]:
        """Return the member names of the form `<identity>/<file>` with an image suffix, sorted."""
        return [
            name for name in self.members.names()
            if name.count("/") == 1 and Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]

    def size(self, rel: str) -> tuple[int, int]:
        return image_size(io.BytesIO(self.members.read(rel)), f"{self.path}:{rel}")

    def load(self, rel: str) -> np.ndarray:
        try:
            image = images.load_rgb_bytes(self.members.read(rel), f"{self.path}:{rel}")
        except InputError as err:
            raise UnreadableImageError(str(err)) from err
        return np.asarray(image, dtype=np.uint8).copy()
