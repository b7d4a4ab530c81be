"""The retraining flow over the real smoke pipeline, tracked on a real MLflow server.

A copy of the checkout runs `python -m flows.retrain run --profile smoke` offline against an `mlflow server`
process on loopback with a SQLite backend and proxied artifacts; the runs are then read back through the
client. A second flow run must find every stage up to date and train nothing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow import MlflowClient

from tests.test_pipeline_e2e import _copy_checkout, _offline_env
from tests.test_sharing_mlflow import mlflow_server  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow


def _flow(root, env, timeout):
    return subprocess.run(
        [sys.executable, "-m", "flows.retrain", "run", "--profile", "smoke", "--retries", "0"],
        cwd=root, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_flow_runs_smoke_pipeline_on_mlflow_server(tmp_path, shared_data, mlflow_server):  # noqa: F811
    uri, _ = mlflow_server
    root = tmp_path / "checkout"
    root.mkdir()
    _copy_checkout(root)
    env = {**_offline_env(shared_data), "MLFLOW_TRACKING_URI": uri}

    first = _flow(root, env, 1800)
    assert first.returncode == 0, f"flow failed:\n{first.stdout[-4000:]}\n{first.stderr[-4000:]}"
    stages = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=root, env=env, capture_output=True, text=True
    ).stdout.split()
    assert f"ran {len(stages)} stage(s)" in first.stdout, f"the first flow run must run every stage:\n{first.stdout}"

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cnnrepro")
    assert experiment is not None, "no cnnrepro experiment on the server"
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("cnnrepro.stage") == "flow"]
    assert len(parents) == 1, f"expected one flow parent run, found {len(parents)}"
    parent_id = parents[0].info.run_id
    for stage in stages:
        found = [r for r in runs if r.data.tags.get("cnnrepro.stage") == stage]
        assert len(found) == 1, f"{stage}: expected one run on the server, found {len(found)}"
        assert found[0].data.tags.get("mlflow.parentRunId") == parent_id, f"{stage} is not nested under the flow run"
        assert found[0].info.status == "FINISHED", f"{stage}: status {found[0].info.status}"
    lenet = [r for r in runs if r.data.tags.get("cnnrepro.stage") == "evaluate@lenet5"][0]
    assert lenet.data.metrics["test_error"] < 0.3, "LeNet-5 must beat chance by a wide margin"

    second = _flow(root, env, 600)
    assert second.returncode == 0, f"second flow run failed:\n{second.stderr[-3000:]}"
    assert "ran 0 stage(s)" in second.stdout, f"a second flow run must train nothing:\n{second.stdout}"
