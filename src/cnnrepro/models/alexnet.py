"""AlexNet (Krizhevsky, Sutskever and Hinton, "ImageNet classification with deep convolutional neural
networks", NIPS 2012, sections 3 and 5).

Layers: 227x227 input; conv1 96@11x11/4, ReLU, local response normalisation (LRN), 3x3/2 max pooling; conv2
256@5x5 in two towers (groups=2), ReLU, LRN, pooling; conv3 384@3x3 reading both towers; conv4 384@3x3 and
conv5 256@3x3 in two towers, pooling; fc6 and fc7 of 4096 with dropout 0.5 on their outputs; fc8. With
1000 classes the network has 60,965,224 parameters.

Deviations and choices:
- Input is 227x227, not the 224 the paper states: 11x11 stride-4 filters without padding give the paper's
  55x55 conv1 maps only from 227.
- The two towers are one device's grouped convolutions (groups=2), not two GPUs.
- LRN computes `nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2)` (with a faster kernel): PyTorch divides
  alpha by the window size, so 5e-4 gives the paper's alpha of 1e-4.
- Options for ablations (not the paper network): `lrn=False`, `overlapping_pool=False` (2x2/2 pooling),
  `activation="tanh"` and `towers=1`. `towers=1` keeps the layer widths but connects every conv layer to all
  maps of the one before. The paper's one-GPU baseline also halves the kernels, which `width` can add.
- `width` scales every hidden layer and `image_size` the input; both are for CPU profiles.
- `init="kaiming"` replaces the paper's N(0, 0.01) weights and unit biases with He-normal weights and zero
  biases. At reduced width and a few epochs the paper's initialisation leaves the loss flat at chance (as the
  Caffe replication also reports for unit biases), so the CPU profiles use it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnrepro.models.layers import LocalResponseNorm, conv_output_size

__all__ = ["AlexNet", "alexnet"]

INITS = ("paper", "kaiming")


def _channels(base: int, width: float, multiple: int) -> int:
    """Scale a channel count by `width`, rounded to a positive multiple of `multiple` (the tower count)."""
    return max(multiple, int(round(base * width / multiple)) * multiple)


class AlexNet(nn.Module):
    input_channels = 3

    def __init__(
        self,
        num_classes: int = 1000,
        image_size: int = 227,
        width: float = 1.0,
        towers: int = 2,
        lrn: bool = True,
        overlapping_pool: bool = True,
        dropout: float = 0.5,
        activation: str = "relu",
        init: str = "paper",
    ):
        super().__init__()
        self.input_size = image_size
        c1, c2, c3, c4, c5 = (_channels(c, width, towers) for c in (96, 256, 384, 384, 256))
        hidden = _channels(4096, width, 1)
        act = nn.ReLU if activation == "relu" else nn.Tanh
        pool_kernel = 3 if overlapping_pool else 2

        def pool() -> nn.Module:
            return nn.MaxPool2d(pool_kernel, stride=2)

        def norm(channels: int) -> nn.Module:
            return LocalResponseNorm(channels, 5, alpha=5e-4, beta=0.75, k=2.0) if lrn else nn.Identity()

        self.conv1 = nn.Sequential(nn.Conv2d(3, c1, 11, stride=4), self._act(act))
        self.norm1, self.pool1 = norm(c1), pool()
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 5, padding=2, groups=towers), self._act(act))
        self.norm2, self.pool2 = norm(c2), pool()
        self.conv3 = nn.Sequential(nn.Conv2d(c2, c3, 3, padding=1), self._act(act))
        self.conv4 = nn.Sequential(nn.Conv2d(c3, c4, 3, padding=1, groups=towers), self._act(act))
        self.conv5 = nn.Sequential(nn.Conv2d(c4, c5, 3, padding=1, groups=towers), self._act(act))
        self.pool5 = pool()

        side = conv_output_size(image_size, 11, 4)
        for _ in range(3):
            side = conv_output_size(side, pool_kernel, 2)
        if side < 1:
            raise ValueError(f"alexnet: image_size {image_size} is too small; use at least 67")
        self.fc6 = nn.Sequential(nn.Flatten(), nn.Linear(c5 * side * side, hidden), self._act(act), nn.Dropout(dropout))
        self.fc7 = nn.Sequential(nn.Linear(hidden, hidden), self._act(act), nn.Dropout(dropout))
        self.fc8 = nn.Linear(hidden, num_classes)
        self._init_weights(init)

    @staticmethod
    def _act(act: type[nn.Module]) -> nn.Module:
        return act(inplace=True) if act is nn.ReLU else act()

    def _init_weights(self, init: str) -> None:
        # paper: weights N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6 and fc7 (so ReLUs start with positive
        # inputs), 0 in conv1, conv3 and fc8. kaiming: He-normal weights, zero biases.
        ones = {self.conv2[0], self.conv4[0], self.conv5[0], self.fc6[1], self.fc7[0]}
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                if init == "kaiming":
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                    nn.init.zeros_(module.bias)
                else:
                    nn.init.normal_(module.weight, 0.0, 0.01)
                    nn.init.constant_(module.bias, 1.0 if module in ones else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)  # N x 96 x 55 x 55
        x = self.pool1(self.norm1(x))  # N x 96 x 27 x 27
        x = self.conv2(x)  # N x 256 x 27 x 27
        x = self.pool2(self.norm2(x))  # N x 256 x 13 x 13
        x = self.conv3(x)  # N x 384 x 13 x 13
        x = self.conv4(x)  # N x 384 x 13 x 13
        x = self.conv5(x)  # N x 256 x 13 x 13
        x = self.pool5(x)  # N x 256 x 6 x 6
        x = self.fc6(x)  # N x 4096
        x = self.fc7(x)  # N x 4096
        return self.fc8(x)  # N x num_classes

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, target)


def alexnet(
    *,
    num_classes: int = 1000,
    image_size: int | None = None,
    width: float = 1.0,
    towers: int = 2,
    lrn: bool = True,
    overlapping_pool: bool = True,
    dropout: float = 0.5,
    activation: str = "relu",
    init: str = "paper",
) -> AlexNet:
    """Build AlexNet; the defaults are the paper's network at 227x227."""
    if init not in INITS:
        raise ValueError(f"alexnet: init must be one of {', '.join(INITS)}, got {init!r}")
    if towers not in (1, 2):
        raise ValueError(f"alexnet: towers must be 1 or 2, got {towers}")
    if activation not in ("relu", "tanh"):
        raise ValueError(f"alexnet: activation must be 'relu' or 'tanh', got {activation!r}")
    return AlexNet(
        num_classes=num_classes,
        image_size=image_size or 227,
        width=width,
        towers=towers,
        lrn=lrn,
        overlapping_pool=overlapping_pool,
        dropout=dropout,
        activation=activation,
        init=init,
    )
