"""MLflow conventions shared by every stage.

Each DVC stage run is one MLflow run, named after the stage and tagged with the stage, profile, git commit,
pipeline id and the digests of the data it read. Under a Prefect flow the runs nest under the flow's parent run
(`CNNREPRO_PARENT_RUN_ID`); under a plain `dvc repro` they stay top-level and share a pipeline id.

Tracking never costs a stage its outputs: when the tracking server is unreachable or fails mid-run, the remaining
records go to a spool folder under `.cnnrepro/tracking-spool/`, the stage completes, and
`cnnrepro tracking sync` logs the records later. With `tracking.required: true` the stage instead checks the
server first and fails before any work.
"""

from __future__ import annotations

import os

# MLflow retries an unreachable server with exponential backoff for minutes by default. A stage should notice
# within seconds and keep working, so lower the defaults unless the user set them.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

from cnnrepro.tracking.run import StageRun, TrackingError, git_commit, pipeline_id, stage_run, tracking_uri  # noqa: E402
from cnnrepro.tracking.spool import sync  # noqa: E402

__all__ = ["StageRun", "TrackingError", "git_commit", "pipeline_id", "stage_run", "sync", "tracking_uri"]
