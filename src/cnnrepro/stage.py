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
