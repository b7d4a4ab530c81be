"""Run a pipeline stage in a child process that kills itself with SIGKILL at a chosen point, for the fault tests.

A point is the N-th call into this project's code (src/cnnrepro and pipeline/), counted with `sys.setprofile`
in the stage's main thread. A complete run reports how many calls it made, so a test can draw N from a seeded
RNG over the whole run: parsing params, opening the MLflow run, the work itself and the atomic renames.

Importing torch and MLflow takes about 4 s per process on the 2-core test machine, so the children are forked
from a multiprocessing forkserver that has imported them once.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Code whose calls are counted: the stage modules and the library. Calls into torch, MLflow or the standard
# library run inside these calls and are not counted on their own.
COUNTED_PREFIXES = (str(REPO / "src" / "cnnrepro") + os.sep, str(REPO / "pipeline") + os.sep)
PRELOAD = [
    "torch",
    "mlflow",
    "mlflow.tracking",
    "cnnrepro.stage",
    "cnnrepro.tracking",
    "cnnrepro.evaluation.stage",
    "cnnrepro.training.recipes",
    "cnnrepro.faces.runner",
    "pipeline.align",
    "pipeline.download",
    "pipeline.evaluate",
    "pipeline.train",
    "tests.stage_killer",
]

_context = None


def context() -> multiprocessing.context.ForkServerContext:
    """Return the forkserver context, starting its server with the heavy imports done once."""
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _child(module: str, argv: list[str], root: str, env: dict[str, str], kill_at: int | None, count_file: str,
           output_file: str | None):
    os.chdir(root)
    os.environ.update(env)
    for name in ("CNNREPRO_PARENT_RUN_ID", "CNNREPRO_PIPELINE_ID", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(name, None)
    if output_file:
        fd = os.open(output_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    import torch

    torch.set_num_threads(1)
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        if event != "call" or not frame.f_code.co_filename.startswith(COUNTED_PREFIXES):
            return
        calls += 1
        if calls == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    main = importlib.import_module(module).main
    sys.setprofile(profile)
    try:
        code = main(argv)
    finally:
        sys.setprofile(None)
    Path(count_file).write_text(str(calls))
    sys.exit(code)


def run(module: str, argv: list[str], root: Path, env: dict[str, str], kill_at: int | None = None,
        timeout: float = 300, output_file: Path | None = None) -> tuple[int, int | None]:
    """Run `module.main(argv)` in `root`; return (exit code, calls counted), with exit code -9 after a kill.

    The count is None when the child did not finish. With `output_file`, the child's stdout and stderr go there.
    """
    count_file = root / ".stage-killer-count"
    count_file.unlink(missing_ok=True)
    process = context().Process(target=_child, args=(module, argv, str(root), env, kill_at, str(count_file),
                                                          str(output_file) if output_file else None))
    process.start()
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join(30)
        raise TimeoutError(f"{module} {argv} did not finish within {timeout} s")
    calls = int(count_file.read_text()) if count_file.is_file() else None
    return process.exitcode, calls
