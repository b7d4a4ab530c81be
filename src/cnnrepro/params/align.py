"""params.yaml `align`: MTCNN detection and the similarity warp onto a canonical five-point template."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from cnnrepro.params.base import Section


class DetectorParams(Section):
    # facenet-pytorch's MTCNN defaults, which follow Zhang et al. 2016.
    min_face_size: PositiveInt = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = Field(0.709, gt=0.0, lt=1.0)


class AlignParams(Section):
    detector: DetectorParams = DetectorParams()
    # 2d: similarity warp of five landmarks. DeepFace's 3D frontalisation would be a second method.
    method: Literal["2d"] = "2d"
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
