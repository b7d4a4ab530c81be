"""The whole graph end to end: `dvc repro` on the smoke profile, on the real data, offline.

This copies the checkout to a temporary folder, points the download stage at the local data mirror, blocks
outbound HTTP through a dead proxy, and checks every stage output, every metrics file and the MLflow runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]


def _copy_checkout(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        rel = Path(raw.decode())
        source = REPO / rel
        if not source.is_file():
            continue
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / rel)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(command, cwd=target, check=True, capture_output=True)


def _offline_env(shared_data: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    dead_proxy = "http://127.0.0.1:9"
    env.update(
        # Stage commands call `python`: it must be this interpreter, as in an activated venv.
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        CNNREPRO_DATA_MIRROR=str(shared_data),
        HTTP_PROXY=dead_proxy,
        HTTPS_PROXY=dead_proxy,
        http_proxy=dead_proxy,
        https_proxy=dead_proxy,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
    )
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("e2e")
    _copy_checkout(root)
    env = _offline_env(shared_data)
    profile = _run([sys.executable, "-m", "cnnrepro", "profile", "smoke"], root, env, 120)
    assert profile.returncode == 0, profile.stderr
    started = time.perf_counter()
    repro = _run([sys.executable, "-m", "dvc", "repro"], root, env, 900)
    elapsed = time.perf_counter() - started
    assert repro.returncode == 0, f"dvc repro failed:\n{repro.stdout[-6000:]}\n{repro.stderr[-6000:]}"
    print(f"smoke dvc repro took {elapsed:.0f} s")
    return root, env


def _stages(root: Path, env) -> dict[str, dict]:
    out = _run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], root, env, 120)
    assert out.returncode == 0, out.stderr
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {name: lock.get(name) for name in out.stdout.split()}


def test_every_stage_ran_and_wrote_outputs(smoke_repo):
    root, env = smoke_repo
    for name, locked in _stages(root, env).items():
        assert locked is not None, f"{name} is missing from dvc.lock: it did not run"
        for out in locked.get("outs", []):
            path = root / out["path"]
            assert path.exists(), f"{name} did not write {out['path']}"
            if path.is_dir():
                assert any(path.iterdir()), f"{name} wrote an empty folder {out['path']}"


def test_metrics_files_parse(smoke_repo):
    root, env = smoke_repo
    shown = _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], root, env, 120)
    assert shown.returncode == 0, shown.stderr
    metric_files = sorted((root / "metrics").rglob("*.json"))
    assert len(metric_files) >= 20, f"expected metrics for every stage, found {metric_files}"
    for path in metric_files:
        data = json.loads(path.read_text())
        assert isinstance(data, dict) and data, f"{path} holds no metrics"


def test_lenet5_beats_chance(smoke_repo):
    root, _ = smoke_repo
    metrics = json.loads((root / "metrics" / "evaluate" / "lenet5.json").read_text())
    assert metrics["test_error"] < 0.3, f"LeNet-5 test error {metrics['test_error']} is not far below chance (0.9)"


def test_one_mlflow_run_per_stage(smoke_repo):
    root, env = smoke_repo
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cnnrepro")
    assert experiment is not None, "no cnnrepro experiment in the repository's mlflow.db"
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    by_stage: dict[str, list] = {}
    for run in runs:
        by_stage.setdefault(run.data.tags.get("cnnrepro.stage"), []).append(run)
    for name in _stages(root, env):
        found = by_stage.get(name, [])
        assert len(found) == 1, f"{name}: expected one MLflow run, found {len(found)}"
        assert found[0].info.status == "FINISHED", f"{name}: run status {found[0].info.status}"
        assert found[0].data.tags.get("cnnrepro.profile") == "smoke", f"{name}: profile tag missing"
    pipeline_ids = {run.data.tags.get("cnnrepro.pipeline_id") for run in runs}
    assert len(pipeline_ids) == 1, f"one dvc repro must share one pipeline id, found {pipeline_ids}"


def test_second_repro_has_nothing_to_do(smoke_repo):
    root, env = smoke_repo
    again = _run([sys.executable, "-m", "dvc", "repro"], root, env, 300)
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout, f"a second dvc repro reran stages:\n{again.stdout[-3000:]}"
