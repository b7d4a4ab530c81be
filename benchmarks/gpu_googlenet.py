"""GoogLeNet training throughput on one GPU, and its model FLOP utilisation (MFU).

    python benchmarks/gpu_googlenet.py --batch 256 --steps 50

Trains the paper GoogLeNet (aux heads on, 1000 classes) at 224x224 with bf16 autocast and channels_last on
synthetic data, and prints images/s and MFU = achieved model FLOP/s over the GPU's peak dense bf16 FLOP/s. Model
FLOPs per image are 3 x 2 x the forward multiply-adds that `cnnrepro describe` counts (forward plus a backward of
twice the forward's cost). Without a CUDA device it prints that the figure is unmeasured and exits with 2: the
number is never estimated.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from cnnrepro import models
from cnnrepro.models import describe

# Peak dense bf16 tensor-core FLOP/s from the vendors' data sheets (without sparsity).
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10": 125.0,
}


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS.items():
        if all(part in name for part in key.split()):
            return value
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="images per training step")
    parser.add_argument("--steps", type=int, default=50, help="timed steps, after --warmup steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU peak bf16 TFLOP/s, if not in the table")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("GoogLeNet GPU throughput: unmeasured (no CUDA device on this machine)")
        return 2
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    model = models.build("googlenet", num_classes=1000, image_size=224)
    rows = describe.table(model.eval(), (1, 3, 224, 224))
    forward_macs = describe.totals(rows)["macs"]
    flops_per_image = 3 * 2 * forward_macs

    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(args.batch, 3, 224, 224, device=device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (args.batch,), device=device)

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model.loss(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started

    rate = args.batch * args.steps / seconds
    achieved = rate * flops_per_image / 1e12
    peak = peak_tflops(name, args.peak_tflops)
    print(f"GPU: {name}; batch {args.batch}; bf16 autocast; channels_last; aux heads on")
    print(f"GoogLeNet training throughput: {rate:,.0f} images/s")
    print(f"model FLOPs per image: {flops_per_image / 1e9:.2f} GFLOP (3 x 2 x {forward_macs / 1e9:.3f} G MACs)")
    if peak is None:
        print(f"achieved {achieved:.1f} TFLOP/s; MFU unknown: pass --peak-tflops for {name}")
    else:
        print(f"achieved {achieved:.1f} TFLOP/s of {peak:.0f} peak: MFU {achieved / peak:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
