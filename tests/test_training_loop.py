"""The training loop: seed determinism, resume after SIGKILL, and torchrun data parallelism."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import training_worker  # noqa: E402

WORKER = Path(__file__).parent / "training_worker.py"
# Timing fields differ between any two runs; everything else must match.
TIMING = ("images_per_s", "seconds")


def _comparable(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _assert_same_weights(first, second, atol=0.0):
    assert first.keys() == second.keys(), "state dicts have different keys"
    for name in first:
        difference = (first[name].double() - second[name].double()).abs().max().item()
        assert difference <= atol, f"{name} differs by {difference} (tolerance {atol})"


def test_loop_same_seed_same_result(tmp_path):
    first = training_worker.run(tmp_path / "a", epochs=2)
    second = training_worker.run(tmp_path / "b", epochs=2)
    assert _comparable(first["records"]) == _comparable(second["records"]), "same seed gave different metrics"
    _assert_same_weights(first["model"], second["model"])
    _assert_same_weights(first["averaged"], second["averaged"])


def test_loop_learns_tiny_task(tmp_path):
    result = training_worker.run(tmp_path / "a", epochs=3)
    losses = [r["train_loss"] for r in result["records"]]
    assert losses[-1] < losses[0], f"training loss did not fall: {losses}"


def test_loop_resume_after_sigkill(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    training_worker.run(reference, epochs=4)

    resume = tmp_path / "resume"
    killed_out = tmp_path / "killed"
    # From epoch 2 on, each epoch ends with a 3 s pause, so the kill lands after epoch 1's checkpoint and
    # before the run finishes.
    child = subprocess.Popen(
        [sys.executable, str(WORKER), str(killed_out), "--epochs", "4", "--resume", str(resume), "--slow-from", "2"],
        env=env,
    )
    deadline = time.monotonic() + 120
    while not (resume / "last.pt").exists():
        assert child.poll() is None, "worker exited before writing its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, f"worker ended with {child.returncode} before the kill"
    assert not (killed_out / "records.json").exists(), "the killed run finished; the kill came too late"
    saved_epoch = torch.load(resume / "last.pt", weights_only=True)["epoch"]
    assert 1 <= saved_epoch < 4, f"checkpoint after epoch {saved_epoch}; expected a mid-run checkpoint"

    subprocess.run(
        [sys.executable, str(WORKER), str(killed_out), "--epochs", "4", "--resume", str(resume)],
        check=True,
        env=env,
        timeout=120,
    )
    expected = json.loads((reference / "records.json").read_text())
    resumed = json.loads((killed_out / "records.json").read_text())
    assert _comparable(resumed) == _comparable(expected), "resumed run's metrics differ from the uninterrupted run"
    weights_expected = torch.load(reference / "weights.pt", weights_only=True)
    weights_resumed = torch.load(killed_out / "weights.pt", weights_only=True)
    _assert_same_weights(weights_expected["model"], weights_resumed["model"])
    _assert_same_weights(weights_expected["averaged"], weights_resumed["averaged"])


def test_loop_torchrun_two_processes_match_one(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = tmp_path / "single"
    subprocess.run([sys.executable, str(WORKER), str(single), "--epochs", "2"], check=True, env=env, timeout=120)
    double = tmp_path / "double"
    subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", str(WORKER), str(double), "--epochs", "2"],
        check=True,
        env=env,
        timeout=180,
    )
    one = json.loads((single / "records.json").read_text())
    two = json.loads((double / "records.json").read_text())
    for a, b in zip(one, two, strict=True):
        for name in ("train_loss", "train_error", "val_error", "lr"):
            assert a[name] == pytest.approx(b[name], abs=1e-5), f"epoch {a['epoch']} {name}: {a[name]} vs {b[name]}"
    weights_one = torch.load(single / "weights.pt", weights_only=True)
    weights_two = torch.load(double / "weights.pt", weights_only=True)
    _assert_same_weights(weights_one["model"], weights_two["model"], atol=1e-5)
    _assert_same_weights(weights_one["averaged"], weights_two["averaged"], atol=1e-5)
