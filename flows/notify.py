"""Flow state hooks: log a one-line summary and POST it as JSON to a webhook when one is configured.

The webhook URL is the flow parameter `webhook_url`, else the environment variable CNNREPRO_WEBHOOK_URL.
A webhook that fails is logged and never fails the flow.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

WEBHOOK_ENV = "CNNREPRO_WEBHOOK_URL"
TIMEOUT_S = 10.0

log = logging.getLogger(__name__)


def webhook_url(parameters: dict[str, Any] | None) -> str | None:
    return (parameters or {}).get("webhook_url") or os.environ.get(WEBHOOK_ENV) or None


def post_json(url: str, payload: dict[str, Any], timeout_s: float = TIMEOUT_S) -> int | None:
    """POST `payload` to `url`; return the HTTP status, or None when the request failed (the error is logged)."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status
    except (urllib.error.URLError, OSError, ValueError) as err:
        log.error("webhook POST to %s failed: %s", url, err)
        return None


def payload(flow, flow_run, state) -> dict[str, Any]:
    return {
        "flow": flow.name,
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "state": state.name,
        "state_type": state.type.value,
        "message": state.message,
        "parameters": {key: value for key, value in (flow_run.parameters or {}).items() if key != "webhook_url"},
    }


def _report(flow, flow_run, state, level: int) -> None:
    from prefect.logging.loggers import flow_run_logger

    body = payload(flow, flow_run, state)
    logger = flow_run_logger(flow_run, flow)
    logger.log(
        level,
        "flow %s run %s (%s) ended %s: %s",
        flow.name,
        flow_run.name,
        flow_run.id,
        state.name,
        state.message or "no message",
    )
    url = webhook_url(flow_run.parameters)
    if url:
        status = post_json(url, body)
        if status is not None:
            logger.info("webhook %s answered HTTP %d", url, status)


def on_completion(flow, flow_run, state) -> None:
    _report(flow, flow_run, state, logging.INFO)


def on_failure(flow, flow_run, state) -> None:
    _report(flow, flow_run, state, logging.ERROR)
