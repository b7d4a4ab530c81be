"""Detection and alignment on real photos: facenet-pytorch's test portraits, its group photo, LFW images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnrepro.faces import transform
from cnnrepro.faces.align import ALIGNED, FALLBACK, align_batch, choose_face
from cnnrepro.faces.detector import BatchMTCNN

PEOPLE = ("kate_siegel", "shea_whigham", "paul_rudd", "angelina_jolie")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def detector() -> BatchMTCNN:
    return BatchMTCNN(device="cpu")


def _photo(shared_data, person: str, side: int = 400) -> np.ndarray:
    # The originals are 1125-2048 pixels; 400 keeps the pyramid short and the faces far above min_face_size.
    image = Image.open(shared_data / "faces" / "test_images" / person / "1.jpg").convert("RGB")
    image.thumbnail((side, side))
    return np.asarray(image).copy()


def _batch(*arrays: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays))


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    # Smoothed noise: texture without any face-like structure.
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR)).copy()


@pytest.mark.parametrize("person", PEOPLE)
def test_detector_agrees_with_facenet(shared_data, detector, person):
    from facenet_pytorch import MTCNN

    photo = _photo(shared_data, person)
    boxes, probs, landmarks = MTCNN(device="cpu").detect(Image.fromarray(photo), landmarks=True)
    found = detector.detect(_batch(photo))[0]
    assert len(found) == len(boxes), f"{person}: {len(found)} faces, facenet-pytorch found {len(boxes)}"
    reference = landmarks[int(np.argmax(probs))]
    mine = found.landmarks[int(np.argmax(found.scores))]
    distance = np.abs(reference - mine).max()
    assert distance < 4.0, f"{person}: landmarks differ from facenet-pytorch's by {distance:.2f} px"


@pytest.mark.parametrize("person", PEOPLE)
def test_aligned_eyes_on_template(shared_data, detector, person):
    photo = _photo(shared_data, person)
    found = detector.detect(_batch(photo))
    records, crops = align_batch(
        _batch(photo), found, [person], sizes=(152, 112), select="largest", margin=0.0, fallback_fraction=1.0
    )
    assert records[0].status == ALIGNED, f"{person}: status {records[0].status}"
    for size, crop in crops.items():
        assert crop.shape == (1, size, size, 3), f"{person}: crop shape {crop.shape} for size {size}"
        fit = transform.umeyama(found[0].landmarks[0], transform.template(size))
        mapped = transform.apply(fit, found[0].landmarks[0])[:2]
        # Detect again in the crop: the eyes must be where the fitted transform puts them (the warp is exact)
        # and near the template's eye points (five points never fit a similarity exactly).
        again = detector.detect(torch.from_numpy(crop))[0]
        assert len(again) >= 1, f"{person}: no face found in the {size} px aligned crop"
        eyes = again.landmarks[int(np.argmax(again.scores))][:2]
        warp_error = np.linalg.norm(eyes - mapped, axis=1).max()
        assert warp_error < 2.5, f"{person}: eyes land {warp_error:.2f} px from the fitted points ({size} px)"
        template_error = np.linalg.norm(eyes - transform.template(size)[:2], axis=1).max()
        assert template_error < 0.035 * size, f"{person}: eyes land {template_error:.2f} px from the template"


def test_multiface_selection_rules(shared_data, detector):
    image = Image.open(shared_data / "faces" / "multiface.jpg").convert("RGB")
    image.thumbnail((800, 800))
    photo = np.asarray(image).copy()
    found = detector.detect(_batch(photo))[0]
    assert len(found) >= 4, f"multiface.jpg: only {len(found)} faces found"
    height, width = photo.shape[:2]
    area = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
    centre = np.hypot((found.boxes[:, 0] + found.boxes[:, 2]) / 2 - (width - 1) / 2,
                      (found.boxes[:, 1] + found.boxes[:, 3]) / 2 - (height - 1) / 2)
    largest = choose_face(found, height, width, "largest")
    central = choose_face(found, height, width, "central")
    assert largest == int(np.argmax(area)), f"largest picked face {largest}, areas {area.round()}"
    assert central == int(np.argmin(centre)), f"central picked face {central}, centre offsets {centre.round()}"
    assert largest != central, "multiface.jpg should tell the two rules apart"

    for rule, expected in (("largest", largest), ("central", central)):
        records, _ = align_batch(_batch(photo), [found], ["multi"], sizes=(64,), select=rule, margin=0.0,
                                 fallback_fraction=1.0)
        assert records[0].faces == len(found), f"{rule}: recorded {records[0].faces} faces, found {len(found)}"
        assert records[0].chosen == expected, f"{rule}: recorded choice {records[0].chosen}, expected {expected}"
        assert np.allclose(records[0].box, found.boxes[expected]), f"{rule}: recorded box is not the chosen one"


def test_mixed_batch_faces_and_none(shared_data, detector):
    faces = [np.asarray(Image.fromarray(_photo(shared_data, p)).resize((250, 250))) for p in PEOPLE[:2]]
    batch = _batch(faces[0], _noise(250, 250, 0), faces[1], _noise(250, 250, 1))
    found = detector.detect(batch)
    counts = [len(f) for f in found]
    assert counts[0] >= 1, f"face missed in image 0 of a mixed batch: counts {counts}"
    assert counts[2] >= 1, f"face missed in image 2 of a mixed batch: counts {counts}"
    assert counts[1] == 0, f"faces found in noise image 1: counts {counts}"
    assert counts[3] == 0, f"faces found in noise image 3: counts {counts}"
    records, crops = align_batch(batch, found, ["a", "b", "c", "d"], sizes=(152,), select="largest", margin=0.0,
                                 fallback_fraction=1.0)
    statuses = [r.status for r in records]
    assert statuses == [ALIGNED, FALLBACK, ALIGNED, FALLBACK], f"statuses {statuses}"
    assert records[1].message == "no face detected", f"fallback message {records[1].message!r}"
    # The fallback is the whole 250 px square scaled to 152: compare with PIL's resize of it.
    expected = np.asarray(Image.fromarray(batch[1].numpy()).resize((152, 152), Image.BILINEAR), dtype=np.int16)
    difference = np.abs(crops[152][1].astype(np.int16) - expected).mean()
    assert difference < 3.0, f"centre-crop fallback differs from a plain resize by {difference:.2f} on average"


def test_face_cut_by_border(shared_data, detector):
    photo = _photo(shared_data, "kate_siegel")
    full = detector.detect(_batch(photo))[0]
    # Cut the image through the left eye, so part of the face lies outside.
    cut = int(full.landmarks[0, 0, 0]) + 3
    shifted = photo[:, cut:].copy()
    found = detector.detect(_batch(shifted))[0]
    assert len(found) == 1, f"face cut by the border: {len(found)} faces found"
    moved = found.landmarks[0] + [cut, 0]
    error = np.abs(moved - full.landmarks[0]).max()
    assert error < 5.0, f"landmarks of the cut face are {error:.2f} px off the uncut ones"
    records, crops = align_batch(_batch(shifted), [found], ["cut"], sizes=(152,), select="largest", margin=0.0,
                                 fallback_fraction=1.0)
    assert records[0].status == ALIGNED, f"status {records[0].status}"
    left_edge = crops[152][0, 60:90, :20]
    assert left_edge.max() == 0, "the part of the crop outside the image should be black"


def test_face_below_min_face_size(shared_data):
    image = Image.fromarray(_photo(shared_data, "kate_siegel"))
    tiny = np.asarray(image.resize((image.width * 15 // 100, image.height * 15 // 100), Image.BILINEAR)).copy()
    default = BatchMTCNN(min_face_size=20).detect(_batch(tiny))[0]
    smaller = BatchMTCNN(min_face_size=12).detect(_batch(tiny))[0]
    assert len(smaller) == 1, f"a {tiny.shape[1]}x{tiny.shape[0]} image: face missed even with min_face_size 12"
    width = smaller.boxes[0, 2] - smaller.boxes[0, 0]
    assert width < 20, f"the face is {width:.1f} px wide, not below min_face_size 20"
    assert len(default) == 0, f"min_face_size 20 found {len(default)} faces smaller than 20 px"
    records, _ = align_batch(_batch(tiny), [default], ["tiny"], sizes=(32,), select="largest", margin=0.0,
                             fallback_fraction=1.0)
    assert records[0].status == FALLBACK, f"status {records[0].status}"


def test_batch_invariant_detection(shared_data, detector):
    files = sorted((shared_data / "lfw" / "lfw-deepfunneled").glob("A*/*.jpg"))[:12]
    batch = _batch(*[np.asarray(Image.open(f).convert("RGB")) for f in files])
    together = detector.detect(batch)
    for i, found in enumerate(together):
        alone = detector.detect(batch[i : i + 1])[0]
        assert np.array_equal(found.landmarks, alone.landmarks), f"{files[i].name}: landmarks depend on the batch"
        assert np.array_equal(found.scores, alone.scores), f"{files[i].name}: scores depend on the batch"
