"""Closing RUNNING MLflow runs whose process died: by pid on this host, by heartbeat age for other hosts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from cnnrepro import cli, tracking
from cnnrepro.tracking import stale

HOUR_S = 3600


def _dead_pid() -> str:
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return ended.stdout.strip()


def _running(client: MlflowClient, stage: str, host: str, pid: str, beat_age_s: float | None) -> str:
    """Create a RUNNING run as a stage on `host` leaves it, with its last heartbeat `beat_age_s` seconds ago."""
    experiment = client.get_experiment_by_name("cnnrepro")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("cnnrepro")
    now = time.time()
    tags = {"cnnrepro.stage": stage, "cnnrepro.host": host, "cnnrepro.pid": pid}
    start_s = now - 3 * HOUR_S
    if beat_age_s is not None:
        tags[stale.HEARTBEAT_TAG] = str(int(now - beat_age_s))
    return client.create_run(experiment_id, start_time=int(start_s * 1000), tags=tags).info.run_id


def test_stage_closes_silent_run_of_other_host(tmp_path, mlflow_uri):
    client = MlflowClient(mlflow_uri)
    silent = _running(client, "train@lenet5", "other-host", "12345", beat_age_s=2 * HOUR_S)
    alive = _running(client, "train@lenet5", "other-host", "12346", beat_age_s=60)
    other_stage = _running(client, "train@alexnet", "other-host", "12347", beat_age_s=2 * HOUR_S)

    with tracking.stage_run("train@lenet5", root=tmp_path, stale_after_s=HOUR_S) as rerun:
        pass

    assert client.get_run(silent).info.status == "KILLED", "a run silent for 2 h with a 1 h limit stays RUNNING"
    tags = client.get_run(silent).data.tags
    assert tags["cnnrepro.closed_by"] == rerun.run_id, "the closing run is not recorded"
    assert "other-host" in tags["cnnrepro.closed_reason"], f"reason does not name the host: {tags}"
    assert client.get_run(alive).info.status == "RUNNING", "a run with a heartbeat 1 min ago was closed"
    assert client.get_run(other_stage).info.status == "RUNNING", "a stage closed the runs of another stage"


def test_run_without_heartbeat_uses_start_time(tmp_path, mlflow_uri):
    client = MlflowClient(mlflow_uri)
    old = _running(client, "evaluate@lenet5", "other-host", "1", beat_age_s=None)
    with tracking.stage_run("evaluate@lenet5", root=tmp_path, stale_after_s=HOUR_S):
        pass
    assert client.get_run(old).info.status == "KILLED", "a run started 3 h ago without heartbeats stays RUNNING"


def test_metrics_refresh_heartbeat(tmp_path, mlflow_uri):
    client = MlflowClient(mlflow_uri)
    with tracking.stage_run("train@lenet5", root=tmp_path) as run:
        first = float(client.get_run(run.run_id).data.tags[stale.HEARTBEAT_TAG])
        time.sleep(1.1)
        run.log_metrics({"train_loss": 1.0}, step=1)
        second = float(client.get_run(run.run_id).data.tags[stale.HEARTBEAT_TAG])
    assert second > first, f"log_metrics did not refresh the heartbeat: {first} then {second}"


def test_live_local_run_stays_open(tmp_path, mlflow_uri):
    client = MlflowClient(mlflow_uri)
    with tracking.stage_run("train@lenet5", root=tmp_path, stale_after_s=HOUR_S) as first:
        # The same stage starting again on this host while the first still runs (its pid is this process).
        with tracking.stage_run("train@lenet5", root=tmp_path, stale_after_s=HOUR_S):
            pass
        assert client.get_run(first.run_id).info.status == "RUNNING", "a live run was closed"


def test_close_stale_command(mlflow_uri, capsys):
    client = MlflowClient(mlflow_uri)
    host = socket.gethostname()
    dead_here = _running(client, "train@lenet5", host, _dead_pid(), beat_age_s=10)
    live_here = _running(client, "train@lenet5", host, str(os.getpid()), beat_age_s=5 * HOUR_S)
    silent_there = _running(client, "align@lfw", "other-host", "7", beat_age_s=2 * HOUR_S)
    recent_there = _running(client, "align@lfw", "other-host", "8", beat_age_s=30 * 60)

    assert cli.main(["tracking", "close-stale", "--older-than", "1h", "--dry-run"]) == 0, "dry run exit code"
    listed = capsys.readouterr().out
    assert dead_here in listed, f"dry run does not list the run of the dead local process:\n{listed}"
    assert silent_there in listed, f"dry run does not list the silent run of the other host:\n{listed}"
    assert client.get_run(dead_here).info.status == "RUNNING", "a dry run changed a run"

    assert cli.main(["tracking", "close-stale", "--older-than", "1h"]) == 0, "close-stale exit code"
    statuses = {name: client.get_run(run_id).info.status for name, run_id in
                [("dead_here", dead_here), ("live_here", live_here), ("silent_there", silent_there),
                 ("recent_there", recent_there)]}
    expected = {"dead_here": "KILLED", "live_here": "RUNNING", "silent_there": "KILLED", "recent_there": "RUNNING"}
    assert statuses == expected, f"statuses after close-stale --older-than 1h: {statuses}"

    assert cli.main(["tracking", "close-stale", "--older-than", "20m"]) == 0, "second close-stale exit code"
    assert client.get_run(recent_there).info.status == "KILLED", "a 30 min silent run survived a 20 min limit"
    assert client.get_run(live_here).info.status == "RUNNING", "a run of a live local process was closed"


def test_close_stale_rejects_bad_duration(mlflow_uri, capsys):
    assert cli.main(["tracking", "close-stale", "--older-than", "soon"]) == 2, "invalid duration exit code"
    err = capsys.readouterr().err
    assert "'soon'" in err, f"the message does not name the value: {err}"
    assert "s, m, h or d" in err, f"the message does not give the accepted units: {err}"


@pytest.mark.parametrize(("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("6h", 21600.0),
                                               ("2d", 172800.0), ("1.5h", 5400.0)])
def test_parse_duration_units(text, seconds):
    assert stale.parse_duration(text) == seconds, f"{text!r} parsed wrong"


@pytest.mark.parametrize("text", ["", "0", "-5m", "5w", "m"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="invalid duration"):
        stale.parse_duration(text)


class _RecordingClient:
    def __init__(self):
        self.tags = []
        self.terminated = []

    def set_tag(self, run_id, key, value):
        self.tags.append((run_id, key, value))

    def set_terminated(self, run_id, status):
        self.terminated.append((run_id, status))


def test_heartbeat_thread_for_tracking_server(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    client = _RecordingClient()
    run = tracking.StageRun("train@lenet5", root=tmp_path, stale_after_s=0.2)
    monkeypatch.setattr(run, "_client", lambda: client)
    run.run_id = "run-1"
    run._start_heartbeat()
    time.sleep(0.5)
    run.end()
    beats = [tag for tag in client.tags if tag[1] == stale.HEARTBEAT_TAG]
    assert len(beats) >= 3, f"a 0.05 s heartbeat sent {len(beats)} beats in 0.5 s"
    count = len(client.tags)
    time.sleep(0.2)
    assert len(client.tags) == count, "the heartbeat went on after the run ended"
    assert client.terminated == [("run-1", "FINISHED")], f"run not ended: {client.terminated}"


def test_no_heartbeat_thread_for_sqlite(tmp_path, mlflow_uri):
    run = tracking.StageRun("train@lenet5", root=tmp_path, stale_after_s=0.2)
    run.run_id = "run-1"
    run._start_heartbeat()
    assert run._heartbeat is None, "a SQLite store got a heartbeat thread"
