"""params.yaml `evaluate`, `ensemble` and `report`: the papers' test protocols."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveInt

from cnnrepro.params.base import Section


class MnistEvaluate(Section):
    batch_size: PositiveInt = 1000


class LfwEvaluate(Section):
    similarity: Literal["cosine", "chi2"] = "cosine"
    flip: bool = False
    # error: a pair whose image is missing or failed alignment stops the stage. skip: leave the pair out
    # and report how many were skipped beside the accuracy.
    missing: Literal["error", "skip"] = "error"
    batch_size: PositiveInt = 64


class IlsvrcEvaluate(Section):
    crops: Literal[1, 10, 144] = 1
    batch_size: PositiveInt = 64


class EvaluateParams(Section):
    mnist: MnistEvaluate = MnistEvaluate()
    lfw: LfwEvaluate = LfwEvaluate()
    ilsvrc: IlsvrcEvaluate = IlsvrcEvaluate()


class EnsembleParams(Section):
    crops: tuple[Literal[1, 10, 144], ...] = (1, 10, 144)
    batch_size: PositiveInt = 64


class ReportParams(Section):
    title: str = "cnnrepro: reproduced results beside the papers"
