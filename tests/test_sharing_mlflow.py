"""Sharing runs through an MLflow tracking server: SQLite backend, artifacts proxied by the server."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from cnnrepro.tracking import stage_run


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_mlflow_server(backend_uri: str, artifacts: Path, log_path: Path, timeout_s: float = 180):
    """Run a real `mlflow server` on 127.0.0.1 with proxied artifacts; yield its URI, then kill its group."""
    port = _free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", backend_uri,
        "--serve-artifacts", "--artifacts-destination", str(artifacts),
    ]
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on SQLite; yields (URI, artifact folder)."""
    artifacts = tmp_path / "server-artifacts"
    backend = f"sqlite:///{tmp_path / 'server.db'}"
    with running_mlflow_server(backend, artifacts, tmp_path / "server.log") as uri:
        yield uri, artifacts


def test_stage_runs_on_mlflow_server(mlflow_server, tmp_path, monkeypatch):
    uri, artifacts = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("CNNREPRO_PIPELINE_ID", "shared-test")
    monkeypatch.setenv("CNNREPRO_ROOT", str(tmp_path))
    report = tmp_path / "report.txt"
    report.write_text("stage output\n")
    run_ids = []
    for stage in ("train@lenet5", "evaluate@lenet5"):
        with stage_run(stage, profile="smoke", params={"epochs": 1}, experiment="shared", required=True) as run:
            run.log_metrics({"loss": 0.5}, step=1)
            run.log_artifact(report, "reports")
            run_ids.append(run.run_id)
        assert run.spool is None, f"{stage} fell back to the spool: {run.failure}"

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("shared")
    assert experiment is not None, "experiment 'shared' not created on the server"
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), (
        f"artifacts are not proxied by the server: {experiment.artifact_location}"
    )
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`cnnrepro.pipeline_id` = 'shared-test'")
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids), "runs read back differ from the runs logged"
    for found in runs:
        assert found.info.status == "FINISHED", f"run {found.info.run_name} status {found.info.status}"
        assert found.data.metrics["loss"] == 0.5, f"metric not stored: {found.data.metrics}"
        assert found.data.params["epochs"] == "1", f"param not stored: {found.data.params}"
        listed = [item.path for item in client.list_artifacts(found.info.run_id, "reports")]
        assert listed == ["reports/report.txt"], f"artifacts listed by the server: {listed}"
    stored = list(Path(artifacts).rglob("report.txt"))
    assert len(stored) == 2, f"the server should store both artifacts under --artifacts-destination: {stored}"
    downloaded = client.download_artifacts(run_ids[0], "reports/report.txt", str(tmp_path / "download"))
    assert Path(downloaded).read_text() == "stage output\n", "downloaded artifact differs from the logged one"
