"""Test-time crop geometry and top-k errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnrepro.evaluation import classification, crops


@pytest.fixture
def landscape():
    torch.manual_seed(0)
    return torch.rand(3, 300, 400)


@pytest.mark.parametrize("scheme", crops.SCHEMES)
@pytest.mark.parametrize("image_size", [224, 112])
def test_scheme_shapes(landscape, scheme, image_size):
    out = crops.multicrop(landscape, scheme, image_size)
    assert out.shape == (scheme, 3, image_size, image_size), f"{scheme} crops at {image_size} px"


def test_ten_crop_geometry(landscape):
    one = crops.multicrop(landscape, 1, 224)
    ten = crops.multicrop(landscape, 10, 224)
    resized = crops.resize_shorter(landscape, 256)
    assert resized.shape[-2:] == (256, 341), "shorter side 256, aspect kept"
    square = resized[:, :, (341 - 256) // 2 : (341 - 256) // 2 + 256]
    torch.testing.assert_close(ten[0], square[:, :224, :224], msg="first crop is the top-left corner")
    torch.testing.assert_close(ten[3], square[:, 32:, 32:], msg="fourth crop is the bottom-right corner")
    torch.testing.assert_close(ten[4], one[0], msg="fifth crop is the single centre crop")
    torch.testing.assert_close(ten[5:], ten[:5].flip(-1), msg="last five are the mirrors")


def test_144_contains_ten_crop_and_whole_squares(landscape):
    ten = crops.multicrop(landscape, 10, 224)
    many = crops.multicrop(landscape, 144, 224)
    # Order: scale 256/288/320/352, then left/centre/right square, then 4 corners, centre, whole square.
    torch.testing.assert_close(many[6:11], ten[:5], msg="scale 256, centre square: the AlexNet crops")
    whole = crops.resize(crops.resize_shorter(landscape, 352)[:, :, :352], 224, 224)
    torch.testing.assert_close(many[3 * 18 + 5], whole, msg="scale 352, left square resized whole")
    torch.testing.assert_close(many[72:], many[:72].flip(-1), msg="second half mirrors the first")


def test_portrait_squares_run_top_to_bottom():
    image = torch.zeros(3, 400, 300)
    image[:, :100] = 1.0  # a bright top band
    many = crops.multicrop(image, 144, 224)
    assert many[0].mean() > many[12].mean(), "the first square is the top one for portrait images"


def test_reduced_profile_scales_geometry(landscape):
    assert crops.scaled(256, 112) == 128, "256 at 224 becomes 128 at 112"
    assert crops.scaled(352, 112) == 176, "352 at 224 becomes 176 at 112"


def test_invalid_scheme_raises(landscape):
    with pytest.raises(ValueError, match="12"):
        crops.multicrop(landscape, 12, 224)


def test_topk_errors_by_hand():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.4, 0.35, 0.25]])
    labels = np.array([1, 2, 2])
    errors = classification.topk_errors(probs, labels, (1, 2, 3))
    assert errors["top1_error"] == pytest.approx(2 / 3), "only image 2 is right at k=1"
    assert errors["top2_error"] == pytest.approx(1 / 3), "image 3's label is third"
    assert errors["top3_error"] == 0.0, "k = classes is always right"
