"""params.yaml `evaluate`, `ensemble` and `report`: the papers' test protocols."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator

from cnnrepro.params.base import Section

CropScheme = Literal[1, 10, 144]


def _as_tuple(value):
    """Accept a single crop scheme (`crops: 1`) as well as a list of them."""
    return (value,) if isinstance(value, int) else value


def _distinct(value: tuple) -> tuple:
    if not value:
        raise ValueError("list at least one crop scheme: 1, 10 or 144")
    if len(set(value)) != len(value):
        raise ValueError(f"crop schemes {list(value)} repeat a value")
    return tuple(sorted(value))


class MnistEvaluate(Section):
    batch_size: PositiveInt = 1000


class LfwEvaluate(Section):
    # view2: the 10 folds of pairs.txt, for reporting. view1: fit on pairsDevTrain.txt and test on
    # pairsDevTest.txt, for development and model selection.
    view: Literal["view2", "view1"] = "view2"
    # Image-restricted similarity. cosine: inner product of normalised features with a threshold from the training
    # folds. chi2: DeepFace's weighted chi-squared distance, weights fitted by a linear SVM on the training folds.
    similarity: Literal["cosine", "chi2"] = "cosine"
    # Add the features of the mirrored image to those of the image before normalising.
    flip: bool = False
    # error: a pair whose image is missing or failed alignment stops the stage. skip: leave the pair out
    # and report how many were skipped beside the accuracy.
    missing: Literal["error", "skip"] = "error"
    # PCA dimensions kept before WCCN in the unrestricted protocol.
    wccn_dims: PositiveInt = 128
    batch_size: PositiveInt = 64
    workers: NonNegativeInt = 2


class IlsvrcEvaluate(Section):
    # Test-time crop schemes, each averaging the softmax over its crops: 1 (centre), 10 (AlexNet) and 144
    # (GoogLeNet). One pass over the images computes all of them; GoogLeNet members save each for the ensemble.
    crops: tuple[CropScheme, ...] = (1, 10, 144)
    # Crops per forward pass.
    batch_size: PositiveInt = 144
    workers: NonNegativeInt = 2
    # Evaluate only the first N images of the split (0: all); a smoke-test shortcut, never for reported numbers.
    max_images: NonNegativeInt = 0

    _tuple = field_validator("crops", mode="before")(_as_tuple)
    _check = field_validator("crops")(_distinct)


class EvaluateParams(Section):
    mnist: MnistEvaluate = MnistEvaluate()
    lfw: LfwEvaluate = LfwEvaluate()
    ilsvrc: IlsvrcEvaluate = IlsvrcEvaluate()


class EnsembleParams(Section):
    # Crop schemes of the models x crops grid; each must be among evaluate.ilsvrc.crops.
    crops: tuple[CropScheme, ...] = (1, 10, 144)
    members: PositiveInt = Field(7, le=7)

    _tuple = field_validator("crops", mode="before")(_as_tuple)
    _check = field_validator("crops")(_distinct)


class ReportParams(Section):
    title: str = "cnnrepro: reproduced results beside the papers"
