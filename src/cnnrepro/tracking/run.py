"""One MLflow run per stage, with a spool that keeps records when the tracking server fails."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cnnrepro import paths
from cnnrepro.tracking import stale
from cnnrepro.tracking.spool import Spool

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "CNNREPRO_PARENT_RUN_ID"
PIPELINE_ID_ENV = "CNNREPRO_PIPELINE_ID"
TAG_PREFIX = "cnnrepro."
# MLflow rejects param values longer than this many characters.
MAX_PARAM_CHARS = 6000


class TrackingError(RuntimeError):
    """The tracking server is required (tracking.required: true) but could not be reached."""


def tracking_uri(root: Path | None = None) -> str:
    """Return MLFLOW_TRACKING_URI, or the SQLite store `mlflow.db` at the root of the user's checkout."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    checkout = paths.main_checkout((root or paths.repo_root()).resolve())
    return f"sqlite:///{checkout / 'mlflow.db'}"


def redact(uri: str) -> str:
    """Return `uri` with any user name and password replaced by ***, for logs and messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def artifact_root(root: Path | None = None) -> str:
    """Return the artifact folder used for experiments this project creates in a local SQLite store."""
    return (paths.main_checkout((root or paths.repo_root()).resolve()) / "mlartifacts").as_uri()


def git_commit(root: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root or paths.repo_root(), capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _is_dvc(cmdline: list[str]) -> bool:
    """Tell whether a command line runs DVC: `dvc ...`, `python -m dvc ...` or a script named dvc."""
    names = [Path(part).name for part in cmdline[:3]]
    return bool(names) and (names[0] in ("dvc", "dvc.exe") or "dvc" in names[1:2] or names[1:3] == ["-m", "dvc"])


def pipeline_id() -> str:
    """Return an id shared by every stage of one pipeline run.

    A flow sets CNNREPRO_PIPELINE_ID. Under a plain `dvc repro`, every stage is a child of the same `dvc`
    process, so that process's pid and start time identify the run.
    """
    if os.environ.get(PIPELINE_ID_ENV):
        return os.environ[PIPELINE_ID_ENV]
    try:
        import psutil

        for parent in psutil.Process().parents():
            if _is_dvc(parent.cmdline()):
                return f"dvc-{socket.gethostname()}-{parent.pid}-{int(parent.create_time())}"
    except Exception as err:  # psutil can fail on restricted /proc; an unshared id is the fallback
        log.debug("cannot inspect parent processes: %s", err)
    return f"single-{uuid.uuid4().hex[:12]}"


def _server_reachable(uri: str, timeout: float = 5.0) -> str | None:
    """Return None when the tracking server responds, else the reason it does not."""
    if not uri.startswith(("http://", "https://")):
        return None
    import requests

    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as err:
        return f"{type(err).__name__}: {redact(str(err))}"
    if response.status_code >= 400:
        return f"HTTP {response.status_code} from {redact(uri)}/health"
    return None


def _clip(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


class StageRun:
    """Record of one stage run. Every method is safe to call when MLflow is down: it spools instead."""

    def __init__(
        self,
        stage: str,
        *,
        profile: str | None = None,
        experiment: str = "cnnrepro",
        tags: Mapping[str, Any] | None = None,
        root: Path | None = None,
        enabled: bool = True,
        stale_after_s: float = stale.DEFAULT_STALE_AFTER_S,
    ) -> None:
        self.stage = stage
        self.stale_after_s = stale_after_s
        self.root = root or paths.repo_root()
        self.experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", experiment)
        self.enabled = enabled
        self.uri = tracking_uri(self.root)
        self.run_id: str | None = None
        self.spool: Spool | None = None
        self.failure: str | None = None
        self._heartbeat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.tags = {
            f"{TAG_PREFIX}stage": stage,
            f"{TAG_PREFIX}pipeline_id": pipeline_id(),
            f"{TAG_PREFIX}host": socket.gethostname(),
            f"{TAG_PREFIX}pid": str(os.getpid()),
            "mlflow.runName": stage,
            "mlflow.source.type": "JOB",
        }
        if profile:
            self.tags[f"{TAG_PREFIX}profile"] = profile
        commit = git_commit(self.root)
        if commit:
            self.tags["mlflow.source.git.commit"] = commit
        self.tags.update({key: str(value) for key, value in (tags or {}).items()})
        self.parent_run_id = os.environ.get(PARENT_RUN_ENV) or None

    # -- connection --------------------------------------------------------------------------------------

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def _experiment_id(self, client) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = artifact_root(self.root) if self.uri.startswith("sqlite:") else None
        try:
            return client.create_experiment(self.experiment, artifact_location=location)
        except Exception:
            # Another stage process created it in the meantime.
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                raise
            return found.experiment_id

    def check_required(self) -> None:
        """Raise TrackingError when the tracking server does not respond. Stages call it before any work."""
        reason = _server_reachable(self.uri)
        if reason is None:
            try:
                self._experiment_id(self._client())
            except Exception as err:
                reason = f"{type(err).__name__}: {err}"
        if reason is not None:
            raise TrackingError(
                f"MLflow tracking server {redact(self.uri)} is required (tracking.required: true) but failed: {reason}. "
                f"Start the server, fix MLFLOW_TRACKING_URI, or set tracking.required to false."
            )

    def start(self) -> None:
        if not self.enabled:
            return
        tags = dict(self.tags)
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        tags[stale.HEARTBEAT_TAG] = str(int(time.time()))
        try:
            reason = _server_reachable(self.uri)
            if reason is not None:
                raise ConnectionError(reason)
            client = self._client()
            experiment_id = self._experiment_id(client)
            run = client.create_run(experiment_id, run_name=self.stage, tags=tags)
            self.run_id = run.info.run_id
        except Exception as err:
            self._go_offline(err, start={"experiment": self.experiment, "tags": tags, "run_name": self.stage})
            return
        self._close_orphans(client, experiment_id)
        self._start_heartbeat()

    def _close_orphans(self, client, experiment_id: str) -> None:
        """Mark KILLED the RUNNING runs of this stage whose process has died, by the rules of `stale`.

        A stage killed with SIGKILL cannot end its run, which would otherwise stay RUNNING forever.
        """
        try:
            stale.close_stale(
                client, [experiment_id], stale_after_s=self.stale_after_s, closed_by=self.run_id or "",
                filter_string=f"tags.`{TAG_PREFIX}stage` = '{self.stage}'", skip_run_id=self.run_id,
            )
        except Exception as err:
            log.warning("could not close the orphaned runs of %s: %s: %s", self.stage, type(err).__name__,
                        redact(str(err)))

    def _start_heartbeat(self) -> None:
        """Refresh the heartbeat tag from a daemon thread while the run lasts, for hosts that cannot check the pid.

        Only tracking servers get one. A SQLite or file store lives on one host, where the pid rule applies,
        and a second writer thread could make the stage's own writes wait for SQLite's lock.
        """
        if not self.uri.startswith(("http://", "https://", "postgresql", "mysql", "mssql")):
            return
        interval = stale.heartbeat_interval(self.stale_after_s)

        def beat() -> None:
            while not self._heartbeat_stop.wait(interval):
                if self.spool is not None:
                    return
                try:
                    self._client().set_tag(self.run_id, stale.HEARTBEAT_TAG, str(int(time.time())))
                except Exception as err:  # the next record the stage logs decides whether to go offline
                    log.debug("heartbeat of run %s failed: %s", self.run_id, redact(str(err)))

        self._heartbeat = threading.Thread(target=beat, name=f"mlflow-heartbeat-{self.stage}", daemon=True)
        self._heartbeat.start()

    def _go_offline(self, err: BaseException, start: dict[str, Any] | None = None) -> None:
        if self.spool is None:
            self.failure = f"{type(err).__name__}: {redact(str(err))}"
            log.warning(
                "MLflow tracking at %s failed (%s); the stage goes on and keeps its records for "
                "`cnnrepro tracking sync`",
                redact(self.uri),
                self.failure,
            )
            self.spool = Spool.create(paths.state_dir(self.root), self.stage, self.uri)
            if self.run_id is not None:
                self.spool.append({"op": "resume", "run_id": self.run_id})
            else:
                self.spool.append({"op": "start", **(start or {"experiment": self.experiment, "tags": self.tags})})

    def _call(self, op: dict[str, Any], action) -> Any:
        """Run `action(client)` against MLflow, or spool `op` once MLflow has failed."""
        if not self.enabled:
            return None
        if self.spool is None and self.run_id is not None:
            try:
                return action(self._client())
            except Exception as err:
                self._go_offline(err)
        assert self.spool is not None
        self.spool.append(op)
        return None

    # -- records -----------------------------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        flat = {key: _clip(value) for key, value in params.items()}
        if not flat:
            return
        from mlflow.entities import Param

        batch = [Param(key, value) for key, value in flat.items()]
        self._call(
            {"op": "params", "params": flat},
            lambda client: [client.log_batch(self.run_id, params=batch[i : i + 100]) for i in range(0, len(batch), 100)],
        )

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        values = {key: str(value) for key, value in tags.items()}
        self._call(
            {"op": "tags", "tags": values},
            lambda client: client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in values.items()]),
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric, RunTag

        stamp = int(time.time() * 1000)
        values = {key: float(value) for key, value in metrics.items() if value is not None}
        batch = [Metric(key, value, stamp, step or 0) for key, value in values.items()]
        # Each metrics record also counts as a heartbeat, which matters where no heartbeat thread runs.
        beat = [RunTag(stale.HEARTBEAT_TAG, str(stamp // 1000))]
        self._call(
            {"op": "metrics", "metrics": values, "step": step or 0, "timestamp": stamp},
            lambda client: client.log_batch(self.run_id, metrics=batch, tags=beat),
        )

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"artifact {path} does not exist")

        def send(client):
            if path.is_dir():
                client.log_artifacts(self.run_id, str(path), artifact_path)
            else:
                client.log_artifact(self.run_id, str(path), artifact_path)

        if not self.enabled:
            return
        if self.spool is None and self.run_id is not None:
            try:
                send(self._client())
                return
            except Exception as err:
                self._go_offline(err)
        assert self.spool is not None
        self.spool.add_artifact(path, artifact_path)

    def log_model(self, model, name: str, registered_model_name: str | None = None, **kwargs) -> str | None:
        """Log a PyTorch model as an MLflow LoggedModel; return its model URI, or None when spooled."""
        if not self.enabled:
            return None
        import mlflow
        import mlflow.pytorch

        options = {"serialization_format": "pickle", "pip_requirements": _pip_requirements(), **kwargs}
        if self.spool is None and self.run_id is not None:
            try:
                mlflow.set_tracking_uri(self.uri)
                with _active_run(self.run_id):
                    info = mlflow.pytorch.log_model(
                        model, name=name, registered_model_name=registered_model_name, **options
                    )
                return info.model_uri
            except Exception as err:
                self._go_offline(err)
        assert self.spool is not None
        self.spool.add_model(model, name, registered_model_name, options)
        return None

    def end(self, status: str = "FINISHED") -> None:
        if not self.enabled:
            return
        self._heartbeat_stop.set()
        if self.spool is None and self.run_id is not None:
            try:
                self._client().set_terminated(self.run_id, status=status)
                return
            except Exception as err:
                self._go_offline(err)
        if self.spool is not None:
            self.spool.append({"op": "end", "status": status})
            log.warning(
                "MLflow records of %s are saved in %s; log them with `cnnrepro tracking sync` once %s responds",
                self.stage,
                self.spool.folder,
                redact(self.uri),
            )


@contextlib.contextmanager
def _active_run(run_id: str) -> Iterator[None]:
    import mlflow

    # An exported MLFLOW_RUN_ID would override the requested run.
    saved = os.environ.pop("MLFLOW_RUN_ID", None)
    try:
        with mlflow.start_run(run_id=run_id):
            yield
    finally:
        if saved is not None:
            os.environ["MLFLOW_RUN_ID"] = saved


def _pip_requirements() -> list[str]:
    import torch
    import torchvision

    return [f"torch=={torch.__version__.split('+')[0]}", f"torchvision=={torchvision.__version__.split('+')[0]}"]


@contextlib.contextmanager
def stage_run(
    stage: str,
    *,
    profile: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    experiment: str = "cnnrepro",
    required: bool = False,
    enabled: bool = True,
    root: Path | None = None,
    stale_after_s: float = stale.DEFAULT_STALE_AFTER_S,
) -> Iterator[StageRun]:
    """Open the MLflow run of one stage; mark it FAILED if the body raises, KILLED on Ctrl-C.

    `stale_after_s` is the age after which a RUNNING run of the same stage from another host counts as orphaned.
    """
    run = StageRun(stage, profile=profile, experiment=experiment, tags=tags, root=root, enabled=enabled,
                   stale_after_s=stale_after_s)
    if enabled and required:
        run.check_required()
    run.start()
    if params:
        run.log_params(params)
    try:
        yield run
    except KeyboardInterrupt:
        run.end("KILLED")
        raise
    except BaseException:
        run.end("FAILED")
        raise
    run.end("FINISHED")

