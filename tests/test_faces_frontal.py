"""The geometry of the 3D alignment on synthetic landmarks: camera fit, piecewise-affine warp, frontal target.

None of these tests needs MediaPipe: the landmarks are the generic shape seen by known cameras.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnrepro.faces import frontal, transform

SHAPE = frontal.load_shape()


def _rotation(yaw_degrees: float, pitch_degrees: float = 0.0) -> np.ndarray:
    yaw, pitch = np.radians(yaw_degrees), np.radians(pitch_degrees)
    about_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    about_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    return about_x @ about_y


def _camera(yaw: float, pitch: float = 0.0, scale: float = 60.0, centre=(100.0, 110.0)) -> np.ndarray:
    """A weak-perspective camera: rotate, keep x and y, scale, shift."""
    linear = scale * _rotation(yaw, pitch)[:2]
    return np.hstack([linear, np.asarray(centre, dtype=np.float64)[:, None]])


def _texture(size: int) -> np.ndarray:
    """A smooth RGB pattern (size, size, 3) in 0..255, so that bilinear sampling errors stay small."""
    axis = np.arange(size, dtype=np.float64)
    gx, gy = np.meshgrid(axis, axis)
    red = 127.5 + 100 * np.sin(gx / 9.0)
    green = 127.5 + 100 * np.cos(gy / 7.0)
    blue = 127.5 + 100 * np.sin((gx + gy) / 11.0)
    return np.stack([red, green, blue], axis=-1)


def _batch(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(array, dtype=torch.float64).permute(2, 0, 1)[None]


def test_shape_file_is_mirror_symmetric():
    points = SHAPE.points
    assert points.shape == (468, 3), f"generic shape has shape {points.shape}"
    mirrored = points * np.array([-1.0, 1.0, 1.0])
    nearest = np.linalg.norm(points[:, None] - mirrored[None], axis=2).min(axis=1)
    assert nearest.max() < 1e-4, f"a mirrored point lies {nearest.max():.2e} from every shape point"
    five = SHAPE.five_points()
    assert np.isclose(five[1, 0] - five[0, 0], 1.0, atol=1e-4), f"inter-ocular distance {five[1, 0] - five[0, 0]}"
    assert five[2, 2] < five[0, 2], f"nose tip depth {five[2, 2]} is not nearer the camera than the eye {five[0, 2]}"


def test_camera_fit_recovers_projection():
    for yaw, pitch in ((0.0, 0.0), (35.0, -10.0), (-60.0, 20.0)):
        camera = _camera(yaw, pitch)
        fitted = frontal.fit_camera(SHAPE.points, frontal.project(camera, SHAPE.points))
        assert np.allclose(fitted, camera, atol=1e-8), f"yaw {yaw}, pitch {pitch}: fitted {fitted} vs {camera}"


def test_camera_fit_general_affine():
    rng = np.random.default_rng(0)
    camera = rng.normal(size=(2, 4))
    points = rng.normal(size=(30, 3))
    noise = rng.normal(scale=1e-3, size=(30, 2))
    fitted = frontal.fit_camera(points, frontal.project(camera, points) + noise)
    assert np.abs(fitted - camera).max() < 1e-2, f"max camera error {np.abs(fitted - camera).max()}"


def test_camera_fit_rejects_coplanar_points():
    flat = SHAPE.points.copy()
    flat[:, 2] = 0.0
    with pytest.raises(ValueError, match="coplanar"):
        frontal.fit_camera(flat, flat[:, :2])


def test_piecewise_map_equals_global_affine():
    size = 48
    # An image -> crop similarity with a shear added, so that the map is a general affine one.
    matrix = np.array([[0.8, 0.15, -10.0], [-0.1, 0.9, 5.0]])
    target = frontal.placement(SHAPE, size)[0] * SHAPE.points[:, :2] + frontal.placement(SHAPE, size)[1]
    source = transform.apply(transform.invert(matrix), target)
    mapping = frontal.piecewise_affine(source, target, size)
    expected = transform.source_points(matrix[None], size)[0]
    inside = mapping.simplex >= 0
    assert inside.any(), "the test needs pixels inside the landmarks' hull"
    assert (~inside).any(), "the test needs pixels outside the landmarks' hull"
    error = np.abs(mapping.source - expected)
    assert error[inside].max() < 1e-9, f"inside the hull the map is off by up to {error[inside].max()} px"
    assert error[~inside].max() < 1e-9, f"outside the hull the map is off by up to {error[~inside].max()} px"


def test_piecewise_warp_reproduces_affine_warp():
    size = 64
    image = _texture(96)
    matrix = np.array([[0.7, -0.2, 8.0], [0.25, 0.75, -3.0]])
    scale, offset = frontal.placement(SHAPE, size)
    target = scale * SHAPE.points[:, :2] + offset
    source = transform.apply(transform.invert(matrix), target)
    mapping = frontal.piecewise_affine(source, target, size)
    warped = transform.sample(_batch(image), mapping.source[None])
    reference = transform.warp(_batch(image), matrix[None], size)
    difference = (warped - reference).abs().max().item()
    assert difference < 1e-6, f"piecewise and global affine warps differ by {difference} grey levels"


def test_piecewise_map_sends_landmarks_to_sources():
    size = 40
    target = np.array([[5, 5], [34, 5], [34, 34], [5, 34], [20, 12], [12, 22], [27, 25]], dtype=np.float64)
    rng = np.random.default_rng(1)
    # Moved by up to 1.5 px each: the map is affine per triangle only, not globally.
    source = target * 1.3 + 7.0 + rng.uniform(-1.5, 1.5, size=target.shape)
    mapping = frontal.piecewise_affine(source, target, size)
    for (x, y), expected in zip(target.astype(int), source, strict=True):
        got = mapping.source[y, x]
        assert np.allclose(got, expected, atol=1e-9), f"target pixel ({x}, {y}) maps to {got}, expected {expected}"
    # The midpoint of a triangle edge maps to the midpoint of the source edge.
    a, b = mapping.triangles[0][:2]
    middle = (target[a] + target[b]) / 2
    if np.allclose(middle, middle.round()):
        got = mapping.source[int(middle[1]), int(middle[0])]
        assert np.allclose(got, (source[a] + source[b]) / 2), f"edge midpoint maps to {got}"


def test_piecewise_map_rejects_collinear_targets():
    line = np.stack([np.arange(5.0), np.arange(5.0)], axis=1)
    with pytest.raises(ValueError, match="triangulate"):
        frontal.piecewise_affine(line, line, 16)


def test_placement_centres_mirror_plane():
    size = 152
    scale, offset = frontal.placement(SHAPE, size)
    midline = np.abs(SHAPE.points[:, 0]) < 1e-9
    assert midline.sum() > 10, f"only {midline.sum()} generic points lie on the mirror plane"
    placed = scale * SHAPE.points[midline, :2] + offset
    assert np.allclose(placed[:, 0], (size - 1) / 2), f"mirror-plane points land at x = {np.unique(placed[:, 0])}"
    template = transform.template(size)

    def misfit(scale_: float, offset_y: float) -> float:
        five = scale_ * SHAPE.five_points()[:, :2] + np.array([offset[0], offset_y])
        return float(((five - template) ** 2).sum())

    # Scale and vertical offset are the least-squares fit to the template: any change fits worse.
    best = misfit(scale, offset[1])
    for d_scale, d_offset in ((0.1, 0), (-0.1, 0), (0, 0.1), (0, -0.1)):
        worse = misfit(scale + d_scale, offset[1] + d_offset)
        assert worse > best, f"changing (scale, offset) by {(d_scale, d_offset)} gives {worse} <= {best}"


def test_frontal_target_without_residuals():
    size = 100
    camera = _camera(25.0, 5.0)
    points = frontal.project(camera, SHAPE.points)
    bumped = points + np.random.default_rng(2).normal(scale=2.0, size=points.shape)
    scale, offset = frontal.placement(SHAPE, size)
    plain = frontal.frontal_target(SHAPE, camera, bumped, size, residuals=False)
    assert np.allclose(plain, scale * SHAPE.points[:, :2] + offset), "without residuals the target is the shape"
    kept = frontal.frontal_target(SHAPE, frontal.fit_camera(SHAPE.points, bumped), bumped, size, residuals=True)
    moved = np.linalg.norm(kept - plain, axis=1)
    assert moved.mean() > 0, "with residuals the target must move"
    exact = frontal.frontal_target(SHAPE, camera, points, size, residuals=True)
    assert np.allclose(exact, plain), "landmarks that the camera explains exactly have no residuals"


def test_frontal_camera_hides_nothing():
    result = frontal.frontalize(SHAPE, frontal.project(_camera(0.0), SHAPE.points), 80)
    assert result.rms < 1e-9, f"camera fit rms {result.rms} for exact landmarks"
    assert not result.hidden.any(), f"{result.hidden.sum()} pixels hidden for a frontal view"


def test_turned_head_hides_far_side():
    size = 80
    hidden_left = []
    for yaw in (50.0, -50.0):
        result = frontal.frontalize(SHAPE, frontal.project(_camera(yaw), SHAPE.points), size)
        hidden = result.hidden
        assert hidden.any(), f"yaw {yaw}: no hidden pixels"
        hidden_left.append(hidden[:, : size // 2].sum() / hidden.sum())
    assert hidden_left[0] > 0.5 > hidden_left[1], f"share of hidden pixels left of centre for yaw +50/-50: {hidden_left}"


def test_frontalization_undoes_yaw():
    """Render a frontal texture as a turned head, frontalize it, and compare with the texture."""
    size = 96
    face = _texture(size)
    scale, offset = frontal.placement(SHAPE, size)
    frontal_points = scale * SHAPE.points[:, :2] + offset
    camera = _camera(20.0, scale=scale, centre=(size / 2, size / 2 + 5))
    seen = frontal.project(camera, SHAPE.points)
    # The turned view: each of its pixels samples the frontal texture through the inverse piecewise map.
    render_map = frontal.piecewise_affine(frontal_points, seen, size).source[None]
    rendered = transform.sample(_batch(face), render_map)

    result = frontal.frontalize(SHAPE, seen, size)
    restored = transform.sample(rendered, result.source[None])[0].permute(1, 2, 0).numpy()
    # Compare only pixels whose samples stayed inside the texture on both trips, outside hidden triangles.
    ones = torch.ones(1, 1, size, size, dtype=torch.float64)
    valid = transform.sample(transform.sample(ones, render_map), result.source[None])[0, 0].numpy() > 1 - 1e-9
    usable = valid & ~result.hidden
    error = np.abs(restored - face)[usable].mean()
    unaligned = np.abs(rendered[0].permute(1, 2, 0).numpy() - face)[usable].mean()
    assert usable.mean() > 0.3, f"only {usable.mean():.0%} of the crop is compared"
    assert error < 0.2 * unaligned, f"frontalized error {error:.2f} vs {unaligned:.2f} for the turned view"


def test_mirror_hidden_fills_from_other_half():
    crops = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    hidden = torch.zeros(2, 4, 4, dtype=torch.bool)
    hidden[0, 1, 0] = True  # mirror pixel (1, 3) visible: replaced
    hidden[1, 2, 1] = True
    hidden[1, 2, 2] = True  # mirror pixels of each other: both kept
    filled = frontal.mirror_hidden(crops, hidden)
    assert torch.equal(filled[0, :, 1, 0], crops[0, :, 1, 3]), "a hidden pixel takes its mirror pixel"
    assert torch.equal(filled[1], crops[1]), "pixels whose mirror pixels are hidden too keep their values"
    changed = (filled != crops).any(dim=1)
    assert changed.sum().item() == 1, f"{changed.sum().item()} pixels changed, expected 1"


def test_frontal_frame_normalises_pose():
    rotation = _rotation(30.0, 15.0)
    moved = 45.0 * SHAPE.points @ rotation.T + np.array([10.0, -4.0, 7.0])
    framed = frontal.frontal_frame(moved)
    assert np.allclose(framed, SHAPE.points, atol=1e-6), f"max error {np.abs(framed - SHAPE.points).max()}"
    scale, rotation_fit, shift = frontal.similarity_3d(SHAPE.points, moved)
    assert np.isclose(scale, 45.0), f"similarity scale {scale}"
    assert np.allclose(rotation_fit, rotation), "similarity rotation differs"
