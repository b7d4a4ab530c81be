"""params.yaml `tracking`: how stages treat the MLflow tracking server."""

from __future__ import annotations

from pydantic import PositiveFloat

from cnnrepro.params.base import Section


class TrackingParams(Section):
    # false: a stage finishes its outputs when MLflow is unreachable and keeps the records for
    # `cnnrepro tracking sync`. true: an unreachable tracking server fails the stage before any work.
    required: bool = False
    experiment: str = "cnnrepro"
    # A RUNNING run of the same stage from another host, whose process cannot be checked from here, is marked
    # KILLED when its last heartbeat is older than this many minutes. Keep it above the longest outage of the
    # tracking server that a live stage should survive.
    stale_after_min: PositiveFloat = 60.0
