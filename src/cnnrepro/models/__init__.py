"""The four model families and `build`, the one entry point the training and evaluation stages use.

Every model has `forward(x) -> logits` (GoogLeNet in train mode with auxiliary heads returns
`GoogLeNetOutputs`), `loss(outputs, target)` with its paper's loss, and the class attributes
`input_channels` and `input_size`. DeepFace also has `features(x)`, its F7 face representation.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from cnnrepro.models.alexnet import alexnet
from cnnrepro.models.deepface import deepface, deepface_sub
from cnnrepro.models.googlenet import GoogLeNetOutputs, googlenet
from cnnrepro.models.lenet5 import lenet5

__all__ = ["FAMILIES", "DEFAULT_NUM_CLASSES", "GoogLeNetOutputs", "build", "options", "deepface_sub"]

FAMILIES = ("lenet5", "alexnet", "deepface", "googlenet")

# Classes of each paper's own task: MNIST digits, ILSVRC, the SFC identities, ILSVRC.
DEFAULT_NUM_CLASSES = {"lenet5": 10, "alexnet": 1000, "deepface": 4030, "googlenet": 1000}

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": lenet5,
    "alexnet": alexnet,
    "deepface": deepface,
    "googlenet": googlenet,
}
_COMMON = ("num_classes", "image_size", "width")


def options(family: str) -> tuple[str, ...]:
    """Return the family-specific option names `build` accepts besides num_classes, image_size and width."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    names = inspect.signature(_BUILDERS[family]).parameters
    return tuple(name for name in names if name not in _COMMON)


def build(family: str, *, num_classes: int, image_size: int | None = None, width: float = 1.0, **options_) -> nn.Module:
    """Build `family` with its paper's settings, overridden by `options_` (see `options(family)`)."""
    allowed = options(family)
    unknown = sorted(set(options_) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model family {family!r}; "
            f"allowed: {', '.join(allowed) or 'none'}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if width <= 0:
        raise ValueError(f"width must be positive, got {width}")
    model = _BUILDERS[family](num_classes=num_classes, image_size=image_size, width=width, **options_)
    # The arguments that rebuild this architecture, so a state dict alone can restore the model (the tracking
    # spool relies on this to avoid pickling whole modules).
    model.cnnrepro_build = {
        "family": family,
        "kwargs": {"num_classes": num_classes, "image_size": image_size, "width": width, **options_},
    }
    return model
