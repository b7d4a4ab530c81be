"""Run one pipeline command as its own process group, stream its output, and kill the whole tree on exit.

A stage can start grandchildren (torchrun starts one worker per GPU, data loaders start their own workers).
Killing only the direct child would leave them running, holding GPU memory, after a cancelled or timed-out
flow. So every command starts in a new session, and any way out of `run_streaming` other than the command's
own exit (timeout, Prefect's cancellation or timeout, Ctrl-C, SIGTERM) sends SIGTERM and then SIGKILL to the
whole process group.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# Process groups started by run_streaming that are still running, so a cancellation hook can end them.
RUNNING: set[int] = set()
_RUNNING_LOCK = threading.Lock()


class CommandTimeout(TimeoutError):
    """The command ran longer than its time limit; its process tree was killed."""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_tree(pgid: int, grace_s: float = 10.0) -> None:
    """Send SIGTERM to process group `pgid`, wait up to `grace_s` seconds, then SIGKILL what is left."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.05)
    log.warning("process group %d still running %.0f s after SIGTERM; sending SIGKILL", pgid, grace_s)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return


def kill_running(grace_s: float = 10.0) -> list[int]:
    """Kill every process group that run_streaming started and that is still running; return their ids."""
    with _RUNNING_LOCK:
        groups = sorted(RUNNING)
    for pgid in groups:
        log.warning("killing process group %d of a running stage", pgid)
        kill_tree(pgid, grace_s)
    return groups


def _pump(stream, lines: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        lines.put(line.rstrip("\n"))
    lines.put(None)


def run_streaming(
    command: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    on_line: Callable[[str], None] = print,
    grace_s: float = 10.0,
) -> int:
    """Run `command`, pass each line of its merged stdout and stderr to `on_line` as it arrives, and return
    its exit code.

    Raises CommandTimeout after `timeout_s` seconds. On timeout and on any exception raised while waiting
    (cancellation, KeyboardInterrupt), the whole process group gets SIGTERM and, after `grace_s`, SIGKILL.
    """
    process = subprocess.Popen(
        list(command),
        cwd=str(cwd),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
        start_new_session=True,
    )
    pgid = process.pid  # start_new_session makes the child the leader of a new group with its own pid
    with _RUNNING_LOCK:
        RUNNING.add(pgid)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s if timeout_s else None
    finished = False
    try:
        stream_open = True
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise CommandTimeout(f"{' '.join(command)} timed out after {timeout_s:g} s; its process tree was killed")
            if not stream_open:
                if process.poll() is not None:
                    break
                time.sleep(0.1)
                continue
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                # A grandchild that inherited the pipe can keep it open after the command has exited.
                if process.poll() is not None:
                    break
                continue
            if line is None:
                stream_open = False
                continue
            on_line(line)
        finished = True
        return process.returncode
    finally:
        # The leader has exited, but a grandchild it left behind would still hold the group, so the group is
        # killed whenever anything of it is left, including after a normal exit.
        if not finished or _group_alive(pgid):
            kill_tree(pgid, grace_s)
        process.wait()
        with _RUNNING_LOCK:
            RUNNING.discard(pgid)
        reader.join(timeout=1.0)
