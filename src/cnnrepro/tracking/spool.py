"""Tracking records kept on disk while MLflow is unreachable, and their replay (`cnnrepro tracking sync`)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPOOL_DIR = "tracking-spool"
OPS_FILE = "ops.jsonl"


@dataclass
class Spool:
    folder: Path

    @classmethod
    def create(cls, state_dir: Path, stage: str, uri: str) -> Spool:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stage)
        folder = state_dir / SPOOL_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:8]}"
        folder.mkdir(parents=True)
        from cnnrepro.tracking.run import redact

        # Only a redacted URI is stored: credentials never go to disk. `sync` logs to the current tracking URI.
        (folder / "target.json").write_text(json.dumps({"uri": redact(uri), "stage": stage}) + "\n")
        return cls(folder)

    def append(self, op: dict[str, Any]) -> None:
        # One JSON line per record, flushed at once, so a killed stage loses at most the line being written.
        with open(self.folder / OPS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(op) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def add_artifact(self, path: Path, artifact_path: str | None) -> None:
        stored = self.folder / "artifacts" / uuid.uuid4().hex[:8] / path.name
        if path.is_dir():
            shutil.copytree(path, stored)
        else:
            stored.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, stored)
        self.append({"op": "artifact", "file": str(stored.relative_to(self.folder)), "artifact_path": artifact_path})

    def add_model(self, model, name: str, registered_model_name: str | None, options: dict[str, Any]) -> None:
        import torch

        build = getattr(model, "cnnrepro_build", None)
        if build is None:
            # Only a state dict is stored, because `sync` loads spooled files with weights_only=True and never
            # unpickles a module. A model that `cnnrepro.models.build` did not make cannot be rebuilt from one.
            log.warning("model %s was not spooled: it was not built by cnnrepro.models.build", name)
            return
        stored = self.folder / "models" / f"{name}.pt"
        stored.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save({"state_dict": state, "build": build}, stored)
        self.append(
            {
                "op": "model",
                "file": str(stored.relative_to(self.folder)),
                "name": name,
                "registered_model_name": registered_model_name,
                "options": options,
            }
        )


def pending(state_dir: Path) -> list[Path]:
    root = state_dir / SPOOL_DIR
    return sorted(p for p in root.iterdir() if (p / OPS_FILE).is_file()) if root.is_dir() else []


def _replay(folder: Path, uri: str) -> str:
    """Log one spool folder's records to `uri`; return the run id they went to."""
    import mlflow
    import mlflow.pytorch
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from cnnrepro.tracking.run import _active_run, artifact_root

    client = MlflowClient(tracking_uri=uri)
    run_id: str | None = None
    with open(folder / OPS_FILE, encoding="utf-8") as handle:
        ops = [json.loads(line) for line in handle if line.strip()]
    for op in ops:
        kind = op["op"]
        if kind == "resume":
            run_id = op["run_id"]
        elif kind == "start":
            found = client.get_experiment_by_name(op["experiment"])
            if found is None:
                location = artifact_root() if uri.startswith("sqlite:") else None
                experiment_id = client.create_experiment(op["experiment"], artifact_location=location)
            else:
                experiment_id = found.experiment_id
            tags = {**op.get("tags", {}), "cnnrepro.synced_from_spool": "true"}
            run_id = client.create_run(experiment_id, run_name=op.get("run_name"), tags=tags).info.run_id
            # Record the run id at once: a second sync after a failure halfway resumes this run.
            with open(folder / OPS_FILE, "r+", encoding="utf-8") as rewrite:
                lines = rewrite.readlines()
                index = next(i for i, line in enumerate(lines) if json.loads(line)["op"] == "start")
                lines[index] = json.dumps({"op": "resume", "run_id": run_id}) + "\n"
                rewrite.seek(0)
                rewrite.writelines(lines)
                rewrite.truncate()
        elif run_id is None:
            raise ValueError(f"{folder / OPS_FILE} has a {kind!r} record before its run was started")
        elif kind == "params":
            batch = [Param(k, v) for k, v in op["params"].items()]
            for i in range(0, len(batch), 100):
                client.log_batch(run_id, params=batch[i : i + 100])
        elif kind == "tags":
            client.log_batch(run_id, tags=[RunTag(k, v) for k, v in op["tags"].items()])
        elif kind == "metrics":
            metrics = [Metric(k, v, op["timestamp"], op["step"]) for k, v in op["metrics"].items()]
            client.log_batch(run_id, metrics=metrics)
        elif kind == "artifact":
            path = folder / op["file"]
            if path.is_dir():
                client.log_artifacts(run_id, str(path), op["artifact_path"])
            else:
                client.log_artifact(run_id, str(path), op["artifact_path"])
        elif kind == "model":
            model = _load_spooled_model(folder / op["file"])
            mlflow.set_tracking_uri(uri)
            with _active_run(run_id):
                mlflow.pytorch.log_model(
                    model, name=op["name"], registered_model_name=op["registered_model_name"], **op["options"]
                )
        elif kind == "end":
            client.set_terminated(run_id, status=op["status"])
        else:
            raise ValueError(f"{folder / OPS_FILE} has an unknown record {kind!r}")
    assert run_id is not None
    return run_id


def _load_spooled_model(path: Path):
    """Rebuild a spooled model from its state dict; a file holding anything else raises ValueError."""
    import pickle

    import torch

    from cnnrepro import models

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is not a weights-only model file ({type(err).__name__}: {err})") from None
    if not isinstance(saved, dict) or "state_dict" not in saved or "build" not in saved:
        raise ValueError(f"{path} lacks a state_dict and build entry; delete its spool folder")
    model = models.build(saved["build"]["family"], **saved["build"]["kwargs"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def sync(state_dir: Path, uri: str | None = None) -> tuple[int, int]:
    """Replay every spooled stage run to `uri` (default: the current tracking URI); return (logged, pending).

    Replayed folders are deleted; a folder that fails stays for the next sync.
    """
    from cnnrepro.tracking.run import redact, tracking_uri

    destination = uri or tracking_uri()
    logged = failed = 0
    for folder in pending(state_dir):
        try:
            run_id = _replay(folder, destination)
        except Exception as err:
            failed += 1
            log.error(
                "could not log %s to %s: %s: %s", folder.name, redact(destination), type(err).__name__, redact(str(err))
            )
            continue
        shutil.rmtree(folder)
        logged += 1
        log.info("logged %s to %s as run %s", folder.name, redact(destination), run_id)
    return logged, failed
