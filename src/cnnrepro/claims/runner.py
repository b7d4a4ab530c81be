"""Run or re-summarise a claim and write `claims/<name>.json`, the git-tracked record the report reads."""

from __future__ import annotations

import datetime as _dt
import logging
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cnnrepro import atomic
from cnnrepro.claims import registry, sweep
from cnnrepro.claims.registry import Claim
from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

CLAIMS_DIR = "claims"


def record_path(root: Path, name: str) -> Path:
    return root / CLAIMS_DIR / f"{name}.json"


def command(claim: Claim, seeds: Sequence[int] | None = None) -> str:
    line = f"cnnrepro claims run {claim.name}"
    if seeds and tuple(seeds) != claim.seeds:
        line += " --seeds " + " ".join(str(s) for s in seeds)
    return line


def run(root: Path, name: str, seeds: Sequence[int] | None = None, *, rerun: bool = False, jobs: int = 1,
        poll_s: float = 15.0) -> dict[str, Any]:
    """Measure claim `name`: directly, or by queueing its missing experiments and waiting for them."""
    claim = registry.get(name)
    seeds = tuple(seeds) if seeds else claim.seeds
    if claim.measure is not None:
        return write(root, claim, seeds, claim.measure(root, claim, seeds), [])
    sweep.check_workspace(root)
    points = sweep.load_points(root, claim, seeds)
    todo = [p for p in points if rerun or p.rev is None]
    reused = len(points) - len(todo)
    if reused:
        log.info("%d of %d experiments of %s already ran with these params; reusing them", reused, len(points), name)
    if todo:
        # An experiment of another claim's sweep may already be queued or running: wait for it, do not queue twice.
        pending = sweep.experiment_states(root)
        waiting = [p.name for p in todo if not rerun and pending.get(p.name) in ("queued", "running")]
        names = waiting + sweep.queue(root, claim, [p for p in todo if p.name not in waiting])
        sweep.start_workers(root, jobs)
        states = sweep.wait(root, names, poll_s=poll_s)
        failed = [n for n, state in states.items() if state != "success"]
        if failed:
            raise InputError(
                f"claim {name}: experiment(s) {', '.join(failed)} failed; see "
                + ", ".join(f"`dvc queue logs {n}`" for n in failed)
                + f"; the others are kept, so `cnnrepro claims run {name}` reruns only the failed ones"
            )
    return collect(root, name, seeds)


def collect(root: Path, name: str, seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Re-summarise claim `name` from its finished experiments (no new runs)."""
    claim = registry.get(name)
    seeds = tuple(seeds) if seeds else claim.seeds
    if claim.measure is not None:
        raise InputError(f"claim {name} is measured directly, without experiments; run `cnnrepro claims run {name}`")
    points = sweep.load_points(root, claim, seeds)
    if not any(p.rev for p in points):
        raise InputError(
            f"claim {name} has no finished experiment with the current params.yaml; run `cnnrepro claims run {name}`"
        )
    return write(root, claim, seeds, claim.summarise(claim, points), points)


def write(root: Path, claim: Claim, seeds: Sequence[int], result: dict[str, Any], points) -> dict[str, Any]:
    """Write the claim's record atomically, log it as an MLflow run tagged claim=<name>, and return it."""
    tree = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) or {}
    experiments = [{"variant": p.variant.name, "seed": p.seed, "name": p.name, "rev": p.rev} for p in points]
    record = {
        "name": claim.name,
        "title": claim.title,
        "claim": claim.text,
        "source": claim.source,
        "method": claim.method,
        "command": command(claim, seeds),
        "profile": tree.get("profile"),
        "seeds": list(seeds),
        "seed_keys": list(claim.seed_keys),
        "targets": list(claim.targets),
        "overrides": dict(claim.overrides),
        "variants": [{"name": v.name, "label": v.label or v.name, "overrides": dict(v.overrides)} for v in claim.variants],
        "experiments": experiments,
        "queue_commands": [shlex.join(sweep.queue_command(claim, p.variant, p.seed)) for p in points],
        "measured_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "verdict": result.get("verdict"),
        "result": result,
    }
    target = atomic.write_json(record_path(root, claim.name), record)
    _log_mlflow(root, claim, record, target)
    return record


def _log_mlflow(root: Path, claim: Claim, record: dict[str, Any], path: Path) -> None:
    from cnnrepro import params, tracking

    tracking_params = params.load(["tracking"], root / params.PARAMS_FILE)["tracking"]
    numbers = _numeric(record["result"].get("values", {}))
    with tracking.stage_run(
        f"claims@{claim.name}",
        profile=record["profile"],
        params={"seeds": " ".join(map(str, record["seeds"])), "targets": " ".join(claim.targets),
                **{f"override.{k}": v for k, v in claim.overrides.items()}},
        tags={"claim": claim.name, "claim.verdict": record["verdict"] or ""},
        experiment=tracking_params.experiment,
        required=tracking_params.required,
        root=root,
    ) as run:
        if numbers:
            run.log_metrics(numbers)
        run.log_artifact(path, "claims")


def _numeric(values: Any, prefix: str = "") -> dict[str, float]:
    """Flatten the means of a summary's values into MLflow metric names such as relu.epochs_to_target."""
    out: dict[str, float] = {}
    if not isinstance(values, dict):
        return out
    for key, value in values.items():
        name = f"{prefix}{key}".replace(" ", "_")
        if isinstance(value, dict) and "mean" in value:
            if value["mean"] is not None:
                out[name] = float(value["mean"])
        elif isinstance(value, dict):
            out.update(_numeric(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out
