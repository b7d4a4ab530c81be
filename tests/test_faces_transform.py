"""The similarity fit and the inverse warp, checked against known transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnrepro.faces import transform


def _similarity(angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(5, 2)) * 30 + 100
    truth = _similarity(0.4, 1.7, (5.0, -3.0))
    fitted = transform.umeyama(points, transform.apply(truth, points))
    assert np.allclose(fitted, truth, atol=1e-9), f"fitted {fitted}, expected {truth}"


def test_umeyama_never_reflects():
    points = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 7.0]])
    mirrored = points * [-1.0, 1.0]
    fitted = transform.umeyama(points, mirrored)
    determinant = np.linalg.det(fitted[:, :2])
    assert determinant > 0, f"fit to a mirror image has determinant {determinant}: it reflects"


def test_umeyama_rejects_coincident_points():
    with pytest.raises(ValueError, match="coincide"):
        transform.umeyama(np.ones((5, 2)), np.zeros((5, 2)))


def test_template_scales_with_size():
    small, large = transform.template(112), transform.template(224)
    assert np.allclose(small[0], [38.2946, 51.6963]), f"112 px template starts at {small[0]}"
    assert np.allclose((large + 0.5) / 224, (small + 0.5) / 112), "template edges do not scale with the size"
    narrow = transform.template(112, margin=0.1)
    spread = np.ptp(narrow[:, 0]) / np.ptp(small[:, 0])
    assert np.isclose(spread, 0.8), f"margin 0.1 should shrink the template to 0.8, got {spread:.3f}"


def test_warp_exact_on_integer_shift():
    image = torch.arange(3 * 20 * 30, dtype=torch.float32).reshape(1, 3, 20, 30)
    # Crop pixel (u, v) shows image pixel (u + 7, v + 4).
    shift = np.array([[[1.0, 0.0, -7.0], [0.0, 1.0, -4.0]]])
    crop = transform.warp(image, shift, 10)
    assert torch.allclose(crop[0], image[0, :, 4:14, 7:17], atol=1e-3), "integer shift does not copy pixels"


def test_warp_outside_is_black():
    image = torch.full((1, 3, 10, 10), 200.0)
    crop = transform.warp(image, np.array([[[1.0, 0.0, 5.0], [0.0, 1.0, 0.0]]]), 10)
    assert crop[0, :, :, :5].abs().max() == 0, "pixels left of the image should be 0"
    assert torch.allclose(crop[0, :, :, 5:], torch.tensor(200.0)), "pixels inside the image should keep 200"


def test_center_crop_transform_maps_centres():
    matrix = transform.center_crop_transform(250, 300, 100, fraction=0.5)
    centre = transform.apply(matrix, np.array([[149.5, 124.5]]))[0]
    assert np.allclose(centre, [49.5, 49.5]), f"image centre maps to {centre}"
    corner = transform.apply(matrix, np.array([[149.5 - 62.5, 124.5 - 62.5]]))[0]
    assert np.allclose(corner, [-0.5, -0.5]), f"the crop square's corner maps to {corner}"
