"""align.method none and 3d: box crops, the face-mesh client, the 3D path with stand-in landmarkers, params.

MediaPipe is not installed in the test environment. The 3D path runs with stand-in landmark functions, and
the face-mesh client runs against `mesh_worker.serve` with a stand-in detector in a real child process.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cnnrepro import manifest, params
from cnnrepro.errors import InputError
from cnnrepro.faces import frontal, mesh, transform
from cnnrepro.faces.align import ALIGNED, FALLBACK_2D, FrontalOptions, align_batch, box_transform, mesh_landmarks
from cnnrepro.faces.detector import Detections
from cnnrepro.faces.runner import AlignSettings, align_folder
from cnnrepro.faces.store import AlignedCrops

REPO = Path(__file__).resolve().parents[1]
SHAPE = frontal.load_shape()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _detections(box: tuple[float, float, float, float]) -> Detections:
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    # Five landmarks at the template's relative positions inside the box.
    unit = transform.TEMPLATE_UNIT
    marks = np.stack([x1 + unit[:, 0] * width, y1 + unit[:, 1] * height], axis=1)
    return Detections(
        boxes=np.array([box], dtype=np.float32),
        scores=np.array([0.99], dtype=np.float32),
        landmarks=marks[None].astype(np.float32),
    )


def _frontal_face_landmarker(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in face mesh: a frontal generic face filling the centre half of each non-black image."""
    count, size = len(images), images.shape[1]
    scale, offset = frontal.placement(SHAPE, size, margin=0.25)
    points = np.zeros((count, len(SHAPE.points), 3))
    points[:, :, :2] = scale * SHAPE.points[:, :2] + offset
    points[:, :, 2] = scale * SHAPE.points[:, 2]
    found = images.reshape(count, -1).max(axis=1) > 0
    return found, points


def _no_face_landmarker(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(len(images), dtype=bool), np.zeros((len(images), 468, 3))


def _texture_batch(count: int, size: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8))


def test_box_transform_maps_box_to_crop():
    box = (30.0, 40.0, 90.0, 120.0)  # 60 x 80: the square side is 80
    matrix = box_transform(box, 64)
    centre = transform.apply(matrix, [[60.0, 80.0]])[0]
    assert np.allclose(centre, [31.5, 31.5]), f"box centre lands at {centre}"
    assert np.isclose(matrix[0, 0], 64 / 80), f"scale {matrix[0, 0]} for an 80 px square into 64 px"
    wider = box_transform(box, 64, margin=0.25)
    assert np.isclose(wider[0, 0], 64 / 160), f"scale {wider[0, 0]} with margin 0.25 (side doubles)"


def test_method_none_crops_detector_box():
    images = _texture_batch(2, 120)
    box = (20.0, 25.0, 80.0, 95.0)
    detections = [_detections(box), Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))]
    records, crops = align_batch(images, detections, ["a/1.jpg", "a/2.jpg"], sizes=(32,), select="largest",
                                 margin=0.1, fallback_fraction=1.0, method="none")
    expected = transform.to_uint8(transform.warp(images[:1].permute(0, 3, 1, 2).float(),
                                                 box_transform(box, 32, 0.1)[None], 32))
    assert np.array_equal(crops[32][0], expected[0]), "method none must crop the square around the box"
    assert records[0].status == ALIGNED, f"status {records[0].status}"
    assert records[1].status == "fallback-center", f"status {records[1].status} without a face"


def test_mesh_landmarks_map_back_to_image():
    """A bright pixel found by a stand-in landmarker in the mesh crop maps back to its image position."""
    image = np.zeros((1, 200, 180, 3), dtype=np.uint8)
    spot = (70, 130)  # x, y
    image[0, spot[1], spot[0]] = 255

    def brightest(crops):
        flat = crops.sum(axis=3).reshape(len(crops), -1).argmax(axis=1)
        ys, xs = np.divmod(flat, crops.shape[2])
        points = np.zeros((len(crops), 468, 3))
        points[:, :, 0] = xs[:, None]
        points[:, :, 1] = ys[:, None]
        points[:, :, 2] = 10.0
        return np.ones(len(crops), dtype=bool), points

    options = FrontalOptions(landmarker=brightest, shape=SHAPE, crop_scale=2.0, mesh_size=256)
    box = (50.0, 100.0, 110.0, 160.0)  # the crop is 120 px of image for 256 px of crop
    marks = mesh_landmarks(torch.from_numpy(image), [box], options)[0]
    error = np.abs(marks[0, :2] - spot).max()
    crop_pixel = 120 / 256
    assert error <= crop_pixel, f"landmark maps back {error:.2f} px from the spot, more than one crop pixel"
    assert np.isclose(marks[0, 2], 10.0 * crop_pixel), f"depth {marks[0, 2]} not scaled like x"


def test_method_3d_with_stand_in_mesh():
    images = _texture_batch(3, 120)
    images[2] = 0  # the stand-in finds no face in a black image
    box = (25.0, 20.0, 95.0, 100.0)
    detections = [_detections(box)] * 3
    options = FrontalOptions(landmarker=_frontal_face_landmarker, shape=SHAPE)
    paths = ["a/1.jpg", "a/2.jpg", "a/3.jpg"]
    records, crops = align_batch(images, detections, paths, sizes=(48, 24), select="largest", margin=0.0,
                                 fallback_fraction=1.0, method="3d", frontal_options=options)
    statuses = [r.status for r in records]
    assert statuses == [ALIGNED, ALIGNED, FALLBACK_2D], f"statuses {statuses}"
    assert "camera fit rms" in records[0].message, f"message {records[0].message!r}"
    assert "2D alignment" in records[2].message, f"message {records[2].message!r}"
    assert crops[48].shape == (3, 48, 48, 3), f"crop array {crops[48].shape}"
    assert crops[24].shape == (3, 24, 24, 3), f"crop array {crops[24].shape}"

    _, crops_2d = align_batch(images, detections, paths, sizes=(48, 24), select="largest", margin=0.0,
                              fallback_fraction=1.0, method="2d")
    assert np.array_equal(crops[48][2], crops_2d[48][2]), "a face without a mesh must get the 2D crop"
    assert not np.array_equal(crops[48][0], crops_2d[48][0]), "a frontalized crop must differ from the 2D crop"


def test_method_3d_requires_options():
    images = _texture_batch(1, 64)
    with pytest.raises(ValueError, match="frontal_options"):
        align_batch(images, [_detections((10, 10, 50, 50))], ["a/1.jpg"], sizes=(32,), select="largest",
                    margin=0.0, fallback_fraction=1.0, method="3d")


def _stand_in_worker(tmp_path: Path) -> Path:
    script = tmp_path / "stand_in_worker.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import numpy as np
        sys.path.insert(0, {str(mesh.WORKER.parent)!r})
        import mesh_worker

        def detect(image):
            if image.max() == 0:
                return None
            points = np.zeros((468, 3))
            points[:, 0] = image.shape[1]
            points[:, 1] = image.shape[0]
            points[:, 2] = float(sys.argv[1])
            return points

        sys.exit(mesh_worker.serve(detect, sys.stdin.buffer, sys.stdout.buffer))
    """))
    return script


def test_mesh_client_round_trip(tmp_path):
    images = np.full((3, 20, 30, 3), 9, dtype=np.uint8)
    images[1] = 0
    client = mesh.MeshLandmarker(Path(sys.executable), 0.25, worker=_stand_in_worker(tmp_path))
    with client:
        found, points = client(images)
        again, _ = client(images[:1])
    assert found.tolist() == [True, False, True], f"found {found.tolist()}"
    assert points.shape == (3, 468, 3), f"landmark array {points.shape}"
    assert np.all(points[0] == [30, 20, 0.25]), f"landmarks {points[0, 0]} for a 30 x 20 image"
    assert np.all(points[1] == 0), "an image without a face must give zero landmarks"
    assert again.tolist() == [True], "a second request on the same process must work"
    assert client._process.returncode == 0, f"worker exit code {client._process.returncode}"


def test_mesh_client_missing_python(tmp_path):
    with pytest.raises(InputError) as info:
        mesh.MeshLandmarker(tmp_path / "no-env" / "bin" / "python")
    assert mesh.INSTALL_COMMAND in str(info.value), f"message {info.value} lacks the install command"


def test_mesh_client_python_not_executable(tmp_path):
    python = tmp_path / "python"
    python.write_text("not a program\n")
    with pytest.raises(InputError) as info:
        mesh.MeshLandmarker(python)
    assert mesh.INSTALL_COMMAND in str(info.value), f"message {info.value} lacks the install command"


def test_mesh_client_without_mediapipe():
    # The test environment's Python has no mediapipe, so the real worker fails at import.
    with pytest.raises(InputError) as info:
        mesh.MeshLandmarker(Path(sys.executable))
    message = str(info.value)
    assert "failed to start" in message, f"message {message}"
    assert "mediapipe" in message, f"message {message} does not quote the import error"
    assert mesh.INSTALL_COMMAND in message, f"message {message} lacks the install command"


def test_align_folder_3d_fails_before_reading(tmp_path, monkeypatch):
    monkeypatch.setenv(mesh.PYTHON_VARIABLE, str(tmp_path / "missing" / "python"))
    settings = AlignSettings(method="3d", workers=0, device="cpu")
    # The image folder does not exist either: the environment check must come first.
    with pytest.raises(InputError, match="--with-frontalize"):
        align_folder(tmp_path / "raw", tmp_path / "out", settings, state=tmp_path / "state", input_digest="x",
                     progress=False)
    assert not (tmp_path / "state").exists(), "no work folder may be created before the check"


def _lfw_images(shared_data: Path, target: Path, count: int) -> Path:
    for file in sorted((shared_data / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))[:count]:
        (target / file.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target / file.parent.name / file.name)
    manifest.write(target)
    return target


def test_align_folder_3d_on_lfw(shared_data, tmp_path):
    raw = _lfw_images(shared_data, tmp_path / "raw", 4)
    settings = AlignSettings(method="3d", sizes=(48,), batch_size=4, workers=0, device="cpu")
    out = tmp_path / "frontal"
    summary = align_folder(raw, out, settings, state=tmp_path / "state", input_digest="x", progress=False,
                           landmarker=_frontal_face_landmarker)
    assert summary["aligned"] == 4, f"summary {summary}"
    assert summary["fallback_2d"] == 0, f"summary {summary}"
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "3d", f"report.json method {report.get('method')}"
    with open(out / "report.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert all("camera fit rms" in row["message"] for row in rows), f"messages {[r['message'] for r in rows]}"
    assert len(AlignedCrops(out, 48, "align")) == 4, "one crop per image"
    assert (out / "manifest.json").is_file(), "the output must carry manifest.json"

    # Without any mesh every face falls back to the 2D alignment, byte for byte.
    no_mesh = tmp_path / "no-mesh"
    summary = align_folder(raw, no_mesh, settings, state=tmp_path / "state", input_digest="x", progress=False,
                           landmarker=_no_face_landmarker)
    assert summary["fallback_2d"] == 4, f"summary {summary}"
    plain = tmp_path / "plain"
    align_folder(raw, plain, replace(settings, method="2d"), state=tmp_path / "state", input_digest="x",
                 progress=False)
    plain_crops, no_mesh_crops = AlignedCrops(plain, 48, "align"), AlignedCrops(no_mesh, 48, "align")
    assert [r.key for r in no_mesh_crops.rows] == [r.key for r in plain_crops.rows], "the two runs crop other images"
    for row, key in enumerate(r.key for r in plain_crops.rows):
        same = np.array_equal(no_mesh_crops.images[row], plain_crops.images[row])
        assert same, f"{key}: the fallback crop differs from the 2D crop"


def test_frontal_settings_only_key_3d_outputs():
    plain = AlignSettings(method="2d")
    assert plain.output_key() == replace(plain, residuals=False).output_key(), "3d settings must not key 2d work"
    three = AlignSettings(method="3d")
    assert three.output_key() != replace(three, residuals=False).output_key(), "3d settings must key 3d work"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("align.method", "4d", "align.method = '4d' is invalid: Input should be 'none', '2d' or '3d'"),
        ("align.frontal.crop_scale", 0.5, "align.frontal.crop_scale = 0.5 is invalid"),
        ("align.frontal.min_confidence", 1.5, "align.frontal.min_confidence = 1.5 is invalid"),
    ],
)
def test_invalid_align_params(key, value, expected, tmp_path):
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    node = data
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(params.ParamsError) as info:
        params.load(["align"], path)
    assert expected in str(info.value), f"message {info.value!r} lacks {expected!r}"


def test_method_values_accepted(tmp_path):
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    for method in ("none", "2d", "3d"):
        data["align"]["method"] = method
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        section = params.load(["align"], path)["align"]
        assert section.method == method, f"method {section.method} after writing {method}"
