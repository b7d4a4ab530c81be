"""DeepFace's depth ablations (Taigman et al. 2014, section 5.1): sizes, shapes and gradients of each variant.

The expected parameter counts come from the feature-map sides worked out by hand below, not from the model,
whose full-size copies are built on the meta device so that counting allocates no weights.
"""

from __future__ import annotations

import pytest
import torch

from cnnrepro import cli
from cnnrepro.models import build

VARIANTS = ("full", "sub1", "sub2", "sub3")
REMOVED = {"full": set(), "sub1": {"c3"}, "sub2": {"l4", "l5"}, "sub3": {"c3", "l4", "l5"}}
IDENTITIES = 4030


def conv(c_in: int, c_out: int, kernel: int) -> int:
    """Parameters of a convolution with one bias per output map."""
    return c_out * c_in * kernel * kernel + c_out


def locally_connected(c_in: int, c_out: int, kernel: int, side: int) -> int:
    """Parameters of a locally connected layer with `side` x `side` outputs: own filter and bias at each."""
    return side * side * c_out * (c_in * kernel * kernel + 1)


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


# On a 152 x 152 face: C1 (11x11) gives 142, M2 (3x3, stride 2, rounding up) gives 71 with 32 maps.
# A k x k layer without padding maps side s to s - k + 1. L5 has stride 2 and maps s to (s - 7) // 2 + 1.
#   full: C3 71 -> 63, L4 63 -> 55, L5 55 -> 25, L6 25 -> 21; F7 reads 16 x 21 x 21.
#   sub1: L4 reads M2's 32 maps, 71 -> 63, L5 63 -> 29, L6 29 -> 25; F7 reads 16 x 25 x 25.
#   sub2: C3 71 -> 63, L6 63 -> 59; F7 reads 16 x 59 x 59.
#   sub3: L6 reads M2's 32 maps, 71 -> 67; F7 reads 16 x 67 x 67.
HEAD = linear(4096, IDENTITIES)  # F8
EXPECTED = {
    "full": conv(3, 32, 11)
    + conv(32, 16, 9)
    + locally_connected(16, 16, 9, 55)
    + locally_connected(16, 16, 7, 25)
    + locally_connected(16, 16, 5, 21)
    + linear(16 * 21 * 21, 4096)
    + HEAD,
    "sub1": conv(3, 32, 11)
    + locally_connected(32, 16, 9, 63)
    + locally_connected(16, 16, 7, 29)
    + locally_connected(16, 16, 5, 25)
    + linear(16 * 25 * 25, 4096)
    + HEAD,
    "sub2": conv(3, 32, 11) + conv(32, 16, 9) + locally_connected(16, 16, 5, 59) + linear(16 * 59 * 59, 4096) + HEAD,
    "sub3": conv(3, 32, 11) + locally_connected(32, 16, 5, 67) + linear(16 * 67 * 67, 4096) + HEAD,
}
# (maps, side) after each of C3 and L4-L6. A removed layer passes its input on unchanged.
MAPS = {
    "full": {"c3": (16, 63), "l4": (16, 55), "l5": (16, 25), "l6": (16, 21)},
    "sub1": {"c3": (32, 71), "l4": (16, 63), "l5": (16, 29), "l6": (16, 25)},
    "sub2": {"c3": (16, 63), "l4": (16, 63), "l5": (16, 63), "l6": (16, 59)},
    "sub3": {"c3": (32, 71), "l4": (32, 71), "l5": (32, 71), "l6": (16, 67)},
}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_matches_layer_shapes(variant):
    with torch.device("meta"):
        model = build("deepface", num_classes=IDENTITIES, variant=variant)
    assert count(model) == EXPECTED[variant], (
        f"DeepFace {variant} has {count(model):,} parameters; its layer shapes give {EXPECTED[variant]:,}"
    )


def test_full_network_is_the_papers_size():
    assert 118e6 < EXPECTED["full"] < 120e6, f"the arithmetic gives {EXPECTED['full']:,}, not about 119M"
    # Removing locally connected layers enlarges F7's input, so sub2 and sub3 have more parameters than the
    # full network.
    assert EXPECTED["sub2"] > EXPECTED["full"], "sub2 should have more parameters than the full network"
    assert EXPECTED["sub3"] > EXPECTED["sub2"], "sub3 should have more parameters than sub2"


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_size_map_sides(variant):
    with torch.device("meta"):
        model = build("deepface", num_classes=IDENTITIES, variant=variant).eval()
        sides = {}
        hooks = [
            getattr(model, name).register_forward_hook(
                lambda module, inputs, output, name=name: sides.__setitem__(name, tuple(output.shape[1:]))
            )
            for name in ("c3", "l4", "l5", "l6")
        ]
        out = model(torch.empty(2, 3, 152, 152))
    for hook in hooks:
        hook.remove()
    expected = {name: (maps, side, side) for name, (maps, side) in MAPS[variant].items()}
    assert sides == expected, f"{variant}: map shapes {sides}, expected {expected}"
    assert tuple(out.shape) == (2, IDENTITIES), f"{variant}: output shape {tuple(out.shape)}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_small_variant_trains_every_parameter(variant):
    torch.manual_seed(0)
    model = build("deepface", num_classes=7, image_size=76, width=0.25, variant=variant)
    x = torch.randn(4, 3, 76, 76)
    target = torch.arange(4) % 7
    out = model(x)
    assert tuple(out.shape) == (4, 7), f"{variant}: output shape {tuple(out.shape)}"
    assert tuple(model.features(x).shape) == (4, 1024), f"{variant}: F7 is not 4096 * 0.25 wide"
    model.loss(out, target).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{variant}: {name} got no gradient"
        assert parameter.grad.abs().sum() > 0, f"{variant}: {name} has an all-zero gradient"


@pytest.mark.parametrize("variant", VARIANTS)
def test_describe_takes_the_variant(variant, capsys):
    code = cli.main(["describe", "deepface", "--variant", variant, "--image-size", "76", "--width", "0.25",
                     "--repeats", "1"])
    assert code == 0, f"describe deepface --variant {variant} exited with {code}"
    text = capsys.readouterr().out
    assert text.startswith(f"deepface {variant},"), f"the heading does not name {variant}: {text[:60]!r}"
    rows = {line.split()[0]: line.split()[1] for line in text.splitlines()[3:]}
    for name in ("c3", "l4", "l5"):
        removed = rows[name] == "Identity"
        assert removed == (name in REMOVED[variant]), f"describe shows {name} as {rows[name]} for {variant}"


def test_describe_rejects_the_variant_for_other_models(capsys):
    assert cli.main(["describe", "lenet5", "--variant", "sub1"]) == 2, "lenet5 has no variants; expected status 2"
    assert "variant" in capsys.readouterr().err, "the error must name the rejected option"
