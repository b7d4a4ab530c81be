"""Time `dvc repro` with nothing to do: this project against bare DVC on a dummy graph of as many stages.

Run it from the repository root after a complete `dvc repro`, so that every stage is up to date:

    python benchmarks/dvc_overhead.py --repeats 5

The baseline is a throw-away DVC project in a temporary folder whose stages each write one small file from the
previous stage's output. The two sides alternate, and the ratio is the median no-op time of this project over
the baseline's.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)


def stage_count(root: Path) -> int:
    listed = _dvc(["stage", "list", "--name-only"], root)
    if listed.returncode != 0:
        raise SystemExit(f"dvc stage list failed in {root}:\n{listed.stderr}")
    return len(listed.stdout.split())


def build_dummy(folder: Path, stages: int) -> None:
    for command in (["git", "init", "-q"],):
        subprocess.run(command, cwd=folder, check=True)
    init = _dvc(["init", "-q"], folder)
    if init.returncode != 0:
        raise SystemExit(init.stderr)
    graph = {}
    for index in range(stages):
        deps = [f"out{index - 1}.txt"] if index else []
        graph[f"s{index}"] = {"cmd": f"echo {index} > out{index}.txt", "deps": deps, "outs": [f"out{index}.txt"]}
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": graph}))
    first = _dvc(["repro", "-q"], folder)
    if first.returncode != 0:
        raise SystemExit(f"the dummy graph failed to run:\n{first.stderr}")


def time_noop(folder: Path) -> float:
    """Return the seconds of one `dvc repro` in `folder`; exit when it fails or runs a stage."""
    started = time.perf_counter()
    result = _dvc(["repro"], folder)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"dvc repro failed in {folder}:\n{result.stderr}")
    if "Running stage" in result.stdout:
        raise SystemExit(f"{folder} is not up to date; run `dvc repro` there first:\n{result.stdout}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="no-op runs timed per project (median taken)")
    args = parser.parse_args()

    stages = stage_count(REPO)
    baseline, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        dummy = Path(tmp)
        build_dummy(dummy, stages)
        # The two sides alternate, so that a change in machine load reaches both.
        for _ in range(args.repeats):
            baseline.append(time_noop(dummy))
            ours.append(time_noop(REPO))
    bare, project = statistics.median(baseline), statistics.median(ours)
    print(f"stages: {stages}")
    print(f"bare DVC, dummy graph: {bare:.2f} s (median of {args.repeats}; all: {_seconds(baseline)})")
    print(f"cnnrepro dvc repro:     {project:.2f} s (median of {args.repeats}; all: {_seconds(ours)})")
    print(f"ratio cnnrepro / bare:  {project / bare:.2f} (target <= 1.5)")


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


if __name__ == "__main__":
    main()
