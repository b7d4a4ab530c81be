"""Run a claim's grid as named DVC experiments and read their results back from git.

`dvc exp run --queue` copies the workspace into `.dvc/tmp/exps/` for each experiment: tracked files with their
uncommitted changes travel, untracked files do not. So `dvc.lock` must be tracked by git, or every experiment
would rerun the downloads. Results are read from the experiment commits that DVC keeps under `refs/exps/`,
which carry metrics/ and plots/ because those are DVC outputs with `cache: false`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnnrepro.claims.registry import Claim, Variant
from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

# Final task states in `dvc queue status` (DVC 3.x), lower-cased.
FINISHED_STATES = {"success", "failed"}


@dataclass
class Point:
    """One experiment of a claim: its variant, seed, name, commit and the files read from that commit."""

    variant: Variant
    seed: int
    name: str
    rev: str | None = None
    files: dict[str, Any] = field(default_factory=dict)


def format_value(value: Any) -> str:
    """Format a params value for `dvc exp run -S key=value` (DVC parses the right side as YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def queue_command(claim: Claim, variant: Variant, seed: int) -> list[str]:
    """Return the `dvc exp run --queue` command line of one point (`-f` replaces an experiment of that name)."""
    command = ["dvc", "exp", "run", "--queue", "-f", "-n", claim.experiment_name(variant, seed)]
    for key, value in claim.point_overrides(variant, seed).items():
        command += ["-S", f"{key}={format_value(value)}"]
    return command + list(claim.targets)


def points(claim: Claim, seeds: Sequence[int] | None = None) -> list[Point]:
    """Return the claim's points ordered seed first, so that a cut-short run has every variant of the first seed."""
    seeds = tuple(seeds) if seeds else claim.seeds
    return [Point(v, s, claim.experiment_name(v, s)) for s in seeds for v in claim.variants]


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        raise InputError(f"git {' '.join(args)} failed in {root}: {result.stderr.strip()}")
    return result.stdout


def experiment_refs(root: Path) -> dict[str, str]:
    """Map each DVC experiment name to the commit of its newest experiment, over all baseline commits."""
    out = _git(root, "for-each-ref", "--sort=committerdate", "--format=%(refname) %(objectname)", "refs/exps/")
    refs = {}
    for line in out.splitlines():
        ref, rev = line.split()
        parts = ref.split("/")
        # refs/exps/<2 hex>/<38 hex>/<name>; the queue's own refs (refs/exps/celery/...) are skipped.
        if len(parts) == 5 and parts[2] != "celery":
            refs[parts[4]] = rev  # sorted oldest first, so the newest wins
    return refs


def read_file(root: Path, rev: str, path: str) -> Any:
    """Read `path` from commit `rev`: JSON parsed, CSV as a list of dicts of floats, None when missing."""
    result = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    if result.returncode != 0:
        return None
    if path.endswith(".json"):
        return json.loads(result.stdout)
    if path.endswith(".csv"):
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(result.stdout))]
    if path.endswith((".yaml", ".yml")):
        return yaml.safe_load(result.stdout)
    return result.stdout


def _number(value: str) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(format_value(value))


def compared_sections(claim: Claim, point: Point) -> list[str]:
    """Return the params a reused experiment must match: `profile` and each section its overrides touch."""
    sections = {".".join(key.split(".")[:2]) for key in claim.point_overrides(point.variant, point.seed)}
    return ["profile", *sorted(sections)]


def _subtree(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def expected_params(root: Path, claim: Claim, point: Point) -> dict[str, Any]:
    """Return the compared params sections of the workspace with the point's overrides applied."""
    tree = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    for key, value in claim.point_overrides(point.variant, point.seed).items():
        _set_dotted(tree, key, value)
    return {section: _subtree(tree, section) for section in compared_sections(claim, point)}


def load_points(root: Path, claim: Claim, seeds: Sequence[int] | None = None, *, check_params: bool = True) -> list[Point]:
    """Fill each point with its experiment commit and files; points without a finished experiment get rev None.

    With `check_params`, an experiment whose profile or overridden sections (such as `train.alexnet`) differ
    from the workspace's params.yaml plus the point's overrides does not count as measured.
    """
    # NOTE: only params are compared. An experiment that ran older code with the same params is reused;
    # `cnnrepro claims run NAME --rerun` measures again.
    refs = experiment_refs(root)
    loaded = []
    for point in points(claim, seeds):
        rev = refs.get(point.name)
        if rev and check_params:
            ran = read_file(root, rev, "params.yaml") or {}
            ran = {section: _subtree(ran, section) for section in compared_sections(claim, point)}
            if ran != expected_params(root, claim, point):
                log.info("experiment %s ran with other params; it is not reused", point.name)
                rev = None
        if rev:
            point.rev = rev
            point.files = {path: read_file(root, rev, path) for path in claim.files}
        loaded.append(point)
    return loaded


def _run_dvc(command: list[str], root: Path, attempts: int = 20, delay_s: float = 3.0) -> subprocess.CompletedProcess:
    """Run a DVC command, retrying while another DVC process holds the repository lock."""
    for attempt in range(attempts):
        result = subprocess.run(command, cwd=root, capture_output=True, text=True)
        if result.returncode == 0 or "Unable to acquire lock" not in result.stderr:
            return result
        log.info("DVC repository locked by another process; retrying in %.0f s (%d/%d)", delay_s, attempt + 1, attempts)
        time.sleep(delay_s)
    return result


def check_workspace(root: Path) -> None:
    """Raise InputError when the dvc command is missing or dvc.lock is not tracked by git."""
    if shutil.which("dvc") is None:
        raise InputError("dvc not found on PATH; activate the project's environment with `. .venv/bin/activate`")
    if not (root / "dvc.lock").is_file():
        return
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "dvc.lock"], cwd=root, capture_output=True)
    if tracked.returncode != 0:
        raise InputError(
            f"{root / 'dvc.lock'} is not tracked by git, so queued DVC experiments cannot see the stages that "
            f"already ran and would rerun them; run `git add dvc.lock metrics plots && git commit` first"
        )


def queue(root: Path, claim: Claim, todo: Iterable[Point]) -> list[str]:
    """Queue one DVC experiment per point; return their names."""
    names = []
    for point in todo:
        command = queue_command(claim, point.variant, point.seed)
        log.info("queueing %s", " ".join(command))
        result = _run_dvc(command, root)
        if result.returncode != 0:
            raise InputError(f"`{' '.join(command)}` failed: {result.stderr.strip() or result.stdout.strip()}")
        names.append(point.name)
    return names


def start_workers(root: Path, jobs: int = 1) -> None:
    """Run `dvc queue start -j JOBS`; raise InputError with its message when it fails."""
    # The worker it starts keeps the command's stdout and stderr open until the queue is empty, so output goes
    # to a file: with pipes, reading them would block until the last experiment had finished.
    with tempfile.TemporaryFile("w+") as output:
        code = subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=root, stdout=output,
                              stderr=subprocess.STDOUT).returncode
        if code != 0:
            output.seek(0)
            raise InputError(f"`dvc queue start -j {jobs}` failed: {output.read().strip()}")


def parse_queue_status(text: str) -> dict[str, str]:
    """Map experiment names to states in `dvc queue status` output (queued, running, success, failed).

    The table lists every queued task whatever its baseline commit. A name queued again with `-f` appears
    beside its earlier tasks, and the table gives no date to order them by. An unfinished task is the current
    one. Among finished tasks a success wins, because the newest experiment commit of that name contains a result.
    """
    rank = {"success": 1, "failed": 0}
    states: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] == "Task" or line.startswith("Worker"):
            continue
        name, state = parts[1], parts[-1].lower()
        current = states.get(name)
        if current is None or state not in rank or (current in rank and rank[state] > rank[current]):
            states[name] = state
    return states


def experiment_states(root: Path) -> dict[str, str]:
    """Map the names of the DVC queue's experiments to their state (queued, running, success, failed)."""
    result = _run_dvc(["dvc", "queue", "status"], root)
    if result.returncode != 0:
        raise InputError(f"`dvc queue status` failed: {result.stderr.strip()}")
    return parse_queue_status(result.stdout)


def wait(root: Path, names: Sequence[str], poll_s: float = 15.0, timeout_s: float | None = None) -> dict[str, str]:
    """Wait until every experiment in `names` has finished; return their final states. Shows a progress bar."""
    from tqdm import tqdm

    started = time.monotonic()
    with tqdm(total=len(names), desc="experiments", unit="exp") as bar:
        while True:
            states = experiment_states(root)
            done = [n for n in names if states.get(n) in FINISHED_STATES]
            bar.n = len(done)
            running = [n for n in names if states.get(n) == "running"]
            bar.set_postfix_str(", ".join(running))
            bar.refresh()
            if len(done) == len(names):
                return {n: states[n] for n in names}
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                raise InputError(
                    f"experiments still unfinished after {timeout_s:.0f} s: {', '.join(sorted(set(names) - set(done)))}; "
                    f"see `dvc queue status`"
                )
            time.sleep(poll_s)
