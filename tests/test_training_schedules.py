"""Learning-rate schedules of the papers and the Polyak average of GoogLeNet."""

from __future__ import annotations

import pytest
import torch

from cnnrepro.params.train import AlexNetTrain, DeepFaceTrain, GoogLeNetTrain, LeNet5Train
from cnnrepro.training import schedules


def test_googlenet_four_percent_every_eight_epochs():
    schedule = schedules.for_section("googlenet", GoogLeNetTrain())
    assert schedule.factor(0) == 1.0, "first epoch must use the base rate"
    assert schedule.factor(7) == 1.0, "epoch 8 (index 7) is still in the first period"
    assert schedule.factor(8) == pytest.approx(0.96), "the rate falls 4% at epoch index 8"
    assert schedule.factor(16) == pytest.approx(0.96**2), "the decay compounds every 8 epochs"
    assert schedule.factor(249) == pytest.approx(0.96**31), "epoch index 249 is in period 31"


def test_deepface_drops_by_ten_at_listed_epochs():
    schedule = schedules.for_section("deepface", DeepFaceTrain(lr_drops=(8, 12)))
    factors = [schedule.factor(epoch) for epoch in range(15)]
    assert factors[:8] == [1.0] * 8, f"no drop expected before epoch 8: {factors[:8]}"
    assert factors[8:12] == pytest.approx([0.1] * 4), f"one division by 10 from epoch 8: {factors[8:12]}"
    assert factors[12:] == pytest.approx([0.01] * 3), f"two divisions by 10 from epoch 12: {factors[12:]}"


def test_lenet5_piecewise_follows_paper_shape():
    schedule = schedules.for_section("lenet5", LeNet5Train())
    factors = [schedule.factor(epoch) for epoch in range(14)]
    expected = [1.0] * 2 + [0.4] * 3 + [0.2] * 3 + [0.1] * 4 + [0.02] * 2
    assert factors == pytest.approx(expected), f"factors {factors} differ from 5e-4, 2e-4, 1e-4, 5e-5, 1e-5 scaled"


def test_alexnet_plateau_divides_after_patience():
    schedule = schedules.for_section("alexnet", AlexNetTrain(plateau_patience=2))
    errors = [0.9, 0.8, 0.8, 0.85, 0.7, 0.75, 0.75]
    factors = []
    for epoch, error in enumerate(errors):
        factors.append(schedule.factor(epoch))
        schedule.observe(epoch, error)
    assert factors[:4] == [1.0] * 4, f"no drop while the error improves or waits out the patience: {factors}"
    assert factors[4] == pytest.approx(0.1), f"two epochs without improvement must divide by 10: {factors}"
    assert schedule.factor(len(errors)) == pytest.approx(0.01), "a second plateau divides by 10 again"


def test_alexnet_plateau_stops_after_three_drops():
    schedule = schedules.PlateauSchedule(1)
    for epoch in range(10):
        schedule.observe(epoch, 0.5)
    assert schedule.factor(10) == pytest.approx(1e-3), "AlexNet divided its rate three times at most"


def test_plateau_state_round_trip():
    schedule = schedules.PlateauSchedule(2)
    for epoch, error in enumerate([0.5, 0.6, 0.6]):
        schedule.observe(epoch, error)
    restored = schedules.PlateauSchedule(2)
    restored.load_state_dict(schedule.state_dict())
    assert restored.factor(3) == schedule.factor(3), "restored schedule must give the same factor"
    assert restored.state_dict() == schedule.state_dict(), "restored schedule must keep best and bad epochs"


def test_polyak_update_warms_up_decay():
    from cnnrepro.training.loop import polyak_update

    averaged = [torch.zeros(3)]
    update = polyak_update(0.999)
    update(averaged, [torch.ones(3)], torch.tensor(1))
    expected = 1.0 - 2.0 / 11.0
    assert torch.allclose(averaged[0], torch.full((3,), expected)), f"first update gave {averaged[0].tolist()}"
    late = [torch.zeros(3)]
    update(late, [torch.ones(3)], torch.tensor(100_000))
    assert torch.allclose(late[0], torch.full((3,), 0.001)), f"late updates must use the full decay: {late[0]}"
