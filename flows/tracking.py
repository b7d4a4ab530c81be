"""The MLflow parent run of one flow run, under which every stage's run nests."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnrepro.tracking import run as stage_tracking

log = logging.getLogger(__name__)


@dataclass
class ParentRun:
    pipeline_id: str
    run_id: str | None
    uri: str
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def start(
        cls, root: Path, pipeline_id: str, *, experiment: str, profile: str, flow_run_id: Any = None
    ) -> ParentRun:
        """Create the parent run; when MLflow fails, log a warning and return a ParentRun without a run id.

        Without a parent run the stages still share the pipeline id, and their runs stay top-level.
        """
        uri = stage_tracking.tracking_uri(root)
        tags = {
            "mlflow.runName": f"retrain-{pipeline_id.removeprefix('prefect-')[:8]}",
            "mlflow.source.type": "JOB",
            f"{stage_tracking.TAG_PREFIX}stage": "flow",
            f"{stage_tracking.TAG_PREFIX}pipeline_id": pipeline_id,
            f"{stage_tracking.TAG_PREFIX}profile": profile,
            f"{stage_tracking.TAG_PREFIX}prefect_flow_run_id": str(flow_run_id),
        }
        commit = stage_tracking.git_commit(root)
        if commit:
            tags["mlflow.source.git.commit"] = commit
        try:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=uri)
            stage_run = stage_tracking.StageRun("flow", experiment=experiment, root=root, enabled=True)
            experiment_id = stage_run._experiment_id(client)
            run_id = client.create_run(experiment_id, run_name=tags["mlflow.runName"], tags=tags).info.run_id
        except Exception as err:  # an unreachable server must not stop the pipeline
            log.warning("cannot create the MLflow parent run at %s (%s); stage runs stay top-level", uri, err)
            run_id = None
        return cls(pipeline_id=pipeline_id, run_id=run_id, uri=uri, tags=tags)

    def environment(self) -> dict[str, str]:
        """Return the variables that make each stage's run a child of this run."""
        env = {stage_tracking.PIPELINE_ID_ENV: self.pipeline_id}
        if self.run_id:
            env[stage_tracking.PARENT_RUN_ENV] = self.run_id
        return env

    def end(self, status: str, *, ran: list[str] | None = None, promotions: list[dict[str, Any]] | None = None) -> None:
        if not self.run_id:
            return
        try:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=self.uri)
            if ran is not None:
                client.set_tag(self.run_id, f"{stage_tracking.TAG_PREFIX}stages_run", ",".join(ran) or "none")
                client.log_metric(self.run_id, "stages_run", len(ran))
            for outcome in promotions or []:
                if outcome.get("alias"):
                    client.set_tag(
                        self.run_id,
                        f"{stage_tracking.TAG_PREFIX}promotion.{outcome['key']}",
                        f"{outcome['registered_model']} v{outcome['version']} {outcome['alias']}",
                    )
            client.set_terminated(self.run_id, status=status)
        except Exception as err:
            log.warning("cannot close the MLflow parent run %s at %s: %s", self.run_id, self.uri, err)
