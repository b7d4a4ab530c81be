"""Time `LocallyConnected2d` (forward + backward) and its peak memory against a plain unfold-plus-einsum layer.

Run from the repository root:

    PYTHONPATH=src python benchmarks/locally_connected.py [--batch 32] [--threads 1] [--device cpu]

Shapes: DeepFace's L4 (16 x 63 x 63 input, 16 filters of 9x9 at 55 x 55 positions) and the same layer in the
CPU profile (image_size 76, width 0.25: 4 x 25 x 25 input). Memory is the CUDA allocator's peak above the
inputs and weights on a GPU. On CPU, which has no allocator statistics, it is the bytes of the tensors
autograd saves for the backward pass (parameters excluded), the part of training memory a layer adds.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cnnrepro.models.layers import LocallyConnected2d

# name: (in_channels, out_channels, input side, kernel, stride)
SHAPES = {
    "deepface-L4": (16, 16, 63, 9, 1),
    "cpu-profile-L4": (4, 4, 25, 9, 1),
}


class EinsumBaseline(torch.nn.Module):
    """The straightforward version: `F.unfold` to N x K x L, then one einsum with an L x K x O weight.

    It contains the same filters as `layer`, reordered to `F.unfold`'s (C, kh, kw) tap order.
    """

    def __init__(self, layer: LocallyConnected2d):
        super().__init__()
        self.kernel_size, self.stride = layer.kernel_size, layer.stride
        self.output_size, self.out_channels = layer.output_size, layer.out_channels
        k = layer.kernel_size
        weight = layer.weight.detach().view(-1, k, k, layer.in_channels, layer.out_channels)  # L x kh x kw x C x O
        self.weight = torch.nn.Parameter(weight.permute(0, 3, 1, 2, 4).reshape(layer.weight.shape).contiguous())
        self.bias = torch.nn.Parameter(layer.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = F.unfold(x, self.kernel_size, stride=self.stride)  # N x K x L
        out = torch.einsum("nkl,lko->nol", cols, self.weight)  # N x O x L
        return out.reshape(x.shape[0], self.out_channels, *self.output_size) + self.bias


def saved_bytes(layer, x) -> int:
    """Return the bytes autograd saves for backward in one forward pass, counting each storage once."""
    parameters = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters and tensor is not x:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        layer(x).sum().backward()
    return sum(storages.values())


def step_seconds(layer, x) -> float:
    """Return the wall time of one forward+backward pass."""
    layer.zero_grad(set_to_none=True)
    x.grad = None
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    layer(x).sum().backward()
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start


def memory_bytes(layer, x) -> int:
    """Return the memory of one forward+backward pass in bytes (see the module docstring)."""
    if x.device.type != "cuda":
        return saved_bytes(layer, x)
    layer.zero_grad(set_to_none=True)
    x.grad = None
    torch.cuda.synchronize(x.device)
    before = torch.cuda.memory_allocated(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    layer(x).sum().backward()
    torch.cuda.synchronize(x.device)
    return torch.cuda.max_memory_allocated(x.device) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="images per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per layer; the minimum is printed")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device, such as cpu or cuda")
    parser.add_argument(
        "--memory-format", choices=("channels_last", "contiguous"), default="channels_last",
        help="layout of the input both layers get (DeepFace trains channels_last by default)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(f"batch {args.batch}, device {device}, threads {args.threads}, input {args.memory_format}")
    print(f"{'shape':16} {'layer':10} {'ms/step':>9} {'mem MiB':>9}")
    for name, (cin, cout, side, kernel, stride) in SHAPES.items():
        torch.manual_seed(0)
        layer = LocallyConnected2d(cin, cout, (side, side), kernel, stride).to(device)
        x = torch.randn(args.batch, cin, side, side, device=device)
        if args.memory_format == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_()
        layers = {"bmm": layer, "einsum": EinsumBaseline(layer)}
        memory = {label: memory_bytes(module, x) for label, module in layers.items()}  # also the warm-up
        # The two layers take turns, so a change in the machine's load affects both alike.
        best = {label: float("inf") for label in layers}
        for _ in range(args.repeats):
            for label, module in layers.items():
                best[label] = min(best[label], step_seconds(module, x))
        for label in layers:
            print(f"{name:16} {label:10} {best[label] * 1e3:9.1f} {memory[label] / 2**20:9.1f}")
        print(f"{name:16} speed-up {best['einsum'] / best['bmm']:.2f}x")


if __name__ == "__main__":
    main()
