"""params.yaml `align`: MTCNN detection, then no alignment, the 2D similarity warp or DeepFace's 3D frontalization."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from cnnrepro.params.base import Section


class DetectorParams(Section):
    # facenet-pytorch's MTCNN defaults, which follow Zhang et al. 2016.
    min_face_size: PositiveInt = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = Field(0.709, gt=0.0, lt=1.0)


class FrontalParams(Section):
    """Settings of align.method 3d, which needs the optional MediaPipe environment (./setup.sh --with-frontalize)."""

    # Add each landmark's camera-fit residual to its frontal target, as DeepFace does, to keep the person's own
    # face shape. false warps every face onto the generic shape.
    residuals: bool = True
    # Replace pixels of triangles that the camera views from behind by their mirror pixels from the other half.
    mirror: bool = True
    # The face mesh runs on a square of this many detector-box sides around the box ...
    crop_scale: float = Field(2.0, ge=1.0, le=4.0)
    # ... resized to this side in pixels.
    mesh_size: int = Field(256, ge=64, le=1024)
    # MediaPipe's min_detection_confidence for the face inside that square.
    min_confidence: float = Field(0.5, gt=0.0, lt=1.0)


class AlignParams(Section):
    detector: DetectorParams = DetectorParams()
    # none: the square around the detector box, resized (DeepFace's "no alignment" baseline).
    # 2d: similarity warp of the five MTCNN landmarks onto a template.
    # 3d: DeepFace's frontalization from MediaPipe's 468 face-mesh landmarks and a generic 3D face shape.
    method: Literal["none", "2d", "3d"] = "2d"
    frontal: FrontalParams = FrontalParams()
    # With several faces in an image: the largest box, or the box nearest the image centre.
    select: Literal["largest", "central"] = "largest"
    # Side lengths of the square crops written per image; 152 is DeepFace's input.
    sizes: tuple[PositiveInt, ...] = Field((152,), min_length=1)
    # Border around the template, as a fraction of the crop side on each side (0: ArcFace's tight crop).
    margin: float = Field(0.0, ge=0.0, lt=0.5)
    # Without a detected face: a centre crop whose side is this fraction of the shorter image side.
    fallback_fraction: float = Field(1.0, gt=0.0, le=1.0)
    # all: every image. pairs: for a dataset with LFW pairs files, only the images those files name (7,701 of
    # LFW's 13,233 for the full files), which is all that the verification protocols read.
    subset: Literal["all", "pairs"] = "all"
    batch_size: PositiveInt = 32
    # DataLoader processes that decode images; 0 decodes in the main process.
    workers: int = Field(2, ge=0)
    # auto: CUDA when available, else CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # record: an unreadable image becomes an error row of the report; stop: it ends the stage with exit code 1.
    on_error: Literal["record", "stop"] = "record"
