"""Checkpoints load with weights_only=True: plain tensors and values pass, pickled code does not run."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from cnnrepro.errors import InputError
from cnnrepro.training import checkpoint


class _Payload:
    """Pickles to a call of os.system that would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_rejects_pickle_payload(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "last.pt"
    torch.save({"epoch": 1, "model": _Payload(marker)}, path)
    with pytest.raises(InputError, match="last.pt"):
        checkpoint.ResumeStore(tmp_path).load()
    assert not marker.exists(), "loading the checkpoint executed pickled code"


def test_load_model_rejects_pickle_payload(tmp_path):
    marker = tmp_path / "payload-ran"
    folder = tmp_path / "lenet5"
    folder.mkdir()
    with open(folder / checkpoint.MODEL_FILE, "wb") as handle:
        pickle.dump(_Payload(marker), handle, protocol=2)
    with pytest.raises(InputError, match="model.pt"):
        checkpoint.load_model(folder)
    assert not marker.exists(), "loading the model file executed pickled code"


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    checkpoint.save({"rng": checkpoint.rng_state()}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    checkpoint.set_rng_state(checkpoint.safe_load(tmp_path / "rng.pt")["rng"])
    assert torch.equal(torch.rand(3), expected[0]), "torch RNG not restored"
    assert np.array_equal(np.random.rand(3), expected[1]), "numpy RNG not restored"
    assert random.random() == expected[2], "python RNG not restored"


def test_fingerprint_changes_with_params_and_data():
    base = checkpoint.fingerprint("lenet5", {"lr": 0.01}, {"mnist": "abc"})
    assert base == checkpoint.fingerprint("lenet5", {"lr": 0.01}, {"mnist": "abc"}), "fingerprint not stable"
    assert base != checkpoint.fingerprint("lenet5", {"lr": 0.02}, {"mnist": "abc"}), "params change ignored"
    assert base != checkpoint.fingerprint("lenet5", {"lr": 0.01}, {"mnist": "abd"}), "data change ignored"
