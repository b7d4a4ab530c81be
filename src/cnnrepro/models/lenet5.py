"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document recognition",
Proc. IEEE 86(11), 1998, section II-B and appendix A).

Layers: 32x32 input, C1 (6 maps, 5x5), S2 (trainable 2x2 subsampling), C3 (16 maps, 5x5, reading the S2 maps
listed in the paper's Table I), S4, C5 (120 maps, 5x5 over all 16 S4 maps), F6 (84 units), and 10 Euclidean
RBF output units whose prototypes are fixed +-1 patterns of 7x12 class bitmaps. Totals: 60,000 trainable
parameters and 340,908 connections, as the paper states.

Deviations and choices:
- The paper's class bitmaps are not printed in a usable form, so `DIGIT_BITMAPS` draws its own stylised
  digits on the 7x12 grid.
- Loss: cross-entropy over the negated RBF distances. This is the paper's MAP criterion (its Eq. 9) without
  the constant e^-j term, that is, with j large.
- Training uses SGD from the training stage, not the paper's stochastic diagonal Levenberg-Marquardt.
- `activation="relu"` replaces the scaled tanh in every layer and starts from He-normal weights (an option,
  not in the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnrepro.models.layers import ScaledTanh

__all__ = ["LeNet5", "lenet5", "DIGIT_BITMAPS", "C3_TABLE"]

# C3 map -> the S2 maps it reads (the paper's Table I).
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip

# 7 wide x 12 tall; '#' is +1 and '.' is -1 in the RBF prototype.
DIGIT_BITMAPS: tuple[str, ...] = (
    ".#####.|##...##|##...##|##..###|##.#.##|##.#.##|###..##|##...##|##...##|##...##|.#####.|.......",
    "...##..|..###..|.####..|...##..|...##..|...##..|...##..|...##..|...##..|...##..|.######|.......",
    ".#####.|##...##|.....##|.....##|....##.|...##..|..##...|.##....|##.....|##.....|#######|.......",
    ".#####.|##...##|.....##|.....##|..####.|.....##|.....##|.....##|.....##|##...##|.#####.|.......",
    "....##.|...###.|..####.|.##.##.|##..##.|##..##.|#######|....##.|....##.|....##.|...####|.......",
    "#######|##.....|##.....|##.....|######.|.....##|.....##|.....##|.....##|##...##|.#####.|.......",
    "..####.|.##....|##.....|##.....|######.|##...##|##...##|##...##|##...##|##...##|.#####.|.......",
    "#######|##...##|.....##|....##.|....##.|...##..|...##..|..##...|..##...|..##...|..##...|.......",
    ".#####.|##...##|##...##|.##.##.|..###..|.##.##.|##...##|##...##|##...##|##...##|.#####.|.......",
    ".#####.|##...##|##...##|##...##|##...##|.######|.....##|.....##|.....##|....##.|.####..|.......",
)


def bitmap_prototypes() -> torch.Tensor:
    """Return the 10 x 84 matrix of +-1 RBF prototypes, one row per digit, read row by row from the bitmap."""
    rows = []
    for bitmap in DIGIT_BITMAPS:
        pixels = bitmap.replace("|", "")
        rows.append([1.0 if pixel == "#" else -1.0 for pixel in pixels])
    return torch.tensor(rows)


class Subsampling(nn.Module):
    """S2/S4: the sum of each 2x2 block times one trainable coefficient per map, plus one bias per map."""

    def __init__(self, channels: int):
        super().__init__()
        self.coefficient = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summed = F.avg_pool2d(x, 2) * 4.0  # N x C x H/2 x W/2
        return summed * self.coefficient.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def connections(self, output: torch.Tensor) -> int:
        return output[0].numel() * 5  # 4 inputs and the bias per unit


class PartialConv2d(nn.Module):
    """C3: a 5x5 convolution in which output map i reads only the input maps in `table[i]`.

    Only the connected kernels are parameters (1,500 weights and 16 biases for Table I), so the trainable
    count matches the paper. Forward scatters them into a dense kernel that is zero elsewhere.
    """

    def __init__(self, in_channels: int, table: tuple[tuple[int, ...], ...], kernel_size: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = len(table)
        self.kernel_size = kernel_size
        area = kernel_size * kernel_size
        index = []
        for out_map, in_maps in enumerate(table):
            for in_map in in_maps:
                start = (out_map * in_channels + in_map) * area
                index.extend(range(start, start + area))
        self.register_buffer("index", torch.tensor(index), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(index)))
        self.bias = nn.Parameter(torch.zeros(self.out_channels))
        self.fan_in = tuple(len(maps) * area for maps in table)  # weights per output map

    def dense_weight(self) -> torch.Tensor:
        full = self.weight.new_zeros(self.out_channels * self.in_channels * self.kernel_size**2)
        full = full.index_put((self.index,), self.weight)
        return full.view(self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def connections(self, output: torch.Tensor) -> int:
        positions = output.shape[2] * output.shape[3]
        return positions * sum(fan_in + 1 for fan_in in self.fan_in)


class RBFOutput(nn.Module):
    """Euclidean RBF units with fixed prototypes; returns the negated squared distances as logits."""

    def __init__(self, prototypes: torch.Tensor):
        super().__init__()
        self.register_buffer("prototypes", prototypes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ||x - w||^2 summed over the 84 inputs, for every (sample, class) pair.
        distances = (x.unsqueeze(1) - self.prototypes.unsqueeze(0)).pow(2).sum(dim=2)  # N x classes
        return -distances

    def connections(self, output: torch.Tensor) -> int:
        return self.prototypes.numel()


class LeNet5(nn.Module):
    input_channels = 1
    input_size = 32

    def __init__(self, num_classes: int = 10, activation: str = "scaled_tanh"):
        super().__init__()
        act = ScaledTanh if activation == "scaled_tanh" else nn.ReLU
        self.c1 = nn.Sequential(nn.Conv2d(1, 6, 5), act())
        self.s2 = nn.Sequential(Subsampling(6), act())
        self.c3 = nn.Sequential(PartialConv2d(6, C3_TABLE, 5), act())
        self.s4 = nn.Sequential(Subsampling(16), act())
        self.c5 = nn.Sequential(nn.Conv2d(16, 120, 5), act())
        self.f6 = nn.Sequential(nn.Flatten(), nn.Linear(120, 84), act())
        self.output = RBFOutput(self._prototypes(num_classes))
        self._init_weights(activation)

    @staticmethod
    def _prototypes(num_classes: int) -> torch.Tensor:
        digits = bitmap_prototypes()
        if num_classes <= len(digits):
            return digits[:num_classes].clone()
        # More classes than bitmaps: random +-1 codes, fixed by a seed so checkpoints stay comparable.
        generator = torch.Generator().manual_seed(num_classes)
        extra = torch.randint(0, 2, (num_classes - len(digits), digits.shape[1]), generator=generator)
        return torch.cat([digits, extra.float() * 2 - 1])

    def _init_weights(self, activation: str) -> None:
        if activation == "relu":
            self._init_relu()
            return
        # U(-2.4 / fan_in, 2.4 / fan_in), the paper's appendix A rule; biases start at 0.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                nn.init.uniform_(module.weight, -2.4 / fan_in, 2.4 / fan_in)
                nn.init.zeros_(module.bias)
            elif isinstance(module, PartialConv2d):
                # The flat weight lists each output map's kernels in turn, so map i's bound repeats fan_in[i] times.
                bounds = [2.4 / fan_in for fan_in in module.fan_in for _ in range(fan_in)]
                with torch.no_grad():
                    module.weight.uniform_(-1.0, 1.0).mul_(torch.tensor(bounds, device=module.weight.device))
            elif isinstance(module, Subsampling):
                nn.init.uniform_(module.coefficient, -2.4 / 4, 2.4 / 4)

    def _init_relu(self) -> None:
        # The paper's rule keeps tanh units in their linear range, but through six ReLU layers it shrinks the
        # signal until F6 is near zero and training stays at chance. He-normal weights keep the variance instead,
        # and subsampling starts as a 2x2 average.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, PartialConv2d):
                stds = [(2.0 / fan_in) ** 0.5 for fan_in in module.fan_in for _ in range(fan_in)]
                with torch.no_grad():
                    module.weight.normal_().mul_(torch.tensor(stds, device=module.weight.device))
            elif isinstance(module, Subsampling):
                nn.init.constant_(module.coefficient, 0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c1(x)  # N x 6 x 28 x 28
        x = self.s2(x)  # N x 6 x 14 x 14
        x = self.c3(x)  # N x 16 x 10 x 10
        x = self.s4(x)  # N x 16 x 5 x 5
        x = self.c5(x)  # N x 120 x 1 x 1
        x = self.f6(x)  # N x 84
        return self.output(x)  # N x num_classes

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, target)


def lenet5(
    *, num_classes: int = 10, image_size: int | None = None, width: float = 1.0, activation: str = "scaled_tanh"
) -> LeNet5:
    """Build LeNet-5; the layer sizes and Table I are fixed, so only 32x32 input and width 1.0 are valid."""
    if image_size not in (None, 32):
        raise ValueError(f"lenet5: image_size must be 32 (the paper's input), got {image_size}")
    if width != 1.0:
        raise ValueError(f"lenet5: width must be 1.0 because Table I fixes the map counts, got {width}")
    if activation not in ("scaled_tanh", "relu"):
        raise ValueError(f"lenet5: activation must be 'scaled_tanh' or 'relu', got {activation!r}")
    return LeNet5(num_classes=num_classes, activation=activation)
