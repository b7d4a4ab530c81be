"""Shared fixtures. Tests read real data from ../shared/data (or CNNREPRO_TEST_DATA) and never the network."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ENV = "CNNREPRO_TEST_DATA"
# scripts/fault_counts.py sets this to a file that collects the measured outcome of every fault case.
FAULT_LOG_ENV = "CNNREPRO_FAULT_LOG"

# Subprocesses (dvc stages, torchrun workers) import this checkout's code, whatever else is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO / "src"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
)
os.environ.setdefault("CNNREPRO_LOG_LEVEL", "INFO")
# Stage commands and test projects call plain `python` and `dvc`: they must be this environment's, as in an
# activated venv, also when the tests run as `.venv/bin/python -m pytest` without activating it.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _shared_data() -> Path:
    path = Path(os.environ.get(DATA_ENV, REPO.parent / "shared" / "data")).resolve()
    if not (path / "SHA256SUMS").is_file():
        raise RuntimeError(
            f"test data not found at {path}: set {DATA_ENV} to a folder laid out like shared/data "
            f"(see README, 'Offline data')"
        )
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Limit torch to one thread for a module: on shared cores, several threads per process spin against each other."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real data folder; copy anything a test changes into tmp_path first."""
    return _shared_data()


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Fail any test that opens a socket to a non-loopback address."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0") and self.family in (
            socket.AF_INET,
            socket.AF_INET6,
        ):
            raise RuntimeError(f"test tried to reach {address}; tests must stay on loopback")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite store with its schema, created once: creating the schema takes about 5 s."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch, mlflow_template) -> str:
    """A fresh SQLite MLflow store for one test, copied from the empty template."""
    shutil.copyfile(mlflow_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def fault_record(request):
    """Return a function that appends one fault case's measured facts to $CNNREPRO_FAULT_LOG as a JSON line.

    Without the variable it does nothing. Tests call it before their asserts, so failing cases are counted too.
    """

    def record(**facts) -> None:
        target = os.environ.get(FAULT_LOG_ENV)
        if target:
            with open(target, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"test": request.node.nodeid, **facts}) + "\n")

    return record
