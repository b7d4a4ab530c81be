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


def test_loop_bf16_autocast_on_cpu(tmp_path):
    # bf16 autocast runs the convolutions in bfloat16 while the weights and the optimizer stay in float32.
    reference = training_worker.run(tmp_path / "fp32", epochs=3)
    mixed = training_worker.run(tmp_path / "bf16", epochs=3, precision="bf16", channels_last=True)
    losses = [r["train_loss"] for r in mixed["records"]]
    assert losses[-1] < losses[0], f"bf16 training loss did not fall: {losses}"
    dtypes = {name: t.dtype for name, t in mixed["model"].items() if t.is_floating_point()}
    assert set(dtypes.values()) == {torch.float32}, f"bf16 autocast changed stored weight dtypes: {dtypes}"
    first_fp32, first_bf16 = reference["records"][0]["train_loss"], losses[0]
    # Rounding to bfloat16's 8 bits of precision must show in the loss, or autocast did not run.
    assert first_bf16 != first_fp32, "bf16 run gave the fp32 loss exactly: autocast was not applied"
    assert abs(first_bf16 - first_fp32) < 0.05 * first_fp32, (
        f"first-epoch loss under bf16 ({first_bf16:.4f}) strays from fp32 ({first_fp32:.4f}) by over 5%"
    )


def test_fp16_on_cpu_rejected():
    from cnnrepro.errors import InputError
    from cnnrepro.training.loop import resolve_precision

    with pytest.raises(InputError, match="fp16.*use bf16 or fp32"):
        resolve_precision("fp16", torch.device("cpu"))


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
