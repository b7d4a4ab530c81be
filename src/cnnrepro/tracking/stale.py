"""Rules for closing MLflow runs that stay RUNNING after their stage process died.

A stage killed with SIGKILL, or a host that lost power, cannot end its run. Two rules find such runs:

- On the host that started the run, the run's `cnnrepro.pid` tag names its process: when that process no longer
  exists, the run is an orphan at once.
- On any other host the pid cannot be checked, so a run counts as an orphan when its last sign of life is older
  than a limit. A live stage sets the `cnnrepro.heartbeat` tag (Unix seconds) when it starts and then at a
  quarter of the limit when it logs to a tracking server, so a live run is never that old. A run without the
  tag falls back to its start time.

Closed runs get status KILLED and the tags `cnnrepro.closed_by` and `cnnrepro.closed_reason`. A stage applies
both rules to the earlier runs of its own stage when it starts; `cnnrepro tracking close-stale` applies them to
every run of an experiment.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

TAG_PREFIX = "cnnrepro."
HEARTBEAT_TAG = f"{TAG_PREFIX}heartbeat"
# Default limit for runs of other hosts: 12 missed heartbeats of 5 minutes.
DEFAULT_STALE_AFTER_S = 3600.0
# Maximum pause between heartbeats, whatever the limit.
MAX_HEARTBEAT_S = 300.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def heartbeat_interval(stale_after_s: float) -> float:
    """Return the pause between heartbeats: a quarter of the limit, at most MAX_HEARTBEAT_S seconds."""
    return min(MAX_HEARTBEAT_S, stale_after_s / 4)


def parse_duration(text: str) -> float:
    """Parse `90`, `90s`, `30m`, `6h` or `2d` into seconds; raise ValueError naming the text otherwise."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"invalid duration {text!r}: expected a positive number with an optional unit s, m, h or d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def last_seen(run) -> float:
    """Return the Unix time of a run's last heartbeat, or of its start when it has none."""
    started = run.info.start_time / 1000 if run.info.start_time else 0.0
    beat = run.data.tags.get(HEARTBEAT_TAG, "")
    try:
        return max(started, float(beat))
    except ValueError:
        return started


@dataclass(frozen=True)
class Verdict:
    """Whether a RUNNING run is an orphan, and why."""

    orphan: bool
    reason: str


def judge(run, *, host: str, now: float, stale_after_s: float) -> Verdict:
    """Decide whether the RUNNING `run` belongs to a process that has died (see the module docstring)."""
    run_host = run.data.tags.get(f"{TAG_PREFIX}host", "")
    pid = run.data.tags.get(f"{TAG_PREFIX}pid", "")
    if run_host == host and pid.isdigit():
        if _process_alive(int(pid)):
            return Verdict(False, f"process {pid} on this host is alive")
        return Verdict(True, f"process {pid} on {host} has ended")
    age = now - last_seen(run)
    if age > stale_after_s:
        where = f"host {run_host}" if run_host else "an unknown host"
        return Verdict(True, f"no heartbeat from {where} for {age / 60:.0f} min (limit {stale_after_s / 60:.0f} min)")
    return Verdict(False, f"last heartbeat {age:.0f} s ago")


def close_stale(client, experiment_ids: list[str], *, stale_after_s: float, closed_by: str,
                filter_string: str = "", skip_run_id: str | None = None, dry_run: bool = False,
                now: float | None = None) -> list[tuple[str, str]]:
    """Mark KILLED the orphaned RUNNING runs found by `filter_string`; return (run id, reason) for each.

    With `dry_run` nothing is changed. `skip_run_id` is the caller's own run.
    """
    host = socket.gethostname()
    now = time.time() if now is None else now
    query = " and ".join(filter(None, [filter_string, "attributes.status = 'RUNNING'"]))
    # Collect every candidate before closing any: a closed run leaves the RUNNING set and would shift the pages.
    candidates = []
    page_token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string=query, max_results=500, page_token=page_token)
        candidates.extend(page)
        page_token = page.token
        if not page_token:
            break
    closed = []
    for run in candidates:
        if run.info.run_id == skip_run_id:
            continue
        verdict = judge(run, host=host, now=now, stale_after_s=stale_after_s)
        if not verdict.orphan:
            continue
        closed.append((run.info.run_id, verdict.reason))
        if dry_run:
            continue
        client.set_tag(run.info.run_id, f"{TAG_PREFIX}closed_by", closed_by)
        client.set_tag(run.info.run_id, f"{TAG_PREFIX}closed_reason", verdict.reason)
        client.set_terminated(run.info.run_id, status="KILLED")
        log.info("marked run %s (%s) KILLED: %s", run.info.run_id,
                 run.data.tags.get(f"{TAG_PREFIX}stage", "no stage tag"), verdict.reason)
    return closed
