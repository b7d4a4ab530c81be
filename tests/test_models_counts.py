"""Full-size parameter and connection counts against the papers' tables.

The expected numbers are computed here by arithmetic from each paper's layer table; the large networks are
built on the meta device, so counting allocates no weights.
"""

from __future__ import annotations

import pytest
import torch

from cnnrepro.models import build, describe


def trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def conv(c_in: int, c_out: int, kernel: int, groups: int = 1) -> int:
    """Parameters of a convolution with bias."""
    return c_out * (c_in // groups) * kernel * kernel + c_out


def linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def test_lenet5_parameters_and_connections():
    model = build("lenet5", num_classes=10)
    assert trainable(model) == 60_000, f"LeNet-5 has {trainable(model):,} trainable parameters, the paper 60,000"
    rows = describe.table(model, (1, 1, 32, 32))
    totals = describe.totals(rows)
    assert totals["params"] == 60_000, f"describe counts {totals['params']:,} parameters"
    assert totals["connections"] == 340_908, f"describe counts {totals['connections']:,} connections"
    # LeNet-5 paper's per-layer connections (section II-B): C1, S2, C3, S4, C5, F6 and the RBF output.
    paper = {"c1": 122_304, "s2": 5_880, "c3": 151_600, "s4": 2_000, "c5": 48_120, "f6": 10_164, "output": 840}
    measured = {row["layer"]: row["connections"] for row in rows}
    assert measured == paper, f"per-layer connections {measured} differ from the paper's {paper}"


def test_lenet5_c3_follows_table_one():
    model = build("lenet5", num_classes=10)
    kernel = model.c3[0].dense_weight().detach()  # 16 x 6 x 5 x 5
    connected = kernel.abs().sum(dim=(2, 3)) > 0
    reads = [tuple(torch.nonzero(row).flatten().tolist()) for row in connected]
    assert reads[:6] == [(0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5)], f"maps 0-5 read {reads[:6]}"
    assert reads[12:15] == [(0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5)], f"maps 12-14 read {reads[12:15]}"
    assert reads[15] == (0, 1, 2, 3, 4, 5), f"map 15 reads {reads[15]}"


def test_lenet5_prototypes_are_distinct_and_fixed():
    model = build("lenet5", num_classes=10)
    prototypes = model.output.prototypes
    assert prototypes.shape == (10, 84), f"prototypes have shape {tuple(prototypes.shape)}"
    assert set(prototypes.unique().tolist()) == {-1.0, 1.0}, "prototypes must be +-1"
    differing = (prototypes.unsqueeze(0) != prototypes.unsqueeze(1)).sum(dim=2)
    off_diagonal = differing[~torch.eye(10, dtype=torch.bool)]
    assert off_diagonal.min() >= 10, f"two digit bitmaps differ in only {off_diagonal.min()} pixels"
    assert not any(p is prototypes for p in model.parameters()), "prototypes must not be trainable"


def test_alexnet_parameter_count():
    with torch.device("meta"):
        model = build("alexnet", num_classes=1000)
    expected = (
        conv(3, 96, 11)
        + conv(96, 256, 5, groups=2)
        + conv(256, 384, 3)
        + conv(384, 384, 3, groups=2)
        + conv(384, 256, 3, groups=2)
        + linear(256 * 6 * 6, 4096)
        + linear(4096, 4096)
        + linear(4096, 1000)
    )
    assert expected == 60_965_224, f"the arithmetic itself gives {expected:,}"
    assert trainable(model) == expected, f"AlexNet has {trainable(model):,} parameters, expected {expected:,}"


def test_alexnet_feature_map_sizes():
    model = build("alexnet", num_classes=1000, width=0.125)
    rows = {row["layer"]: row["output_shape"][1:] for row in describe.table(model, (1, 3, 227, 227))}
    assert rows["conv1"] == [55, 55], f"conv1 maps are {rows['conv1']}, the paper's 55x55"
    assert rows["pool5"] == [6, 6], f"pool5 maps are {rows['pool5']}, the paper's 6x6"


def locally_connected(c_in: int, c_out: int, kernel: int, side_out: int) -> int:
    """Parameters of a locally connected layer with untied biases."""
    return side_out * side_out * (c_out * c_in * kernel * kernel + c_out)


def test_deepface_parameter_count():
    with torch.device("meta"):
        model = build("deepface", num_classes=4030)
    expected = (
        conv(3, 32, 11)  # C1: 142x142
        + conv(32, 16, 9)  # C3: 63x63 after M2's 71x71
        + locally_connected(16, 16, 9, 55)  # L4
        + locally_connected(16, 16, 7, 25)  # L5, stride 2
        + locally_connected(16, 16, 5, 21)  # L6
        + linear(16 * 21 * 21, 4096)  # F7
        + linear(4096, 4030)  # F8
    )
    assert 118e6 < expected < 120e6, f"the arithmetic gives {expected:,}, not about 119M"
    assert trainable(model) == expected, f"DeepFace has {trainable(model):,} parameters, expected {expected:,}"


# Table 1: (input channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, map side at 224x224).
GOOGLENET_TABLE = [
    (192, 64, 96, 128, 16, 32, 32, 28),
    (256, 128, 128, 192, 32, 96, 64, 28),
    (480, 192, 96, 208, 16, 48, 64, 14),
    (512, 160, 112, 224, 24, 64, 64, 14),
    (512, 128, 128, 256, 24, 64, 64, 14),
    (512, 112, 144, 288, 32, 64, 64, 14),
    (528, 256, 160, 320, 32, 128, 128, 14),
    (832, 256, 160, 320, 32, 128, 128, 7),
    (832, 384, 192, 384, 48, 128, 128, 7),
]


def googlenet_expected() -> tuple[int, int]:
    """Return (parameters, multiply-adds) of GoogLeNet without auxiliary heads at 224x224."""
    params = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3) + linear(1024, 1000)
    macs = 112**2 * 64 * 3 * 49 + 56**2 * 64 * 64 + 56**2 * 192 * 64 * 9 + 1024 * 1000
    for c_in, n1, r3, n3, r5, n5, proj, side in GOOGLENET_TABLE:
        params += conv(c_in, n1, 1) + conv(c_in, r3, 1) + conv(r3, n3, 3)
        params += conv(c_in, r5, 1) + conv(r5, n5, 5) + conv(c_in, proj, 1)
        macs += side**2 * (c_in * (n1 + r3 + r5 + proj) + r3 * n3 * 9 + r5 * n5 * 25)
    return params, macs


def test_googlenet_parameters_and_multiply_adds():
    expected_params, expected_macs = googlenet_expected()
    assert 6.7e6 < expected_params < 7.1e6, f"the arithmetic gives {expected_params:,}, not about 6.8M"
    model = build("googlenet", num_classes=1000, aux_heads=False)
    assert trainable(model) == expected_params, f"GoogLeNet has {trainable(model):,}, expected {expected_params:,}"
    totals = describe.totals(describe.table(model, (1, 3, 224, 224)))
    assert totals["macs"] == expected_macs, f"describe counts {totals['macs']:,} multiply-adds, expected {expected_macs:,}"
    assert 1.45e9 < totals["macs"] < 1.65e9, f"{totals['macs']:,} multiply-adds is not about 1.5G"


def test_googlenet_aux_head_parameters():
    with_aux = trainable(build("googlenet", num_classes=1000))
    without = trainable(build("googlenet", num_classes=1000, aux_heads=False))
    head = lambda c_in: conv(c_in, 128, 1) + linear(128 * 4 * 4, 1024) + linear(1024, 1000)  # noqa: E731
    assert with_aux - without == head(512) + head(528), f"aux heads add {with_aux - without:,} parameters"


@pytest.mark.parametrize("family", ["alexnet", "deepface", "googlenet"])
def test_width_scales_parameters(family):
    with torch.device("meta"):
        full = trainable(build(family, num_classes=1000))
        quarter = trainable(build(family, num_classes=1000, width=0.25))
    assert quarter < full / 3, f"{family}: width 0.25 keeps {quarter:,} of {full:,} parameters"
