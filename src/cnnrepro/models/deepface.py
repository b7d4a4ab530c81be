"""DeepFace (Taigman, Yang, Ranzato and Wolf, "DeepFace: closing the gap to human-level performance in face
verification", CVPR 2014, section 3 and figure 2).

Layers on a 152x152 RGB face: C1 32@11x11, M2 3x3/2 max pooling, C3 16@9x9, then three locally connected
layers without weight sharing (L4 16@9x9, L5 16@7x7 with stride 2, L6 16@5x5), F7 of 4096 units (the face
representation, with dropout) and F8, the softmax over identities. ReLU follows every layer but F8. With
4,030 identities the network has 118,923,774 parameters, of which 95% are in L4-L6, F7 and F8.

Deviations and choices:
- C3 reads all 32 M2 maps. The paper's text writes its filters as 9x9x16, which cannot match M2's 32 maps.
- M2 rounds up (ceil mode) so that 142x142 maps give the paper's 71x71.
- Biases are untied: each output position of a locally connected layer has its own bias.
- `width` scales every hidden layer and `image_size` the input, for CPU profiles; the topology stays.
- `variant` builds the paper's depth ablations (section 5.1): "sub1" drops C3, "sub2" drops L4 and L5,
  "sub3" drops all three; "full" is the whole network. Each remaining layer reads whatever its predecessor
  now outputs (L4 reads M2's 32 maps in sub1, L6 reads C3's maps in sub2), so F7 reads larger maps and sub2
  and sub3 have more parameters than the full network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnrepro.models.layers import LocallyConnected2d, conv_output_size

__all__ = ["DeepFace", "deepface", "deepface_sub", "VARIANTS"]

# Variant name -> layers it removes (the paper's DeepFace, DF-sub1, DF-sub2 and DF-sub3).
VARIANTS: dict[str, frozenset[str]] = {
    "full": frozenset(),
    "sub1": frozenset({"c3"}),
    "sub2": frozenset({"l4", "l5"}),
    "sub3": frozenset({"c3", "l4", "l5"}),
}


class DeepFace(nn.Module):
    input_channels = 3

    def __init__(
        self,
        num_classes: int = 4030,
        image_size: int = 152,
        width: float = 1.0,
        dropout: float = 0.5,
        removed: frozenset[str] = frozenset(),
        init: str = "paper",
    ):
        super().__init__()
        self.input_size = image_size
        c1, maps, hidden = (max(1, round(c * width)) for c in (32, 16, 4096))
        self.representation_size = hidden

        side = conv_output_size(image_size, 11)
        self.c1 = nn.Sequential(nn.Conv2d(3, c1, 11), nn.ReLU(inplace=True))
        self.m2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        side = conv_output_size(side, 3, 2, ceil=True)
        channels = c1

        def too_small(layer: str) -> ValueError:
            return ValueError(f"deepface: image_size {image_size} is too small for {layer}; use at least 76")

        self.c3: nn.Module = nn.Identity()
        if "c3" not in removed:
            if side < 9:
                raise too_small("C3")
            self.c3 = nn.Sequential(nn.Conv2d(channels, maps, 9), nn.ReLU(inplace=True))
            side, channels = conv_output_size(side, 9), maps

        self.l4: nn.Module = nn.Identity()
        self.l5: nn.Module = nn.Identity()
        for name, kernel, stride in (("l4", 9, 1), ("l5", 7, 2), ("l6", 5, 1)):
            if name in removed:
                continue
            if side < kernel:
                raise too_small(name.upper())
            layer = LocallyConnected2d(channels, maps, (side, side), kernel, stride)
            setattr(self, name, nn.Sequential(layer, nn.ReLU(inplace=True)))
            side, channels = layer.output_size[0], maps

        self.f7 = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, hidden), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.f8 = nn.Linear(hidden, num_classes)
        self._init_weights(init)

    def _init_weights(self, init: str) -> None:
        # paper: weights N(0, 0.01) and biases 0.5 in every layer. kaiming: He-normal weights over each
        # layer's fan-in (kernel area times input channels for the locally connected layers), zero biases.
        for module in self.modules():
            if isinstance(module, LocallyConnected2d) and init == "kaiming":
                fan_in = module.in_channels * module.kernel_size * module.kernel_size
                nn.init.normal_(module.weight, 0.0, (2.0 / fan_in) ** 0.5)
                nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Conv2d, nn.Linear)) and init == "kaiming":
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.Conv2d, nn.Linear, LocallyConnected2d)):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.constant_(module.bias, 0.5)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the F7 representation after its ReLU: N x 4096 (times `width`)."""
        x = self.c1(x)  # N x 32 x 142 x 142
        x = self.m2(x)  # N x 32 x 71 x 71
        x = self.c3(x)  # N x 16 x 63 x 63
        x = self.l4(x)  # N x 16 x 55 x 55
        x = self.l5(x)  # N x 16 x 25 x 25
        x = self.l6(x)  # N x 16 x 21 x 21
        return self.f7(x)  # N x 4096

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # N x 4096
        x = self.dropout(x)
        return self.f8(x)  # N x num_classes

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, target)


def deepface(
    *,
    num_classes: int = 4030,
    image_size: int | None = None,
    width: float = 1.0,
    dropout: float = 0.5,
    variant: str = "full",
    init: str = "paper",
) -> DeepFace:
    """Build DeepFace; `variant` is "full" or a depth ablation ("sub1", "sub2", "sub3").

    `init="kaiming"` replaces the paper's N(0, 0.01) weights and 0.5 biases with He-normal weights and zero
    biases, for short CPU-profile runs in which the paper's initialisation leaves the loss at chance.
    """
    if init not in ("paper", "kaiming"):
        raise ValueError(f"deepface: init must be one of paper, kaiming, got {init!r}")
    if variant not in VARIANTS:
        raise ValueError(f"deepface: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    return DeepFace(
        num_classes=num_classes,
        image_size=image_size or 152,
        width=width,
        dropout=dropout,
        removed=VARIANTS[variant],
        init=init,
    )


def deepface_sub(variant: str, **options) -> DeepFace:
    """Build the paper's depth ablation `variant` ("sub1", "sub2" or "sub3"); `options` go to `deepface`."""
    return deepface(variant=variant, **options)
