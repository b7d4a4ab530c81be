"""SIGKILL of a whole `dvc repro` during the train stage, then a plain `dvc repro` in the same project.

The kill hits the process group, as a job scheduler ends a job. DVC and the stage process die together and
leave DVC's stage lock (`.dvc/tmp/rwlock`) naming the dead DVC process. DVC 3.67 drops lock entries whose process
no longer exists, so the rerun must complete without manual cleanup and reach the metrics of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.test_pipeline_e2e import _copy_checkout, _offline_env

pytestmark = pytest.mark.slow

TARGET = "evaluate@lenet5"
# Files compared with the uninterrupted run, minus their wall-clock fields.
METRICS = ("metrics/download/mnist.json", "metrics/train/lenet5.json", "metrics/evaluate/lenet5.json")
TIMING_WORDS = ("seconds", "per_s")


def _project(root: Path, shared_data: Path) -> dict[str, str]:
    root.mkdir(parents=True)
    _copy_checkout(root)
    env = _offline_env(shared_data)
    env["OMP_NUM_THREADS"] = "1"
    subprocess.run([sys.executable, "-m", "cnnrepro", "profile", "smoke"], cwd=root, env=env, check=True,
                   capture_output=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    # Several epochs with deterministic kernels, so that the kill lands inside training and a resumed run
    # can match the uninterrupted one exactly.
    params["train"]["lenet5"].update(epochs=4, max_batches=30, workers=0, threads=1, device="cpu", deterministic=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return env


def _repro(root: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", "repro", TARGET], cwd=root, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _metrics(root: Path) -> dict[str, dict]:
    found = {}
    for name in METRICS:
        data = json.loads((root / name).read_text())
        found[name] = {k: v for k, v in data.items() if not any(word in k for word in TIMING_WORDS)}
    return found


@pytest.fixture(scope="module")
def expected(tmp_path_factory, shared_data) -> dict[str, dict]:
    """The metrics of an uninterrupted `dvc repro`."""
    reference = tmp_path_factory.mktemp("reference") / "project"
    env = _project(reference, shared_data)
    done = _repro(reference, env)
    assert done.returncode == 0, f"uninterrupted dvc repro failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return _metrics(reference)


def _start_until_training(root: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start `dvc repro` in its own process group and return once training has saved its first checkpoint."""
    process = subprocess.Popen([sys.executable, "-m", "dvc", "repro", TARGET], cwd=root, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    checkpoints = root / ".cnnrepro" / "checkpoints" / "lenet5"
    deadline = time.monotonic() + 600
    # The first epoch's checkpoint shows that training runs and has epochs left.
    while not any(checkpoints.rglob("last.pt")):
        assert process.poll() is None, f"dvc repro ended with {process.returncode} before training started"
        assert time.monotonic() < deadline, "no training checkpoint within 600 s"
        time.sleep(0.1)
    return process


def _lock_holders(root: Path) -> set[int]:
    rwlock = json.loads((root / ".dvc" / "tmp" / "rwlock").read_text())
    return {info["pid"] for infos in rwlock.get("write", {}).values() for info in
            (infos if isinstance(infos, list) else [infos])}


def _train_statuses(root: Path) -> list[str]:
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cnnrepro")
    runs = client.search_runs([experiment.experiment_id], "tags.`cnnrepro.stage` = 'train@lenet5'")
    return sorted(run.info.status for run in runs)


def _up_to_date(root: Path, env: dict[str, str]) -> str:
    status = subprocess.run([sys.executable, "-m", "dvc", "status", TARGET], cwd=root, env=env, capture_output=True,
                            text=True, timeout=300)
    return status.stdout


def test_dvc_repro_group_sigkill_then_rerun(tmp_path, shared_data, expected, fault_record):
    root = tmp_path / "killed"
    env = _project(root, shared_data)
    process = _start_until_training(root, env)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    visible = [name for name in ("models/lenet5", *METRICS[1:]) if (root / name).exists()]
    holders = _lock_holders(root)
    rerun = _repro(root, env)
    found = _metrics(root) if rerun.returncode == 0 else {}
    fault_record(kind="kill", stage=f"dvc repro {TARGET} (process group)", exit=process.returncode,
                 partial_visible=visible, rerun_exit=rerun.returncode,
                 rerun_differences=sorted(name for name in expected if found.get(name) != expected[name]))

    assert process.returncode == -signal.SIGKILL, f"dvc repro ended with {process.returncode}"
    assert visible == [], f"the killed run left train or evaluate outputs: {visible}"
    assert process.pid in holders, f"the killed dvc repro left no stage lock to clean up: {holders}"
    assert rerun.returncode == 0, f"plain dvc repro after the kill failed:\n{rerun.stdout[-3000:]}\n{rerun.stderr[-3000:]}"
    assert "resuming from" in rerun.stderr, "the rerun did not resume training from the last checkpoint"
    assert found == expected, "metrics after the kill and rerun differ from the uninterrupted run"
    assert "up to date" in _up_to_date(root, env), "dvc status reports changes after the rerun"
    statuses = _train_statuses(root)
    assert statuses == ["FINISHED", "KILLED"], f"train@lenet5 MLflow runs after the kill and rerun: {statuses}"


def test_dvc_process_sigkill_orphans_stage(tmp_path, shared_data, expected, fault_record):
    """Only the `dvc` process dies (`kill -9 <pid>`): its stage keeps running while the user reruns at once."""
    import psutil

    root = tmp_path / "killed"
    env = _project(root, shared_data)
    process = _start_until_training(root, env)
    orphans = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    try:
        rerun = _repro(root, env)
        psutil.wait_procs(orphans, timeout=300)
    finally:
        for orphan in orphans:
            if orphan.is_running():
                orphan.kill()
    found = _metrics(root) if rerun.returncode == 0 else {}
    fault_record(kind="kill", stage=f"dvc repro {TARGET} (dvc process only)", exit=process.returncode,
                 partial_visible=[], rerun_exit=rerun.returncode,
                 rerun_differences=sorted(name for name in expected if found.get(name) != expected[name]))

    assert process.returncode == -signal.SIGKILL, f"dvc repro ended with {process.returncode}"
    assert orphans, "dvc repro had no stage process when it was killed"
    assert rerun.returncode == 0, f"plain dvc repro after the kill failed:\n{rerun.stdout[-3000:]}\n{rerun.stderr[-3000:]}"
    assert found == expected, "metrics after the kill and rerun differ from the uninterrupted run"
    assert "up to date" in _up_to_date(root, env), "dvc status reports changes after the rerun and the orphan"
    statuses = _train_statuses(root)
    assert "RUNNING" not in statuses, f"train@lenet5 MLflow runs after the orphan ended: {statuses}"
