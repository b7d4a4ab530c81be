"""The frame every DVC stage runs in: params first, then the MLflow run, then the work.

A module in `pipeline/` calls `run_stage` with its stage name, the params keys that `dvc.yaml` declares for it and
a body function. Invalid params stop the stage before any work with exit code 2; an `InputError` stops it with a
one-paragraph message and exit code 1; leftovers of killed runs beside the outputs are removed first.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnrepro import atomic, logs, manifest, params, paths
from cnnrepro.errors import InputError

log = logging.getLogger("cnnrepro.stage")

# Keys every stage reads besides its own section.
COMMON_KEYS = ("profile", "tracking")


@dataclass
class StageContext:
    name: str
    params: dict[str, Any]
    run: Any  # cnnrepro.tracking.StageRun
    root: Path
    data_digests: dict[str, str] = field(default_factory=dict)

    @property
    def profile(self) -> str:
        return self.params["profile"]


def _substitute(value: str, key: str, item) -> str:
    value = value.replace("${key}", key)
    if isinstance(item, dict):
        for name, sub in item.items():
            value = value.replace(f"${{item.{name}}}", str(sub))
    else:
        value = value.replace("${item}", str(item))
    return value


def declared_params(root: Path, stage: str) -> list[str]:
    """Return the params keys that dvc.yaml declares for `stage` (such as `train@lenet5`).

    Only the dvc.yaml forms this project uses are resolved: plain stages and `foreach` over a list or a mapping.
    """
    import yaml

    with open(root / "dvc.yaml", encoding="utf-8") as handle:
        stages = yaml.safe_load(handle)["stages"]
    group, _, item_key = stage.partition("@")
    if group not in stages:
        raise KeyError(f"dvc.yaml has no stage {group!r}")
    definition = stages[group]
    if "foreach" not in definition:
        return [str(p) for p in definition.get("params", [])]
    items = definition["foreach"]
    item = items[item_key] if isinstance(items, dict) else item_key
    if (isinstance(items, dict) and item_key not in items) or (isinstance(items, list) and item_key not in items):
        raise KeyError(f"dvc.yaml stage {group!r} has no item {item_key!r}")
    return [_substitute(str(p), item_key, item) for p in definition["do"].get("params", [])]


def check_declared(root: Path, stage: str, keys: Iterable[str]) -> None:
    """Raise RuntimeError when the stage would read a params key that dvc.yaml does not declare for it.

    DVC reruns a stage only when a declared key changes, so an undeclared read could restore stale outputs.
    """
    declared = declared_params(root, stage)
    for key in keys:
        if not any(key == d or key.startswith(d + ".") for d in declared):
            raise RuntimeError(
                f"stage {stage} reads params key '{key}' but dvc.yaml declares only {declared}; "
                f"add '{key}' to the stage's params in dvc.yaml"
            )


def _data_digests(inputs: Mapping[str, Path]) -> dict[str, str]:
    digests = {}
    for name, folder in inputs.items():
        try:
            digests[name] = manifest.read_digest(folder)
        except FileNotFoundError as err:
            raise InputError(str(err)) from None
    return digests


def run_stage(
    name: str,
    keys: Sequence[str],
    body: Callable[[StageContext], Mapping[str, float] | None],
    *,
    inputs: Mapping[str, str | Path] | None = None,
    outputs: Iterable[str | Path] = (),
    rank: int = 0,
) -> int:
    """Run one stage; return the process exit code.

    `inputs` maps a dataset name to a data folder with a manifest; its digest becomes an MLflow tag.
    `outputs` are the stage's DVC outputs; stale `.partial-` siblings of them are removed before the body runs.
    """
    logs.setup()
    root = paths.repo_root()
    started = time.perf_counter()
    check_declared(root, name, [*COMMON_KEYS, *keys])
    try:
        loaded = params.load([*COMMON_KEYS, *keys], root / params.PARAMS_FILE)
    except params.ParamsError as err:
        print(f"{name}: invalid params, nothing was run:\n{err}", file=sys.stderr)
        return 2

    from cnnrepro import tracking

    tracking_params = loaded["tracking"]
    try:
        digests = _data_digests({k: root / v for k, v in (inputs or {}).items()})
    except InputError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    for out in outputs:
        atomic.remove_stale_partials((root / out).parent)

    flat = params.flatten({key: params.dump(value) for key, value in loaded.items() if key not in COMMON_KEYS})
    tags = {f"cnnrepro.data.{k}": v for k, v in digests.items()}
    try:
        with tracking.stage_run(
            name,
            profile=loaded["profile"],
            params=flat,
            tags=tags,
            experiment=tracking_params.experiment,
            required=tracking_params.required,
            enabled=rank == 0,
            root=root,
            stale_after_s=tracking_params.stale_after_min * 60,
        ) as run:
            context = StageContext(name=name, params=loaded, run=run, root=root, data_digests=digests)
            metrics = body(context) or {}
            elapsed = time.perf_counter() - started
            run.log_metrics({**metrics, "stage_seconds": elapsed})
    except tracking.TrackingError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 3
    except InputError as err:
        print(f"{name}: {err}", file=sys.stderr)
        return 1
    log.info("%s finished in %.1f s", name, time.perf_counter() - started)
    return 0
