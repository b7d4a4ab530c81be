"""params.yaml `train`: one section per model family, each with its paper's recipe as the default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from cnnrepro.params.base import Section


class OptimizerParams(Section):
    name: Literal["sgd"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: NonNegativeFloat = 5e-4


class TrainCommon(Section):
    seed: int = 0
    epochs: PositiveInt = 90
    batch_size: PositiveInt = 128
    # Input side length; the paper size by default, smaller in the CPU profiles.
    image_size: PositiveInt = 224
    # Multiplier on every layer's channel count; 1.0 is the paper network.
    width: PositiveFloat = 1.0
    workers: NonNegativeInt = 2
    # CPU threads of each training process; 0 uses the cores left after the data workers (at least 1), since
    # oversubscribed cores slow CPU training many times over.
    threads: NonNegativeInt = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool = True
    compile: bool = False
    deterministic: bool = False
    # Fraction of the training images held out to pick the learning-rate drops and the best epoch.
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    # Stop an epoch after this many batches (0: no limit); the smoke profile uses it to keep runs short.
    max_batches: NonNegativeInt = 0
    optimizer: OptimizerParams = OptimizerParams()


class LeNet5Train(TrainCommon):
    image_size: PositiveInt = 32
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 32
    activation: Literal["scaled_tanh", "relu"] = "scaled_tanh"
    # official: the 60,000 MNIST training images. test-holdout: train on the test set minus `holdout`
    # images and report the error on those, for mirrors that carry only the test set.
    data: Literal["official", "test-holdout"] = "official"
    holdout: PositiveInt = 2000
    # LeCun et al. (1998) lower the global rate of their second-order method 5e-4 -> 2e-4 -> 1e-4 -> 5e-5 -> 1e-5
    # after passes 2, 5, 8 and 12. SGD keeps that shape: the rate is optimizer.lr times lr_factors[i] from epoch
    # lr_milestones[i] on.
    lr_milestones: tuple[PositiveInt, ...] = (2, 5, 8, 12)
    lr_factors: tuple[PositiveFloat, ...] = (0.4, 0.2, 0.1, 0.02)
    # With momentum 0.9, plain SGD on the RBF output diverged within two MNIST epochs at lr 0.01.
    optimizer: OptimizerParams = OptimizerParams(lr=0.003, momentum=0.9, weight_decay=0.0)

    @model_validator(mode="after")
    def _milestones_match_factors(self) -> "LeNet5Train":
        if len(self.lr_milestones) != len(self.lr_factors):
            raise ValueError(
                f"lr_milestones has {len(self.lr_milestones)} entries but lr_factors has {len(self.lr_factors)}; "
                f"give one factor per milestone"
            )
        if list(self.lr_milestones) != sorted(set(self.lr_milestones)):
            raise ValueError(f"lr_milestones {list(self.lr_milestones)} must be strictly increasing")
        return self


class AlexNetTrain(TrainCommon):
    # paper: the paper's weight initialisation. kaiming: He-normal weights and zero biases, which short
    # reduced-size runs need to leave chance level.
    init: Literal["paper", "kaiming"] = "paper"
    image_size: PositiveInt = 227
    towers: Literal[1, 2] = 2
    lrn: bool = True
    overlapping_pool: bool = True
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    activation: Literal["relu", "tanh"] = "relu"
    pca_color: bool = True
    # Standard deviation of the PCA colour noise alpha, per eigenvector.
    pca_std: NonNegativeFloat = 0.1
    # Divide the learning rate by 10 when validation error has not improved for `plateau_patience` epochs.
    plateau_patience: PositiveInt = 5
    optimizer: OptimizerParams = OptimizerParams(lr=0.01, momentum=0.9, weight_decay=5e-4)


class DeepFaceTrain(TrainCommon):
    # paper: the paper's weight initialisation. kaiming: He-normal weights and zero biases, which short
    # reduced-size runs need to leave chance level.
    init: Literal["paper", "kaiming"] = "paper"
    image_size: PositiveInt = 152
    epochs: PositiveInt = 15
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    # Epochs at which the learning rate is divided by 10 (DeepFace set them by hand, down to 1e-4).
    lr_drops: tuple[PositiveInt, ...] = (8, 12)
    optimizer: OptimizerParams = OptimizerParams(lr=0.01, momentum=0.9, weight_decay=0.0)
    # Depth ablations of section 5.1: sub1 removes C3, sub2 removes L4 and L5, sub3 removes C3, L4 and L5.
    variant: Literal["full", "sub1", "sub2", "sub3"] = "full"
    # Training-set ablations of section 5.1. identities: train on the first N identities in name order
    # (0: all of them). images_fraction: keep this fraction of each identity's training images, at least one.
    # The validation images stay those the whole training set would hold out, restricted to the kept
    # identities.
    identities: NonNegativeInt = 0
    images_fraction: float = Field(1.0, gt=0.0, le=1.0)


class GoogLeNetTrain(TrainCommon):
    # paper: the Caffe replication's initialisation. kaiming: He-normal weights and zero biases.
    init: Literal["paper", "kaiming"] = "paper"
    epochs: PositiveInt = 250
    batch_size: PositiveInt = 128
    aux_heads: bool = True
    batch_norm: bool = False
    dropout: float = Field(0.4, ge=0.0, lt=1.0)
    # Multiply the learning rate by 0.96 every 8 epochs.
    lr_decay: float = Field(0.96, gt=0.0, le=1.0)
    lr_decay_epochs: PositiveInt = 8
    # Polyak averaging of the weights for the evaluated model: decay of the running average per step.
    polyak_decay: float = Field(0.9999, ge=0.0, lt=1.0)
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    photometric: bool = True
    # Strength of the photometric distortions: brightness, contrast and saturation factors are drawn
    # uniformly from [1 - strength, 1 + strength].
    photometric_strength: float = Field(0.4, ge=0.0, lt=1.0)
    optimizer: OptimizerParams = OptimizerParams(lr=0.01, momentum=0.9, weight_decay=2e-4)


class TrainParams(Section):
    lenet5: LeNet5Train = LeNet5Train()
    alexnet: AlexNetTrain = AlexNetTrain()
    deepface: DeepFaceTrain = DeepFaceTrain()
    googlenet: GoogLeNetTrain = GoogLeNetTrain()
