"""GoogLeNet (Szegedy et al., "Going deeper with convolutions", CVPR 2015, Table 1 and figure 3).

Layers on a 224x224 RGB image: conv 7x7/2 (64), 3x3/2 max pooling, local response normalisation (LRN),
conv 1x1 (64), conv 3x3 (192), LRN, pooling, inception 3a and 3b, pooling, inception 4a-4e, 3x3/2 pooling,
inception 5a and 5b, global average pooling, dropout 0.4 and a linear classifier. The inception modules use
Table 1's channel counts with true 5x5 convolutions. Two auxiliary heads on 4a and 4d (5x5/3 average
pooling, 1x1 conv with 128 filters, FC 1024, dropout 0.7, linear) add 0.3 times their loss during training
and are not run in eval mode. Without the auxiliary heads and with 1000 classes the network has
6,998,552 parameters (Table 1's 6.8M counts no biases) and 1.58G multiply-adds at 224x224. Table 1's
ops column sums to 1.50G because it lists 34M for the first convolution, whose 112x112x64 outputs of 7x7x3
taps take 118M.

Deviations and choices:
- The 1x1 convolutions of an inception module that read the same input (the 1x1 branch and the 3x3 and 5x5
  reductions) run as one convolution whose output is split; that is the same function with the same
  parameter count and one kernel launch instead of three.
- Pooling windows round up (ceil mode, as in the reference Caffe model), which gives Table 1's map sizes.
- LRN uses the reference Caffe model's settings (size 5, alpha 1e-4, beta 0.75, k 1), since the paper gives
  none; Caffe and PyTorch both divide alpha by the size.
- Initialisation: Xavier-uniform weights and biases of 0.2 in the convolutions (the reference Caffe
  model's choice; the paper gives none), N(0, 0.01) weights and zero biases in the linear layers.
- The final average pooling is global (7x7 at 224x224) so that other input sizes work.
- `batch_norm=True` is the common deviation (torchvision, Inception-v2): convolutions without bias followed
  by batch normalisation, and no LRN.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cnnrepro.models.layers import LocalResponseNorm, conv_output_size

__all__ = ["GoogLeNet", "GoogLeNetOutputs", "googlenet", "INCEPTION_TABLE", "AUX_LOSS_WEIGHT"]

AUX_LOSS_WEIGHT = 0.3

# Table 1: module -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
INCEPTION_TABLE: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux1: torch.Tensor
    aux2: torch.Tensor


class ConvReLU(nn.Sequential):
    """Convolution and ReLU, with batch normalisation in between when `batch_norm` is set."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, batch_norm=False):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=not batch_norm)
        ]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels, eps=1e-3))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Inception(nn.Module):
    def __init__(self, in_channels: int, channels: tuple[int, ...], batch_norm: bool):
        super().__init__()
        n1x1, n3x3_reduce, n3x3, n5x5_reduce, n5x5, pool_proj = channels
        self.splits = (n1x1, n3x3_reduce, n5x5_reduce)
        # The 1x1 branch and both reductions read the same input, so they share one convolution.
        self.heads = ConvReLU(in_channels, sum(self.splits), 1, batch_norm=batch_norm)
        self.branch3x3 = ConvReLU(n3x3_reduce, n3x3, 3, batch_norm=batch_norm)
        self.branch5x5 = ConvReLU(n5x5_reduce, n5x5, 5, batch_norm=batch_norm)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.pool_proj = ConvReLU(in_channels, pool_proj, 1, batch_norm=batch_norm)
        self.out_channels = n1x1 + n3x3 + n5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1, r3, r5 = torch.split(self.heads(x), self.splits, dim=1)
        b3 = self.branch3x3(r3)
        b5 = self.branch5x5(r5)
        bp = self.pool_proj(self.pool(x))
        return torch.cat([b1, b3, b5, bp], dim=1)


class AuxHead(nn.Module):
    """Auxiliary classifier: 5x5/3 average pooling, 1x1 conv (128), FC (1024), dropout 0.7, linear."""

    def __init__(self, in_channels: int, side: int, num_classes: int, width: float, batch_norm: bool):
        super().__init__()
        pooled = conv_output_size(side, 5, 3)
        reduce, hidden = max(1, round(128 * width)), max(1, round(1024 * width))
        self.pool = nn.AvgPool2d(5, stride=3)
        self.conv = ConvReLU(in_channels, reduce, 1, batch_norm=batch_norm)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(reduce * pooled * pooled, hidden), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(0.7)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(x)  # N x 512 x 4 x 4 (4a) or N x 528 x 4 x 4 (4d)
        x = self.conv(x)  # N x 128 x 4 x 4
        x = self.fc(x)  # N x 1024
        return self.classifier(self.dropout(x))  # N x num_classes


class GoogLeNet(nn.Module):
    input_channels = 3

    def __init__(
        self,
        num_classes: int = 1000,
        image_size: int = 224,
        width: float = 1.0,
        aux_heads: bool = True,
        batch_norm: bool = False,
        dropout: float = 0.4,
        init: str = "paper",
    ):
        super().__init__()
        self.input_size = image_size

        def scaled(c: int) -> int:
            return max(1, round(c * width))

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(3, stride=2, ceil_mode=True)

        def norm(channels: int) -> nn.Module:
            return nn.Identity() if batch_norm else LocalResponseNorm(channels, 5, alpha=1e-4, beta=0.75, k=1.0)

        self.conv1 = ConvReLU(3, scaled(64), 7, stride=2, batch_norm=batch_norm)
        self.pool1, self.norm1 = pool(), norm(scaled(64))
        self.conv2_reduce = ConvReLU(scaled(64), scaled(64), 1, batch_norm=batch_norm)
        self.conv2 = ConvReLU(scaled(64), scaled(192), 3, batch_norm=batch_norm)
        self.norm2, self.pool2 = norm(scaled(192)), pool()

        side = conv_output_size(image_size, 7, 2, padding=3)
        for _ in range(3):  # pool1, pool2, pool3
            side = conv_output_size(side, 3, 2, ceil=True)
        if side < 5:
            raise ValueError(f"googlenet: image_size {image_size} is too small for the auxiliary heads' "
                             f"5x5 pooling on 4a; use at least 96")

        channels = scaled(192)
        for name in INCEPTION_TABLE:
            module = Inception(channels, tuple(scaled(c) for c in INCEPTION_TABLE[name]), batch_norm)
            setattr(self, f"inception{name}", module)
            channels = module.out_channels
            if name == "3b":
                self.pool3 = pool()
            elif name == "4e":
                self.pool4 = pool()

        self.aux1 = self.aux2 = None
        if aux_heads:
            self.aux1 = AuxHead(self.inception4a.out_channels, side, num_classes, width, batch_norm)
            self.aux2 = AuxHead(self.inception4d.out_channels, side, num_classes, width, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        # paper: the Caffe replication's Xavier convolutions with 0.2 biases and N(0, 0.01) linear layers.
        # kaiming: He-normal weights and zero biases, which short CPU-profile runs need to leave chance level.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and init == "kaiming":
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.constant_(module.bias, 0.2)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor | GoogLeNetOutputs:
        x = self.conv1(x)  # N x 64 x 112 x 112
        x = self.norm1(self.pool1(x))  # N x 64 x 56 x 56
        x = self.conv2_reduce(x)  # N x 64 x 56 x 56
        x = self.conv2(x)  # N x 192 x 56 x 56
        x = self.pool2(self.norm2(x))  # N x 192 x 28 x 28

        x = self.inception3a(x)  # N x 256 x 28 x 28
        x = self.inception3b(x)  # N x 480 x 28 x 28
        x = self.pool3(x)  # N x 480 x 14 x 14

        x = self.inception4a(x)  # N x 512 x 14 x 14
        run_aux = self.training and self.aux1 is not None
        aux1 = self.aux1(x) if run_aux else None  # N x num_classes
        x = self.inception4b(x)  # N x 512 x 14 x 14
        x = self.inception4c(x)  # N x 512 x 14 x 14
        x = self.inception4d(x)  # N x 528 x 14 x 14
        aux2 = self.aux2(x) if run_aux else None  # N x num_classes
        x = self.inception4e(x)  # N x 832 x 14 x 14
        x = self.pool4(x)  # N x 832 x 7 x 7

        x = self.inception5a(x)  # N x 832 x 7 x 7
        x = self.inception5b(x)  # N x 1024 x 7 x 7
        x = torch.flatten(self.avgpool(x), 1)  # N x 1024
        logits = self.fc(self.dropout(x))  # N x num_classes
        if run_aux:
            return GoogLeNetOutputs(logits, aux1, aux2)
        return logits

    def loss(self, outputs: torch.Tensor | GoogLeNetOutputs, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the main classifier plus 0.3 times that of each auxiliary head when present."""
        if isinstance(outputs, GoogLeNetOutputs):
            main = F.cross_entropy(outputs.logits, target)
            aux = F.cross_entropy(outputs.aux1, target) + F.cross_entropy(outputs.aux2, target)
            return main + AUX_LOSS_WEIGHT * aux
        return F.cross_entropy(outputs, target)


def googlenet(
    *,
    num_classes: int = 1000,
    image_size: int | None = None,
    width: float = 1.0,
    aux_heads: bool = True,
    batch_norm: bool = False,
    dropout: float = 0.4,
    init: str = "paper",
) -> GoogLeNet:
    """Build GoogLeNet; the defaults are Table 1's network with both auxiliary heads."""
    if init not in ("paper", "kaiming"):
        raise ValueError(f"googlenet: init must be one of paper, kaiming, got {init!r}")
    return GoogLeNet(
        num_classes=num_classes,
        image_size=image_size or 224,
        width=width,
        aux_heads=aux_heads,
        batch_norm=batch_norm,
        dropout=dropout,
        init=init,
    )
