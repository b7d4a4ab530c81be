"""A team's MLflow tracking server on PostgreSQL: a real cluster, a real `mlflow server`, a stage run read back.

The cluster runs from Debian's postgresql package (`.ci/run` installs it). PostgreSQL refuses to run as root,
so under root the server commands run as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

from cnnrepro.tracking import stage_run
from tests.test_sharing_mlflow import _free_port, running_mlflow_server


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL (`apt-get install -y postgresql` on Debian)")
    return found


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture
def postgres():
    """A throw-away PostgreSQL cluster on 127.0.0.1; yields the URI of an empty database `mlflow`."""
    # pytest's tmp_path sits below a folder only root may enter, so the cluster gets a folder of its own.
    base = Path(tempfile.mkdtemp(prefix="cnnrepro-pg-"))
    data = base / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()
    run = lambda command: subprocess.run(_as_server_user(command), capture_output=True, text=True, timeout=120)  # noqa: E731
    init = run([_pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
    assert init.returncode == 0, f"initdb failed: {init.stderr}"
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    start = run([_pg_bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "server.log"), "-w", "start"])
    assert start.returncode == 0, f"pg_ctl start failed: {start.stderr}"
    try:
        created = run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"])
        assert created.returncode == 0, f"createdb failed: {created.stderr}"
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the project installs psycopg2.
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        run([_pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"])
        shutil.rmtree(base, ignore_errors=True)


def test_stage_run_on_postgres_backed_server(postgres, tmp_path, monkeypatch):
    artifacts = tmp_path / "artifacts"
    with running_mlflow_server(postgres, artifacts, tmp_path / "mlflow-server.log") as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv("CNNREPRO_ROOT", str(tmp_path))
        report = tmp_path / "report.md"
        report.write_text("# report\n")
        with stage_run("report", profile="smoke", params={"report.title": "t"}, experiment="team", required=True) as run:
            run.log_metrics({"test_error": 0.05})
            run.log_artifact(report)
        assert run.spool is None, f"the stage fell back to the spool: {run.failure}"

        client = MlflowClient(tracking_uri=uri)
        runs = client.search_runs([client.get_experiment_by_name("team").experiment_id])
        assert len(runs) == 1, f"expected one run in PostgreSQL, found {len(runs)}"
        assert runs[0].data.metrics["test_error"] == 0.05, runs[0].data.metrics
        assert runs[0].data.tags["cnnrepro.stage"] == "report", runs[0].data.tags
        assert [a.path for a in client.list_artifacts(runs[0].info.run_id)] == ["report.md"], "artifact proxied"
        assert any(artifacts.rglob("report.md")), "the server stored the artifact"
