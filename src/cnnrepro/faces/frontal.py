"""DeepFace's 3D alignment: fit an affine camera to dense landmarks and warp the face to the frontal view.

Taigman et al. (CVPR 2014, Sec. 2) localise 67 fiducial points, fit a 2 x 4 affine camera from a generic 3D
face shape to them, and frontalise with a piecewise-affine warp over a Delaunay triangulation of the points.
Here the points are MediaPipe's 468 face-mesh landmarks (`mesh`), and the rest works on any landmark set:

- the generic shape (`face_shape.csv`) is the mean 3D face-mesh shape of LFW images, built by
  `scripts/build_face_shape.py`, in a frontal frame whose x = 0 plane is the face's mirror plane;
- the camera is fitted by ordinary least squares. The paper uses generalised least squares with a covariance
  of the fiducial errors, which needs a held-out error model that MediaPipe does not provide;
- the destination of each landmark is the generic shape's frontal projection plus that landmark's camera-fit
  residual, as in the paper, so that a person's own geometry is kept (`residuals: false` drops it);
- crop pixels inside the landmarks' convex hull map through their triangle's affine map. Pixels outside it
  map through one affine map fitted to the hull's landmarks, which keeps the hair and background in place;
- triangles that the camera views from behind, or whose detected points fold over, are hidden. Their pixels are
  replaced by the mirror-image pixels from the other half of the face where those are visible (the paper
  blends them with their symmetric counterparts).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.tri import Triangulation
from scipy.spatial import Delaunay, QhullError

from cnnrepro.faces import transform

SHAPE_FILE = Path(__file__).with_name("face_shape.csv")

# Face-mesh indices whose means give the points of the five-point template, in its image order: the eye on the
# image's left (outer and inner corner), the other eye, the nose tip, the left and the right mouth corner.
FIVE_POINT_GROUPS: tuple[tuple[int, ...], ...] = ((33, 133), (362, 263), (1,), (61,), (291,))
# Face-mesh indices of the forehead top and the chin, which fix the vertical axis of the frontal frame.
FOREHEAD, CHIN = 10, 152


@dataclass(frozen=True)
class FaceShape:
    """A generic 3D face: x to the image's right, y down, z away from the camera, mirror plane x = 0."""

    points: np.ndarray  # (n, 3)
    groups: tuple[tuple[int, ...], ...] = FIVE_POINT_GROUPS

    def five_points(self) -> np.ndarray:
        return group_means(self.points, self.groups)


def group_means(points: np.ndarray, groups: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Return one row per index group: the mean of that group's points."""
    return np.stack([np.asarray(points)[list(group)].mean(axis=0) for group in groups])


def load_shape(path: Path = SHAPE_FILE) -> FaceShape:
    """Read a generic shape written by `save_shape` (CSV with columns x, y, z)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: rebuild it with scripts/build_face_shape.py")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [(float(r["x"]), float(r["y"]), float(r["z"])) for r in csv.DictReader(handle)]
    return FaceShape(points=np.array(rows, dtype=np.float64))


def save_shape(points: np.ndarray, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["x", "y", "z"])
        writer.writerows([f"{v:.5f}" for v in row] for row in np.asarray(points))


def similarity_3d(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Return (scale, rotation 3 x 3, translation) that best maps source (n, 3) onto target (Umeyama 1991)."""
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - mean_s, target - mean_t
    u, singular, vt = np.linalg.svd(dst.T @ src / len(source))
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = (singular * sign).sum() / ((src**2).sum() / len(source))
    return float(scale), rotation, mean_t - scale * rotation @ mean_s


def frontal_frame(points: np.ndarray, groups: tuple[tuple[int, ...], ...] = FIVE_POINT_GROUPS) -> np.ndarray:
    """Express face-mesh points (n, 3) in the frontal frame, scaled to an inter-ocular distance of 1.

    x runs from the left-image eye centre to the other one, y from the forehead top towards the chin
    (orthogonalised against x), and z = x cross y points away from the camera. The origin is the midpoint of
    the eye centres, moved in x onto the mean of the mirror-plane landmarks (nose tip, forehead, chin).
    """
    five = group_means(points, groups)
    x_axis = five[1] - five[0]
    ocular = np.linalg.norm(x_axis)
    x_axis /= ocular
    down = points[CHIN] - points[FOREHEAD]
    y_axis = down - (down @ x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    z_axis = np.cross(x_axis, y_axis)
    basis = np.stack([x_axis, y_axis, z_axis])
    framed = (points - (five[0] + five[1]) / 2) @ basis.T / ocular
    midline = framed[[groups[2][0], FOREHEAD, CHIN], 0].mean()
    framed[:, 0] -= midline
    return framed


def fit_camera(points3d: np.ndarray, points2d: np.ndarray) -> np.ndarray:
    """Return the 2 x 4 affine camera P minimising sum |P [X; 1] - x|^2 over the point pairs.

    Eight unknowns need at least four points that are not coplanar; otherwise ValueError.
    """
    points3d = np.asarray(points3d, dtype=np.float64)
    points2d = np.asarray(points2d, dtype=np.float64)
    if len(points3d) != len(points2d):
        raise ValueError(f"{len(points3d)} 3D points but {len(points2d)} 2D points")
    design = np.hstack([points3d, np.ones((len(points3d), 1))])
    if np.linalg.matrix_rank(design) < 4:
        raise ValueError("cannot fit an affine camera: the 3D points are coplanar or fewer than four")
    solution, *_ = np.linalg.lstsq(design, points2d, rcond=None)
    return solution.T


def project(camera: np.ndarray, points3d: np.ndarray) -> np.ndarray:
    return np.asarray(points3d, dtype=np.float64) @ camera[:, :3].T + camera[:, 3]


def placement(shape: FaceShape, size: int, margin: float = 0.0) -> tuple[float, np.ndarray]:
    """Return (scale, offset) that put the shape's x-y onto a size x size crop: crop = scale * xy + offset.

    The scale and vertical offset fit the shape's five points to the 2D aligner's template by least squares,
    so that both methods frame the face alike. The mirror plane x = 0 goes to the centre column, which keeps
    the frontal target mirror-symmetric.
    """
    five = shape.five_points()[:, :2]
    goal = transform.template(size, margin)
    centre = (size - 1) / 2
    design = np.zeros((10, 2))
    design[:5, 0] = five[:, 0]
    design[5:, 0] = five[:, 1]
    design[5:, 1] = 1.0
    rhs = np.concatenate([goal[:, 0] - centre, goal[:, 1]])
    (scale, offset_y), *_ = np.linalg.lstsq(design, rhs, rcond=None)
    return float(scale), np.array([centre, offset_y])


def frontal_target(
    shape: FaceShape, camera: np.ndarray, points2d: np.ndarray, size: int, margin: float = 0.0, residuals: bool = True
) -> np.ndarray:
    """Return the crop positions (n, 2) that the landmarks `points2d` move to.

    Each is the generic point's frontal position. With `residuals`, the camera-fit residual is added, taken back
    into the shape's frame through the pseudo-inverse of the camera's 2 x 3 part and scaled like the shape.
    """
    scale, offset = placement(shape, size, margin)
    target = scale * shape.points[:, :2] + offset
    if residuals:
        residual = np.asarray(points2d, dtype=np.float64) - project(camera, shape.points)
        in_shape = residual @ np.linalg.pinv(camera[:, :3]).T  # (n, 3) in shape units
        target = target + scale * in_shape[:, :2]
    return target


@dataclass(frozen=True)
class PiecewiseMap:
    """The image position that each crop pixel samples, and the triangle that contains the pixel."""

    source: np.ndarray  # (size, size, 2) image pixel coordinates (x, y)
    simplex: np.ndarray  # (size, size) triangle index, -1 outside the landmarks' convex hull
    triangles: np.ndarray  # (m, 3) landmark indices of the triangles


def piecewise_affine(source: np.ndarray, target: np.ndarray, size: int) -> PiecewiseMap:
    """Map every pixel of a size x size crop to the image, given landmarks at `source` (image) and `target` (crop).

    The triangles are the Delaunay triangulation of the targets. A pixel centre in a triangle takes the same
    barycentric coordinates in the source triangle. A pixel outside all triangles uses the least-squares affine
    map from the targets on the convex hull to their sources.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2:
        raise ValueError(f"source and target must both be (n, 2), got {source.shape} and {target.shape}")
    try:
        mesh = Delaunay(target)
    except QhullError as err:
        raise ValueError(f"cannot triangulate {len(target)} target points: {err}") from err

    axis = np.arange(size, dtype=np.float64)
    gx, gy = np.meshgrid(axis, axis)
    pixels = np.stack([gx.ravel(), gy.ravel()], axis=1)
    simplex = _find_triangles(mesh, target, pixels)
    inside = simplex >= 0

    triangles = mesh.simplices[simplex[inside]]  # (k, 3)
    first, second, third = (target[triangles[:, k]] for k in range(3))
    edge1, edge2, offset = second - first, third - first, pixels[inside] - first
    determinant = edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]
    weight2 = (offset[:, 0] * edge2[:, 1] - offset[:, 1] * edge2[:, 0]) / determinant
    weight3 = (edge1[:, 0] * offset[:, 1] - edge1[:, 1] * offset[:, 0]) / determinant
    barycentric = np.stack([1.0 - weight2 - weight3, weight2, weight3], axis=1)
    corners = source[triangles]  # (k, 3, 2)

    mapped = np.empty_like(pixels)
    mapped[inside] = np.einsum("kj,kjd->kd", barycentric, corners)
    if not inside.all():
        # Fitted to the hull's corners only, so that it agrees best with the triangles along the hull.
        corners_on_hull = np.unique(mesh.convex_hull)
        design = np.hstack([target[corners_on_hull], np.ones((len(corners_on_hull), 1))])
        overall, *_ = np.linalg.lstsq(design, source[corners_on_hull], rcond=None)
        mapped[~inside] = np.hstack([pixels[~inside], np.ones((int((~inside).sum()), 1))]) @ overall
    return PiecewiseMap(
        source=mapped.reshape(size, size, 2),
        simplex=simplex.reshape(size, size),
        triangles=mesh.simplices.copy(),
    )


def _find_triangles(mesh: Delaunay, target: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Return the index of the triangle containing each pixel, -1 outside them all.

    matplotlib's trapezoid-map search is used first: on a 152 x 152 crop with half its pixels outside the
    hull it took 16 ms where scipy's `find_simplex` took 570 ms (one busy CPU core). scipy is the fallback
    for a triangulation that matplotlib rejects as invalid.
    """
    try:
        finder = Triangulation(target[:, 0], target[:, 1], mesh.simplices).get_trifinder()
        return np.asarray(finder(pixels[:, 0], pixels[:, 1]), dtype=np.int64)
    except (RuntimeError, ValueError):
        return mesh.find_simplex(pixels).astype(np.int64)


def _signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = (points[triangles[:, k]] for k in range(3))
    ab, ac = b - a, c - a
    return ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]


def hidden_triangles(
    triangles: np.ndarray, shape: FaceShape, camera: np.ndarray, source: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """Flag the triangles whose image pixels do not show their part of the face.

    A triangle is hidden when the fitted camera views the generic shape's triangle from behind, or when its
    detected image points wind the other way round than its crop points (a fold).
    """
    seen = _signed_areas(project(camera, shape.points), triangles)
    frontal = _signed_areas(shape.points[:, :2], triangles)
    folded = _signed_areas(np.asarray(source, dtype=np.float64), triangles) * _signed_areas(target, triangles)
    return (seen * frontal <= 0) | (folded <= 0)


def mirror_hidden(crops: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Replace hidden pixels of crops (N, C, S, S) by their mirror pixels across the centre column.

    `hidden` is (N, S, S) bool. A pixel whose mirror pixel is hidden too keeps its own value.
    """
    # NOTE: on strongly turned LFW faces, hidden strips along the face contour took mirror pixels from beyond
    # the other side's contour, which left thin slivers of hair or background colour inside the face.
    flipped_hidden = hidden.flip(-1)
    use_mirror = (hidden & ~flipped_hidden)[:, None]
    return torch.where(use_mirror, crops.flip(-1), crops)


@dataclass(frozen=True)
class Frontalization:
    """One face's frontal warp for one crop size."""

    source: np.ndarray  # (size, size, 2) image pixel coordinates to sample
    hidden: np.ndarray  # (size, size) bool: pixels in hidden triangles
    camera: np.ndarray  # (2, 4) fitted affine camera
    rms: float  # root-mean-square camera-fit residual in image pixels


def frontalize(
    shape: FaceShape, points2d: np.ndarray, size: int, margin: float = 0.0, residuals: bool = True
) -> Frontalization:
    """Fit the camera to one face's landmarks (n, 2) and build its frontal warp onto a size x size crop."""
    points2d = np.asarray(points2d, dtype=np.float64)[:, :2]
    camera = fit_camera(shape.points, points2d)
    rms = float(np.sqrt(((project(camera, shape.points) - points2d) ** 2).sum(axis=1).mean()))
    target = frontal_target(shape, camera, points2d, size, margin, residuals)
    mapping = piecewise_affine(points2d, target, size)
    hidden_tri = hidden_triangles(mapping.triangles, shape, camera, points2d, target)
    hidden = np.zeros(mapping.simplex.shape, dtype=bool)
    inside = mapping.simplex >= 0
    hidden[inside] = hidden_tri[mapping.simplex[inside]]
    return Frontalization(source=mapping.source, hidden=hidden, camera=camera, rms=rms)

