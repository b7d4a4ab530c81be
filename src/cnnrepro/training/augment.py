"""Training augmentation on uint8 tensors: per-image crops in the data workers, colour changes per batch.

Every random draw for image `i` in epoch `e` comes from a generator seeded by (seed, e, i). The result is the
same whatever the number of data workers or distributed ranks, and a resumed run draws the same crops as an
uninterrupted one. Colour changes are drawn per image with the crop and returned as a small parameter vector
(`COLOR_PARAMS` values), which `BatchColor` applies on the training device to the whole batch at once.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

# Per-image colour parameters: brightness, contrast, saturation factors, then 3 PCA alphas.
COLOR_PARAMS = 6
_IDENTITY_COLOR = (1.0, 1.0, 1.0, 0.0, 0.0, 0.0)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Return a 63-bit seed for one image of one epoch, independent of worker and rank layout."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the central size x size square, or resize when the image is smaller than `size`."""
    height, width = image.shape[-2:]
    if height < size or width < size:
        return TF.resize(image, [size, size], antialias=True)
    top, left = (height - size) // 2, (width - size) // 2
    return image[..., top : top + size, left : left + size]


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def random_crop_flip(image: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """AlexNet's training crop: a random size x size window of the stored image, mirrored with p = 0.5."""
    height, width = image.shape[-2:]
    if height < size or width < size:
        image = TF.resize(image, [max(size, height), max(size, width)], antialias=True)
        height, width = image.shape[-2:]
    top = int(torch.randint(0, height - size + 1, (), generator=generator))
    left = int(torch.randint(0, width - size + 1, (), generator=generator))
    image = image[..., top : top + size, left : left + size]
    if torch.rand((), generator=generator).item() < 0.5:
        image = image.flip(-1)
    return image


def random_resized_crop(
    image: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """GoogLeNet's training crop: a window of `scale` area and `ratio` aspect, resized to size, then mirrored.

    Up to 10 windows are drawn; if none fits in the image, the largest central window of clamped aspect is
    used (the rule torchvision's RandomResizedCrop follows too).
    """
    height, width = image.shape[-2:]
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    box = None
    for _ in range(10):
        target = area * _uniform(generator, scale[0], scale[1])
        aspect = math.exp(_uniform(generator, log_low, log_high))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            box = (top, left, h, w)
            break
    if box is None:
        aspect = width / height
        if aspect < ratio[0]:
            w, h = width, int(round(width / ratio[0]))
        elif aspect > ratio[1]:
            h, w = height, int(round(height * ratio[1]))
        else:
            w, h = width, height
        box = ((height - h) // 2, (width - w) // 2, h, w)
    image = TF.resized_crop(image, *box, size=[size, size], antialias=True)
    if torch.rand((), generator=generator).item() < 0.5:
        image = image.flip(-1)
    return image


@dataclass(frozen=True)
class CropPolicy:
    """How one training image is cropped and which colour parameters are drawn for it.

    mode: "center" (no augmentation), "crop_flip" (AlexNet) or "resized_crop" (GoogLeNet).
    """

    mode: str
    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    photometric: float = 0.0
    pca_std: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in ("center", "crop_flip", "resized_crop"):
            raise ValueError(f"crop mode {self.mode!r} is invalid; use center, crop_flip or resized_crop")

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "center":
            image = center_crop(image, self.size)
        elif self.mode == "crop_flip":
            image = random_crop_flip(image, self.size, generator)
        else:
            image = random_resized_crop(image, self.size, self.scale, self.ratio, generator)
        color = list(_IDENTITY_COLOR)
        if self.photometric > 0:
            low, high = 1.0 - self.photometric, 1.0 + self.photometric
            color[:3] = [_uniform(generator, low, high) for _ in range(3)]
        if self.pca_std > 0:
            color[3:] = (torch.randn(3, generator=generator) * self.pca_std).tolist()
        return image.contiguous(), torch.tensor(color, dtype=torch.float32)


def _gray(x: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


class BatchColor(torch.nn.Module):
    """Turn a uint8 batch into normalised floats, applying each image's colour parameters on the way.

    Photometric factors act on [0, 1] pixels (brightness scales, contrast and saturation blend with the grey
    mean and the grey image). PCA colour noise adds sum_k alpha_k * lambda_k * p_k to every pixel, with the
    eigenvalues lambda and eigenvectors p of the training set's RGB covariance (AlexNet, section 4.1).
    """

    def __init__(
        self,
        mean: list[float],
        std: list[float],
        *,
        photometric: bool = False,
        eigenvalues: torch.Tensor | None = None,
        eigenvectors: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        channels = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1))
        self.photometric = photometric
        self.pca = eigenvalues is not None and eigenvectors is not None
        if self.pca:
            self.register_buffer("eigenvalues", eigenvalues.float())
            self.register_buffer("eigenvectors", eigenvectors.float())

    def forward(self, images: torch.Tensor, color: torch.Tensor | None = None) -> torch.Tensor:
        x = images.float().div_(255.0)
        if color is not None and x.shape[1] == 3:
            color = color.to(x.device, torch.float32)
            if self.photometric:
                x = x * color[:, 0].view(-1, 1, 1, 1)
                mean = _gray(x).mean(dim=(2, 3), keepdim=True)
                x = (x - mean) * color[:, 1].view(-1, 1, 1, 1) + mean
                gray = _gray(x)
                x = (x - gray) * color[:, 2].view(-1, 1, 1, 1) + gray
                x = x.clamp_(0.0, 1.0)
            if self.pca:
                shift = (color[:, 3:6] * self.eigenvalues) @ self.eigenvectors.T
                x = x + shift.view(-1, 3, 1, 1)
        return (x - self.mean) / self.std


def rgb_pca(images: torch.Tensor, max_pixels: int = 2_000_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (eigenvalues, eigenvectors as columns) of the RGB covariance of uint8 images N x 3 x H x W."""
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)
    if pixels.shape[0] > max_pixels:
        step = pixels.shape[0] // max_pixels + 1
        pixels = pixels[::step]
    pixels = pixels.double() / 255.0
    covariance = torch.cov(pixels.T)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    return eigenvalues.float(), eigenvectors.float()


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float images N x C x H x W to size x size with antialiasing (used by the data preparation)."""
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
