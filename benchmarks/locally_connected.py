"""Time `LocallyConnected2d` (forward + backward) and its peak memory against a plain unfold-plus-einsum layer.

Run from the repository root:

    PYTHONPATH=src python benchmarks/locally_connected.py [--batch 32] [--threads 1] [--device cpu]

Shapes: DeepFace's L4 (16 x 63 x 63 input, 16 filters of 9x9 at 55 x 55 positions) and the same layer in the
CPU profile (image_size 76, width 0.25: 4 x 25 x 25 input). Peak memory is the CUDA allocator's peak on a GPU
and the growth of the process's peak resident set size on CPU (a coarse measure: it only ever rises, so the
layer run first is measured first at each shape).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from cnnrepro.models.layers import LocallyConnected2d

# name: (in_channels, out_channels, input side, kernel, stride)
SHAPES = {
    "deepface-L4": (16, 16, 63, 9, 1),
    "cpu-profile-L4": (4, 4, 25, 9, 1),
}


def einsum_baseline(layer: LocallyConnected2d, x: torch.Tensor) -> torch.Tensor:
    """The straightforward version: `F.unfold` to N x K x L, then one einsum with the L x K x O weight."""
    cols = F.unfold(x, layer.kernel_size, stride=layer.stride)  # N x K x L
    out = torch.einsum("nkl,lko->nol", cols, layer.weight)  # N x O x L
    return out.reshape(x.shape[0], layer.out_channels, *layer.output_size) + layer.bias


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(forward, layer, x, repeats: int) -> tuple[float, int]:
    """Return seconds per forward+backward step and the peak-memory growth in bytes."""
    device = x.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = peak_bytes(device) if device.type != "cuda" else torch.cuda.memory_allocated(device)
    forward(layer, x).sum().backward()  # warm-up
    times = []
    for _ in range(repeats):
        layer.zero_grad(set_to_none=True)
        x.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        forward(layer, x).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times), peak_bytes(device) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="images per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per layer; the minimum is printed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device, such as cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(f"batch {args.batch}, device {device}, threads {args.threads}")
    print(f"{'shape':16} {'layer':10} {'ms/step':>9} {'peak MiB':>9}")
    for name, (cin, cout, side, kernel, stride) in SHAPES.items():
        torch.manual_seed(0)
        layer = LocallyConnected2d(cin, cout, (side, side), kernel, stride).to(device)
        x = torch.randn(args.batch, cin, side, side, device=device, requires_grad=True)
        ours = measure(lambda m, t: m(t), layer, x, args.repeats)
        base = measure(einsum_baseline, layer, x, args.repeats)
        for label, (seconds, peak) in (("bmm", ours), ("einsum", base)):
            print(f"{name:16} {label:10} {seconds * 1e3:9.1f} {peak / 2**20:9.1f}")
        print(f"{name:16} speed-up {base[0] / ours[0]:.2f}x")


if __name__ == "__main__":
    main()
