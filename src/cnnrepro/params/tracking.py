"""params.yaml `tracking`: how stages treat the MLflow tracking server."""

from __future__ import annotations

from cnnrepro.params.base import Section


class TrackingParams(Section):
    # false: a stage finishes its outputs when MLflow is unreachable and keeps the records for
    # `cnnrepro tracking sync`. true: an unreachable tracking server fails the stage before any work.
    required: bool = False
    experiment: str = "cnnrepro"
