"""Throughput of the batched aligner against a per-image loop of facenet-pytorch's `MTCNN.detect`.

Both run on the same LFW images in one process with the same torch thread count. The per-image loop decodes
each file and calls `MTCNN.detect(image, landmarks=True)`, which is detection only. The batched side does
everything the stage does (reading the packed images.tar, decoding in DataLoader workers, detection, warping
every size, writing the crop arrays); a third measurement times the batched detection alone on images decoded
beforehand.

    python benchmarks/align_throughput.py --images 200 --threads 1 --workers 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from cnnrepro.data import packed
from cnnrepro.faces.detector import BatchMTCNN
from cnnrepro.faces.imageio import load_rgb
from cnnrepro.faces.runner import AlignSettings, align_folder


def _default_lfw() -> Path:
    # The same rule as the tests: CNNREPRO_TEST_DATA, else shared/data beside the checkout.
    data = os.environ.get("CNNREPRO_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
    return Path(data) / "lfw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=_default_lfw(),
                        help="folder holding lfw-deepfunneled/<Name>/<Name>_NNNN.jpg (default: the test data's)")
    parser.add_argument("--images", type=int, default=200, help="number of images, taken in sorted order")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both sides")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader decoding processes (batched side)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per detection batch (batched side)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[152], help="crop sizes the batched side writes")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    files = sorted((args.lfw / "lfw-deepfunneled").glob("*/*.jpg"))[: args.images]
    if len(files) < args.images:
        parser.error(f"{args.lfw}/lfw-deepfunneled has only {len(files)} images, {args.images} requested")

    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(device="cpu")
    mtcnn.detect(Image.open(files[0]).convert("RGB"), landmarks=True)  # warm-up

    def per_image_loop() -> float:
        started = time.perf_counter()
        for file in files:
            mtcnn.detect(Image.open(file).convert("RGB"), landmarks=True)
        return len(files) / (time.perf_counter() - started)

    # The baseline runs before and after the batched side, so that a change in machine load between the two
    # measurements shows up as a spread instead of biasing the ratio.
    baseline = [per_image_loop()]
    # Detection alone, on the same decoded images: the part of the stage that the baseline also does.
    detector = BatchMTCNN(device="cpu")
    decoded = [torch.from_numpy(load_rgb(file)) for file in files]
    batches = [torch.stack(decoded[i : i + args.batch_size]) for i in range(0, len(decoded), args.batch_size)]
    detector.detect(batches[0][:1])  # warm-up
    started = time.perf_counter()
    for batch in batches:
        detector.detect(batch)
    detection_only = len(files) / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        for file in files:
            (raw / "images" / file.parent.name).mkdir(parents=True, exist_ok=True)
            (raw / "images" / file.parent.name / file.name).symlink_to(file)
        # The LFW download stage's layout: the image tree packed into one tar.
        packed.pack_folder(raw / "images", raw / packed.PACKED_IMAGES)
        shutil.rmtree(raw / "images")
        settings = AlignSettings(sizes=tuple(args.sizes), batch_size=args.batch_size, workers=args.workers,
                                 device="cpu")
        started = time.perf_counter()
        summary = align_folder(raw, Path(tmp) / "out", settings, state=Path(tmp) / "state", input_digest="bench",
                               progress=False)
        batched = len(files) / (time.perf_counter() - started)
    baseline.append(per_image_loop())
    per_image = sum(baseline) / len(baseline)

    print(f"images: {len(files)}, torch threads: {args.threads}, workers: {args.workers}, "
          f"batch size: {args.batch_size}")
    spread = f"before: {baseline[0]:.1f}, after: {baseline[1]:.1f}"
    print(f"per-image MTCNN.detect loop: {per_image:7.1f} images/s ({spread})")
    print(f"batched aligner (stage):     {batched:7.1f} images/s  ({summary['aligned']:.0f} aligned, "
          f"{summary['fallback']:.0f} fallback, {summary['errors']:.0f} errors)")
    print(f"batched detection only:      {detection_only:7.1f} images/s (decoded beforehand, no warp or writing)")
    print(f"ratio, stage: {batched / per_image:.2f}x; detection only: {detection_only / per_image:.2f}x")


if __name__ == "__main__":
    main()
