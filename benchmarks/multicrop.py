"""Time 144-crop evaluation: tensor-built crops in one batch against a one-crop-at-a-time PIL loop.

The loop is how a per-crop evaluation script is usually written: for each crop, resize and crop the PIL image,
convert it to a tensor, normalise it and run the network on a batch of one. The batched path builds all crops
of an image on tensors (`cnnrepro.evaluation.crops`) and runs them through the network together, in the
channels-last layout that `classification.predict` uses. Both use this
project's GoogLeNet, by default at the quick profile's size (112-pixel crops, width 0.25). Prints crops per second for each and their ratio.

Run: python benchmarks/multicrop.py [--images N] [--image-size S] [--threads T]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from cnnrepro.evaluation import crops
from cnnrepro.evaluation.classification import Normalisation

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def network(image_size: int, width: float) -> torch.nn.Module:
    """Return this project's GoogLeNet (10 classes) in eval mode, at the given input size and width."""
    from cnnrepro import models

    return models.build("googlenet", num_classes=10, image_size=image_size, width=width).eval()


def pil_crop_boxes(width: int, height: int, image_size: int) -> list[tuple[int, tuple[int, int, int, int], bool]]:
    """Return (shorter side, crop box on the resized image, resize-whole-square) for the 72 unmirrored crops."""
    boxes = []
    for scale in crops.SCALES_144:
        side = crops.scaled(scale, image_size)
        new_w, new_h = (max(side, round(width * side / height)), side) if height <= width else (side, max(side, round(height * side / width)))
        long = max(new_w, new_h)
        for offset in (0, (long - side) // 2, long - side):
            x0, y0 = (offset, 0) if new_w >= new_h else (0, offset)
            c = image_size
            inner = [(0, 0), (side - c, 0), (0, side - c), (side - c, side - c), ((side - c) // 2, (side - c) // 2)]
            for dx, dy in inner:
                boxes.append((side, (x0 + dx, y0 + dy, x0 + dx + c, y0 + dy + c), False))
            boxes.append((side, (x0, y0, x0 + side, y0 + side), True))
    return boxes


@torch.inference_mode()
def loop_one_at_a_time(model, images: list[Image.Image], image_size: int) -> int:
    count = 0
    for image in images:
        for side, box, whole in pil_crop_boxes(*image.size, image_size):
            resized = TF.resize(image, side)
            for mirror in (False, True):
                patch = resized.crop(box)
                if whole:
                    patch = patch.resize((image_size, image_size), Image.BILINEAR)
                if mirror:
                    patch = TF.hflip(patch)
                tensor = TF.normalize(TF.to_tensor(patch), MEAN, STD)
                torch.softmax(model(tensor[None]), dim=1)
                count += 1
    return count


@torch.inference_mode()
def batched(model, images: list[Image.Image], image_size: int) -> int:
    normalisation = Normalisation(MEAN, STD)
    count = 0
    for image in images:
        tensor = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
        batch = normalisation.apply(crops.multicrop(crops.to_float(tensor), 144, image_size))
        batch = batch.contiguous(memory_format=torch.channels_last)
        torch.softmax(model(batch), dim=1).mean(dim=0)
        count += batch.shape[0]
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="synthetic 500x375 RGB images to evaluate")
    parser.add_argument("--image-size", type=int, default=112, help="crop side in pixels")
    parser.add_argument("--width", type=float, default=0.25, help="GoogLeNet channel-width multiplier")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)) for _ in range(args.images)]
    model = network(args.image_size, args.width)
    loop_one_at_a_time(model, images[:1], args.image_size)  # warm-up
    start = time.perf_counter()
    n_loop = loop_one_at_a_time(model, images, args.image_size)
    loop_rate = n_loop / (time.perf_counter() - start)

    # The batched path, like classification.predict, runs in the channels-last layout.
    model = model.to(memory_format=torch.channels_last)
    batched(model, images[:1], args.image_size)  # warm-up
    start = time.perf_counter()
    n_batched = batched(model, images, args.image_size)
    batched_rate = n_batched / (time.perf_counter() - start)

    print(f"GoogLeNet width {args.width}, crop size {args.image_size}, images {args.images} x 144 crops, "
          f"threads {args.threads}")
    print(f"one crop at a time (PIL): {loop_rate:9.1f} crops/s")
    print(f"batched tensor crops    : {batched_rate:9.1f} crops/s")
    print(f"speed-up                : {batched_rate / loop_rate:9.1f}x")


if __name__ == "__main__":
    main()
