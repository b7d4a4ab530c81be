"""params.yaml `download`: where each dataset comes from and how it is fetched."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from cnnrepro.params.base import Section


class MnistDownload(Section):
    # The 60,000 training images are fetched too when available; train.lenet5.data decides what trains.
    include_train: bool = True


class LfwDownload(Section):
    images: Literal["deepfunneled", "original"] = "deepfunneled"
    # Keep only the first N matched and N mismatched pairs of each fold in the pairs files (null: all of them).
    # A shortcut for the smoke profile: the numbers it gives are not comparable with the LFW protocol's.
    pairs_per_fold: PositiveInt | None = None


class ImagenetDownload(Section):
    # ILSVRC2012 cannot be downloaded freely: `archives` names the folder holding the user's copies of
    # ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz.
    source: Literal["imagenette", "ilsvrc2012"] = "ilsvrc2012"
    archives: str | None = None


class FacesDownload(Section):
    """The identity-labelled face training set: any `<identity>/<image>` folder or archive."""

    source: Literal["orl", "lfw-train-folds", "folder"] = "orl"
    # source folder: an <identity>/<image> folder, or a .tar, .tar.gz or .zip archive of one.
    path: str | None = None
    # source lfw-train-folds: the people.txt set (0-9) left out of training. Its people are those of the same
    # fold of pairs.txt, the only fold a model trained on this set may be tested on.
    test_fold: int = Field(9, ge=0, le=9)
    # source lfw-train-folds: people with fewer LFW images are left out (a class needs two images to appear
    # in both a training and a validation split).
    min_images: PositiveInt = 2


class DownloadParams(Section):
    timeout_s: PositiveFloat = 60.0
    retries: int = Field(3, ge=0, le=20)
    mnist: MnistDownload = MnistDownload()
    lfw: LfwDownload = LfwDownload()
    imagenet: ImagenetDownload = ImagenetDownload()
    faces: FacesDownload = FacesDownload()
