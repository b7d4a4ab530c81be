"""Stage runs in MLflow, the spool that keeps records while the server is down, and `tracking sync`."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from cnnrepro import tracking
from cnnrepro.tracking import spool


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_stage_run_records_params_metrics_tags(tmp_path, mlflow_uri):
    artifact = tmp_path / "report.json"
    artifact.write_text("{}")
    with tracking.stage_run("train@lenet5", profile="smoke", params={"train.lenet5.epochs": 2}, root=tmp_path) as run:
        run.log_metrics({"val_error": 0.5}, step=1)
        run.log_artifact(artifact)
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("cnnrepro").experiment_id])
    assert len(runs) == 1, f"expected one run, found {len(runs)}"
    found = runs[0]
    assert found.data.tags["cnnrepro.stage"] == "train@lenet5", found.data.tags
    assert found.data.tags["cnnrepro.profile"] == "smoke", found.data.tags
    assert found.data.params["train.lenet5.epochs"] == "2", found.data.params
    assert found.data.metrics["val_error"] == 0.5, found.data.metrics
    assert found.info.status == "FINISHED", found.info.status
    names = [a.path for a in client.list_artifacts(found.info.run_id)]
    assert names == ["report.json"], names


def test_failed_body_marks_run_failed(tmp_path, mlflow_uri):
    with pytest.raises(ValueError), tracking.stage_run("evaluate@lenet5", root=tmp_path):
        raise ValueError("boom")
    client = MlflowClient(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("cnnrepro").experiment_id])[0]
    assert run.info.status == "FAILED", run.info.status


def test_unreachable_server_spools_then_sync_logs(tmp_path, monkeypatch):
    dead = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    artifact = tmp_path / "metrics.json"
    artifact.write_text('{"test_error": 0.1}')
    with tracking.stage_run("evaluate@lenet5", profile="smoke", params={"a": 1}, root=tmp_path) as run:
        run.log_metrics({"test_error": 0.1})
        run.log_artifact(artifact)
    assert run.failure is not None, "an unreachable server must be reported"
    pending = spool.pending(tmp_path / ".cnnrepro")
    assert len(pending) == 1, f"expected one spool folder, found {pending}"

    target = f"sqlite:///{tmp_path / 'later.db'}"
    logged, failed = tracking.sync(tmp_path / ".cnnrepro", uri=target)
    assert (logged, failed) == (1, 0), (logged, failed)
    client = MlflowClient(target)
    runs = client.search_runs([client.get_experiment_by_name("cnnrepro").experiment_id])
    assert len(runs) == 1, "the spooled run must be logged once"
    assert runs[0].data.metrics["test_error"] == 0.1, runs[0].data.metrics
    assert runs[0].data.params["a"] == "1", runs[0].data.params
    assert runs[0].info.status == "FINISHED", runs[0].info.status
    assert [a.path for a in client.list_artifacts(runs[0].info.run_id)] == ["metrics.json"]
    assert spool.pending(tmp_path / ".cnnrepro") == [], "a synced spool folder must be removed"


def test_required_tracking_fails_before_work(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    body_ran = []
    with pytest.raises(tracking.TrackingError, match="tracking.required"):
        with tracking.stage_run("train@lenet5", required=True, root=tmp_path):
            body_ran.append(True)
    assert body_ran == [], "the stage body must not run when required tracking is unreachable"


def test_non_zero_rank_logs_nothing(tmp_path, mlflow_uri):
    store = Path(mlflow_uri.removeprefix("sqlite:///"))
    before = store.read_bytes()
    with tracking.stage_run("train@lenet5", enabled=False, root=tmp_path) as run:
        run.log_metrics({"loss": 1.0})
    assert store.read_bytes() == before, "rank != 0 must not touch the store"
    assert not (tmp_path / ".cnnrepro").exists(), "rank != 0 must not spool records either"


def test_pipeline_id_from_environment(monkeypatch):
    monkeypatch.setenv("CNNREPRO_PIPELINE_ID", "flow-123")
    assert tracking.pipeline_id() == "flow-123"


def test_credentials_never_logged_or_spooled(tmp_path, monkeypatch, caplog):
    secret = "s3cr3t-token"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{secret}@127.0.0.1:{_free_port()}")
    with caplog.at_level("WARNING"), tracking.stage_run("report", root=tmp_path) as run:
        run.log_metrics({"x": 1.0})
    assert secret not in caplog.text, "a tracking password reached the log"
    for path in (tmp_path / ".cnnrepro").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), f"a tracking password reached {path}"
    assert tracking.run.redact(f"http://alice:{secret}@host:5000/x") == "http://***@host:5000/x"


class _ShellPayload:
    """Unpickling this object runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _spool_lenet5(tmp_path, monkeypatch) -> Path:
    from cnnrepro import models

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    with tracking.stage_run("train@lenet5", root=tmp_path) as run:
        run.log_model(models.build("lenet5", num_classes=10), name="lenet5")
    (folder,) = spool.pending(tmp_path / ".cnnrepro")
    return folder


def test_spooled_model_is_state_dict_and_syncs(tmp_path, monkeypatch):
    import torch

    folder = _spool_lenet5(tmp_path, monkeypatch)
    stored = folder / "models" / "lenet5.pt"
    saved = torch.load(stored, map_location="cpu", weights_only=True)
    assert saved["build"]["family"] == "lenet5", f"spooled build arguments: {saved['build']}"
    target = f"sqlite:///{tmp_path / 'later.db'}"
    logged, failed = tracking.sync(tmp_path / ".cnnrepro", uri=target)
    assert (logged, failed) == (1, 0), f"sync logged {logged}, failed {failed}"
    client = MlflowClient(target)
    run = client.search_runs([client.get_experiment_by_name("cnnrepro").experiment_id])[0]
    models_logged = client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert [m.name for m in models_logged] == ["lenet5"], f"logged models: {models_logged}"


def test_spooled_pickle_payload_is_rejected(tmp_path, monkeypatch):
    import torch

    folder = _spool_lenet5(tmp_path, monkeypatch)
    marker = tmp_path / "payload-ran"
    torch.save({"state_dict": _ShellPayload(marker), "build": {}}, folder / "models" / "lenet5.pt")
    logged, failed = tracking.sync(tmp_path / ".cnnrepro", uri=f"sqlite:///{tmp_path / 'later.db'}")
    assert not marker.exists(), "sync unpickled a spooled file and ran its payload"
    assert (logged, failed) == (0, 1), f"sync logged {logged}, failed {failed}"
    assert spool.pending(tmp_path / ".cnnrepro") == [folder], "a rejected spool folder must stay for inspection"


def test_killed_stage_run_is_closed_on_rerun(tmp_path, mlflow_uri):
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = ended.stdout.strip()
    with tracking.stage_run("train@lenet5", root=tmp_path) as first:
        pass
    client = MlflowClient(mlflow_uri)
    # A run as a SIGKILLed stage leaves it: RUNNING, with the pid of a process that has ended.
    orphan = client.create_run(
        client.get_experiment_by_name("cnnrepro").experiment_id,
        tags={**first.tags, "cnnrepro.pid": dead_pid},
    ).info.run_id
    with tracking.stage_run("train@lenet5", root=tmp_path) as rerun:
        pass
    assert client.get_run(orphan).info.status == "KILLED", "the orphaned run must be marked KILLED"
    assert client.get_run(orphan).data.tags["cnnrepro.closed_by"] == rerun.run_id, "closing run not recorded"
    assert client.get_run(first.run_id).info.status == "FINISHED", "a finished run must keep its status"


def test_dvc_command_lines_detected():
    from cnnrepro.tracking.run import _is_dvc

    assert _is_dvc(["/venv/bin/dvc", "repro"]), "the dvc console script"
    assert _is_dvc(["/venv/bin/python", "-m", "dvc", "repro"]), "python -m dvc"
    assert _is_dvc(["/venv/bin/python", "/venv/bin/dvc", "exp", "run"]), "a python running the dvc script"
    assert not _is_dvc(["/venv/bin/python", "-m", "pytest"]), "pytest is not dvc"
    assert not _is_dvc([]), "an empty command line is not dvc"
