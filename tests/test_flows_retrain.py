"""The retraining flow on Prefect's test harness over a small DVC project with cheap Python stages."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows import graph, overrides, process
from flows.retrain import build_deployment, main, retrain
from cnnrepro.params import ParamsError
from tests.flows_project import REPO, STAGES, dvc, make_project


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test server for the whole session; returns its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture
def webhook():
    """A loopback HTTP server that records the JSON bodies POSTed to it; yields (url, bodies)."""
    bodies: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    server.shutdown()
    server.server_close()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    root = make_project(tmp_path / "project")
    monkeypatch.setenv("CNNREPRO_ROOT", str(root))
    return root


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed child that its parent has not reaped yet is a zombie: it no longer runs.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(path: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} was not written within {timeout_s} s")


def _assert_all_dead(pids: list[int], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_pid_alive(pid) for pid in pids):
        time.sleep(0.1)
    survivors = [pid for pid in pids if _pid_alive(pid)]
    assert not survivors, f"processes {survivors} of the stage's tree survived"


def test_stage_order_follows_dependencies(project):
    order = graph.stage_order(project)
    assert order == STAGES, f"stage order {order} does not put dependencies first in declaration order"
    assert graph.stage_order(project, ["train@b"]) == ["prepare", "train@b"], "targets must include only upstream"


def test_flow_runs_stages_then_nothing(project, prefect_api, mlflow_uri, monkeypatch, webhook):
    url, bodies = webhook
    monkeypatch.setenv("TEST_TRACK", "train@a,train@b")
    monkeypatch.setenv("CNNREPRO_WEBHOOK_URL", url)
    first = retrain(root=str(project), promote=False, retries=0)
    assert first["ran"] == STAGES, f"first run should run every stage in order: {first}"
    assert (project / "reports" / "report.txt").is_file(), "report stage output missing"
    status = dvc(project, "status", "--json").stdout.strip()
    assert status == "{}", f"dvc status after the flow is not clean: {status}"

    client = MlflowClient(tracking_uri=mlflow_uri)
    parent = client.get_run(first["parent_run_id"])
    assert parent.info.status == "FINISHED", f"parent run not finished: {parent.info}"
    experiment = parent.info.experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    names = sorted(run.data.tags["cnnrepro.stage"] for run in children)
    assert names == ["train@a", "train@b"], f"stage runs nested under the parent: {names}"
    pipeline_ids = {run.data.tags["cnnrepro.pipeline_id"] for run in children}
    assert pipeline_ids == {first["pipeline_id"]}, f"stage runs do not share the flow's pipeline id: {pipeline_ids}"

    second = retrain(root=str(project), promote=False, retries=0)
    assert second["ran"] == [], f"second run found work although nothing changed: {second}"
    assert second["up_to_date"] == STAGES, f"second run should report every stage up to date: {second}"
    assert [body["state"] for body in bodies] == ["Completed", "Completed"], f"webhook bodies: {bodies}"
    assert bodies[0]["flow"] == "cnnrepro-retrain", f"webhook body names the wrong flow: {bodies[0]}"

    summary = retrain(
        root=str(project), promote=False, retries=0, params_overrides={"tracking.experiment": "other"}
    )
    assert summary["ran"] == ["report"], f"only the stage that reads tracking.experiment should rerun: {summary}"
    assert "experiment: other" in (project / "params.yaml").read_text(), "override not written to params.yaml"


def test_override_invalid_value_restores_params(project):
    before = (project / "params.yaml").read_text()
    with pytest.raises(ParamsError, match="train.lenet5.epochs"):
        overrides.apply(project, None, ["train.lenet5.epochs=-3"])
    assert (project / "params.yaml").read_text() == before, "params.yaml changed although the override was invalid"
    with pytest.raises(ParamsError, match="no_such_key"):
        overrides.apply(project, None, ["train.lenet5.no_such_key=1"])


def test_flow_retries_failing_stage(project, prefect_api, mlflow_uri, tmp_path, monkeypatch):
    counter = tmp_path / "failures"
    monkeypatch.setenv("TEST_FAIL_STAGE", "train@a")
    monkeypatch.setenv("TEST_FAIL_COUNTER", str(counter))
    monkeypatch.setenv("TEST_FAIL_TIMES", "1")
    summary = retrain(root=str(project), promote=False, retries=2, retry_backoff_s=0.1, targets=["train@a"])
    assert counter.read_text() == "1", f"train@a should have failed exactly once: {counter.read_text()}"
    assert summary["ran"] == ["prepare", "train@a"], f"the retried stage did not complete: {summary}"
    assert (project / "models" / "a.txt").is_file(), "train@a output missing after the retry"


def test_flow_failure_posts_webhook(project, prefect_api, mlflow_uri, tmp_path, monkeypatch, webhook):
    url, bodies = webhook
    monkeypatch.setenv("TEST_FAIL_STAGE", "prepare")
    monkeypatch.setenv("TEST_FAIL_COUNTER", str(tmp_path / "failures"))
    monkeypatch.setenv("TEST_FAIL_TIMES", "99")
    with pytest.raises(Exception, match="exited with status"):
        retrain(root=str(project), promote=False, retries=1, retry_backoff_s=0.1, webhook_url=url)
    assert (tmp_path / "failures").read_text() == "2", "prepare should run once plus one retry"
    assert [body["state"] for body in bodies] == ["Failed"], f"webhook should receive one Failed state: {bodies}"
    assert "exited with status" in bodies[0]["message"], f"failure message missing the cause: {bodies[0]}"
    assert "webhook_url" not in bodies[0]["parameters"], "the webhook URL must not be sent in the body"


def test_stage_timeout_kills_process_tree(project, prefect_api, mlflow_uri, tmp_path, monkeypatch):
    pid_file = tmp_path / "pids"
    monkeypatch.setenv("TEST_HANG_STAGE", "prepare")
    monkeypatch.setenv("TEST_PID_FILE", str(pid_file))
    started = time.monotonic()
    with pytest.raises(process.CommandTimeout):
        retrain(root=str(project), promote=False, retries=2, stage_timeout_s=8, kill_grace_s=2)
    elapsed = time.monotonic() - started
    pids = [int(pid) for pid in pid_file.read_text().split()]
    _assert_all_dead(pids)
    assert elapsed < 60, f"a timed-out stage must not be retried; the flow took {elapsed:.0f} s"


@pytest.mark.slow
def test_sigterm_on_flow_kills_process_tree(project, prefect_api, tmp_path, mlflow_uri):
    """The runner and workers cancel a flow run by sending SIGTERM to its process."""
    pid_file = tmp_path / "pids"
    env = {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "TEST_HANG_STAGE": "prepare",
        "TEST_PID_FILE": str(pid_file),
    }
    flow_process = subprocess.Popen(
        [sys.executable, "-m", "flows.retrain", "run", "--root", str(project), "--no-promote", "--retries", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        pids = [int(pid) for pid in _wait_for(pid_file, 90).split()]
        flow_process.send_signal(signal.SIGTERM)
        output, _ = flow_process.communicate(timeout=60)
    finally:
        if flow_process.poll() is None:
            flow_process.kill()
    assert flow_process.returncode != 0, f"flow process should fail when terminated:\n{output[-3000:]}"
    _assert_all_dead(pids)


def test_run_streaming_exception_kills_tree(tmp_path):
    """Any exception while a command runs (Prefect's cancellation, Ctrl-C) ends its whole process tree."""
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    seen: list[str] = []

    def cancel_on_first_line(line: str) -> None:
        seen.append(line)
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        process.run_streaming([sys.executable, "-c", script], cwd=tmp_path, on_line=cancel_on_first_line, grace_s=2)
    assert seen, "the grandchild pid line was not streamed"
    _assert_all_dead([int(seen[0])])
    assert not process.RUNNING, f"process groups still registered as running: {process.RUNNING}"
    assert time.monotonic() - started < 30, "killing the tree took longer than the grace period allows"


def test_serve_deployment_has_cron_schedule():
    deployment = build_deployment("nightly", "0 3 * * 0", {"profile": "smoke"}, timezone="Europe/Berlin")
    crons = [schedule.schedule.cron for schedule in deployment.schedules]
    assert crons == ["0 3 * * 0"], f"serve deployment schedules: {deployment.schedules}"
    assert deployment.schedules[0].schedule.timezone == "Europe/Berlin", "time zone not passed to the schedule"
    assert deployment.parameters == {"profile": "smoke"}, f"serve parameters: {deployment.parameters}"


def test_deploy_command_creates_deployment(prefect_api, project, capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="test-process-pool", type="process"))
    code = main(
        ["deploy", "--pool", "test-process-pool", "--cron", "30 2 * * 1", "--root", str(project), "--profile", "smoke",
         "-S", "train.lenet5.epochs=1", "--name", "test-weekly"]
    )
    assert code == 0, f"deploy command failed: {capsys.readouterr()}"
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("cnnrepro-retrain/test-weekly")
    assert deployment.work_pool_name == "test-process-pool", f"deployment pool: {deployment.work_pool_name}"
    crons = [schedule.schedule.cron for schedule in deployment.schedules]
    assert crons == ["30 2 * * 1"], f"deployment schedules: {deployment.schedules}"
    assert deployment.entrypoint == "flows.retrain.retrain", f"entrypoint: {deployment.entrypoint}"
    assert deployment.job_variables["working_dir"] == str(project), f"job variables: {deployment.job_variables}"
    expected = {"profile": "smoke", "params_overrides": {"train.lenet5.epochs": 1}, "root": str(project)}
    for key, value in expected.items():
        assert deployment.parameters.get(key) == value, f"parameter {key}: {deployment.parameters}"


@pytest.mark.slow
def test_prefect_yaml_deploys(prefect_api):
    """`prefect deploy --all` with the repository's prefect.yaml creates the weekly deployment."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="cnnrepro-process", type="process"))
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        cwd=REPO,
        env={**os.environ, "PREFECT_API_URL": prefect_api},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"prefect deploy failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("cnnrepro-retrain/weekly-retrain")
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * 0"], f"schedules: {deployment.schedules}"
    assert deployment.parameters.get("profile") == "quick", f"parameters: {deployment.parameters}"
    assert deployment.pull_steps[0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO), (
        f"pull steps: {deployment.pull_steps}"
    )
