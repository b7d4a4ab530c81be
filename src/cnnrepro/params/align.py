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
    select: Literal["largest", "central"] = "largest"
    # Side lengths of the square crops written per image; 152 is DeepFace's input.
    sizes: tuple[PositiveInt, ...] = (152,)
    batch_size: PositiveInt = 32
    workers: int = Field(2, ge=0)
