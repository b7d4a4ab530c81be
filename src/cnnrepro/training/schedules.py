"""Learning-rate schedules of the four papers, as multipliers of the base rate per epoch.

Each schedule returns the factor for the coming epoch (`factor(epoch)`, epochs counted from 0) and sees the
validation error after every epoch (`observe`), so the loop treats fixed and plateau-driven schedules alike.
State is plain numbers, so it goes into a resume checkpoint loaded with weights_only=True.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def step_decay_factor(epoch: int, decay: float, every: int) -> float:
    """Return `decay ** (epoch // every)`: GoogLeNet's "decrease the rate by 4% every 8 epochs"."""
    return decay ** (epoch // every)


def drop_factor(epoch: int, drops: Sequence[int]) -> float:
    """Return 0.1 to the number of drop epochs reached: DeepFace's manual divisions by 10."""
    return 0.1 ** sum(1 for drop in drops if epoch >= drop)


def piecewise_factor(epoch: int, milestones: Sequence[int], factors: Sequence[float]) -> float:
    """Return factors[i] for the last milestone[i] <= epoch, 1.0 before the first."""
    factor = 1.0
    for milestone, value in zip(milestones, factors, strict=True):
        if epoch >= milestone:
            factor = value
    return factor


class Schedule:
    """A factor per epoch that ignores the validation error."""

    def __init__(self, function) -> None:
        self._function = function

    def factor(self, epoch: int) -> float:
        return float(self._function(epoch))

    def observe(self, epoch: int, val_error: float) -> None:
        del epoch, val_error

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        del state


class PlateauSchedule(Schedule):
    """Divide the rate by 10 when the validation error has not improved for `patience` epochs (AlexNet).

    AlexNet divided its rate three times over the whole run, so at most `max_drops` divisions happen. An
    improvement must beat the best error by more than `min_delta` (absolute, in error fraction).
    """

    def __init__(self, patience: int, *, max_drops: int = 3, min_delta: float = 0.0) -> None:
        super().__init__(lambda epoch: 1.0)
        self.patience = patience
        self.max_drops = max_drops
        self.min_delta = min_delta
        self.drops = 0
        self.best = math.inf
        self.bad_epochs = 0

    def factor(self, epoch: int) -> float:
        return 0.1**self.drops

    def observe(self, epoch: int, val_error: float) -> None:
        if val_error < self.best - self.min_delta:
            self.best = val_error
            self.bad_epochs = 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience and self.drops < self.max_drops:
            self.drops += 1
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"drops": self.drops, "best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.drops = int(state["drops"])
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])


def for_section(family: str, section: Any) -> Schedule:
    """Build the schedule of one model family from its validated params section."""
    if family == "lenet5":
        milestones, factors = tuple(section.lr_milestones), tuple(section.lr_factors)
        return Schedule(lambda epoch: piecewise_factor(epoch, milestones, factors))
    if family == "alexnet":
        return PlateauSchedule(section.plateau_patience)
    if family == "deepface":
        drops = tuple(section.lr_drops)
        return Schedule(lambda epoch: drop_factor(epoch, drops))
    if family == "googlenet":
        decay, every = section.lr_decay, section.lr_decay_epochs
        return Schedule(lambda epoch: step_decay_factor(epoch, decay, every))
    raise ValueError(f"unknown model family {family!r}; expected lenet5, alexnet, deepface or googlenet")
