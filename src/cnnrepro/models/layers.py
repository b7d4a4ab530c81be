"""Layers the four papers need that core PyTorch lacks.

- `LocallyConnected2d`: a convolution without weight sharing (DeepFace's L4-L6). Core PyTorch has no such
  layer. This one gathers patches with `Tensor.unfold` and runs one batched matrix multiply over output
  positions, which `benchmarks/locally_connected.py` measures against a plain unfold-plus-einsum version.
- `ScaledTanh`: LeNet-5's squashing function f(a) = A tanh(S a).
- `LocalResponseNorm`: the same function as `nn.LocalResponseNorm`, computed with a banded 1x1 convolution,
  which runs as one matrix multiply per pixel and is several times faster on CPU, most of all with
  channels_last tensors.

Every layer with weights has a `connections(output)` method for `cnnrepro.models.describe`. It returns the
number of input-to-output links per sample, counting one per bias, which is how LeNet-5's paper counts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LocalResponseNorm", "LocallyConnected2d", "ScaledTanh", "conv_output_size"]


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, ceil: bool = False) -> int:
    """Return the output side length of a convolution or pooling window over `size` pixels."""
    span = size + 2 * padding - kernel
    steps = -(-span // stride) if ceil else span // stride
    return steps + 1


class ScaledTanh(nn.Module):
    """f(a) = amplitude * tanh(slope * a); LeNet-5 uses amplitude 1.7159 and slope 2/3 so that f(+-1) = +-1."""

    def __init__(self, amplitude: float = 1.7159, slope: float = 2.0 / 3.0):
        super().__init__()
        self.amplitude = amplitude
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)

    def extra_repr(self) -> str:
        return f"amplitude={self.amplitude}, slope={self.slope:.4f}"


class _LocalResponseNormFunction(torch.autograd.Function):
    """y = x * s^-beta with s = k + band * x^2, and a hand-written backward that makes fewer passes than autograd.

    With d = s^-beta: dL/dx = dy * d - 2 beta x * band^T (dy * x * d / s). Double backward is not supported.
    """

    @staticmethod
    def forward(ctx, x, band, k, beta):
        s = F.conv2d(x * x, band).add_(k)  # N x C x H x W
        d = s.pow(-beta)
        ctx.save_for_backward(x, band, s, d)
        ctx.beta = beta
        return x * d

    @staticmethod
    def backward(ctx, grad_output):
        x, band, s, d = ctx.saved_tensors
        weighted = (grad_output * x).mul_(d).div_(s)
        spread = F.conv2d(weighted, band.transpose(0, 1))
        grad_input = torch.addcmul(grad_output * d, x, spread, value=-2.0 * ctx.beta)
        return grad_input, None, None, None


class LocalResponseNorm(nn.Module):
    """Across-channel LRN: b_c = a_c / (k + alpha / size * sum of a_j^2 over `size` channels around c)^beta.

    The arguments and the result equal `nn.LocalResponseNorm`'s (which also divides alpha by `size`). The
    window sum is a 1x1 convolution of a^2 with a fixed banded C x C matrix, built for `channels` inputs.
    """

    def __init__(self, channels: int, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        offsets = torch.arange(channels).view(1, -1) - torch.arange(channels).view(-1, 1)  # in - out
        # nn.LocalResponseNorm's window around channel c runs from c - size // 2 to c + (size - 1) // 2.
        band = (offsets >= -(size // 2)) & (offsets <= (size - 1) // 2)
        self.register_buffer("band", (band.float() * (alpha / size)).view(channels, channels, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LocalResponseNormFunction.apply(x, self.band.to(x.dtype), self.k, self.beta)

    def extra_repr(self) -> str:
        return f"{self.band.shape[0]}, size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class LocallyConnected2d(nn.Module):
    """A 2D convolution whose filters differ at every output position (untied weights and biases).

    Args:
        in_channels: channels of the input.
        out_channels: filters per output position.
        input_size: (height, width) of the input. The input size is fixed when the layer is built,
            because the layer owns one filter bank per output position.
        kernel_size: filter side length.
        stride: step between neighbouring positions.

    The weight has shape (positions, k * k * in_channels, out_channels). Its position index is
    row * out_w + column, and the filter taps are ordered (kernel row, kernel column, input channel). The bias
    has shape (out_channels, out_h, out_w). Forward: the input's patches become a (positions, N, k * k * C)
    tensor in one copy, and `torch.bmm` multiplies each position's patches by its own filter bank. The
    output is a strided view whose channels are contiguous per pixel, like channels_last.
    """

    def __init__(
        self, in_channels: int, out_channels: int, input_size: tuple[int, int], kernel_size: int, stride: int = 1
    ):
        super().__init__()
        height, width = input_size
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.input_size = (height, width)
        self.kernel_size = kernel_size
        self.stride = stride
        self.output_size = (
            conv_output_size(height, kernel_size, stride),
            conv_output_size(width, kernel_size, stride),
        )
        if min(self.output_size) < 1:
            raise ValueError(
                f"LocallyConnected2d: input {height}x{width} is smaller than the {kernel_size}x{kernel_size} "
                f"kernel; use a larger input"
            )
        positions = self.output_size[0] * self.output_size[1]
        fan_in = in_channels * kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(positions, fan_in, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels, *self.output_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same bounds as nn.Conv2d's default (Kaiming uniform with a = sqrt(5)); the models re-initialise.
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, H, W = x.shape
        if (H, W) != self.input_size or C != self.in_channels:
            raise ValueError(
                f"LocallyConnected2d expects input N x {self.in_channels} x {self.input_size[0]} x "
                f"{self.input_size[1]}, got {tuple(x.shape)}; build the layer for this input size"
            )
        k, s = self.kernel_size, self.stride
        out_h, out_w = self.output_size
        # Patches are ordered (kh, kw, C) so that the copy below reads runs of k * C contiguous values from a
        # channels_last input (and from this layer's own output, which is laid out that way).
        patches = x.permute(0, 2, 3, 1).unfold(1, k, s).unfold(2, k, s)  # N x out_h x out_w x C x k x k (a view)
        patches = patches.permute(1, 2, 0, 4, 5, 3).reshape(out_h * out_w, N, k * k * C)  # L x N x kkC
        out = torch.bmm(patches, self.weight)  # L x N x out_channels
        out = out.view(out_h, out_w, N, self.out_channels).permute(2, 3, 0, 1)  # N x out_channels x out_h x out_w
        return out + self.bias

    def connections(self, output: torch.Tensor) -> int:
        return output[0].numel() * (self.weight.shape[1] + 1)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, input_size={self.input_size}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, output_size={self.output_size}"
        )
