"""Builders of small DVC projects with cheap Python stages, for the flow and sharing tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from cnnrepro.params import profiles

REPO = Path(__file__).resolve().parents[1]

# One script serves every stage: it copies its inputs into its output and can log an MLflow stage run,
# fail a given number of times, or start a grandchild process that sleeps.
STAGE_SCRIPT = textwrap.dedent(
    '''
    """Test stage: python stage.py NAME OUTPUT [INPUT ...] with behaviour set by environment variables."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    name, output, inputs = sys.argv[1], Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
    print(f"stage {name} starting", flush=True)

    fail_counter = os.environ.get("TEST_FAIL_COUNTER")
    if fail_counter and name == os.environ.get("TEST_FAIL_STAGE"):
        counter = Path(fail_counter)
        failures = int(counter.read_text()) if counter.exists() else 0
        if failures < int(os.environ.get("TEST_FAIL_TIMES", "1")):
            counter.write_text(str(failures + 1))
            print(f"stage {name} failing on purpose (attempt {failures + 1})", flush=True)
            sys.exit(1)

    if name == os.environ.get("TEST_HANG_STAGE"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        Path(os.environ["TEST_PID_FILE"]).write_text(f"{os.getpid()} {child.pid}")
        print(f"stage {name} started sleeper {child.pid}", flush=True)
        time.sleep(600)

    text = name + "\\n" + "".join(p.read_text() for p in inputs)
    if name in os.environ.get("TEST_TRACK", "").split(","):
        from cnnrepro.tracking import stage_run

        with stage_run(name, profile="smoke") as run:
            run.log_metrics({"chars": len(text)})
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"stage {name} wrote {output}", flush=True)
    '''
)

DVC_YAML = textwrap.dedent(
    """
    stages:
      prepare:
        cmd: python stage.py prepare data/prepared.txt
        deps: [stage.py]
        params: [profile]
        outs: [data/prepared.txt]
      train:
        foreach: [a, b]
        do:
          cmd: python stage.py train@${item} models/${item}.txt data/prepared.txt
          deps: [stage.py, data/prepared.txt]
          outs: ["models/${item}.txt"]
      report:
        cmd: python stage.py report reports/report.txt models/a.txt models/b.txt
        deps: [stage.py, models/a.txt, models/b.txt]
        params: [tracking.experiment]
        outs: [reports/report.txt]
    """
)

STAGES = ["prepare", "train@a", "train@b", "report"]


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return result.stdout


def dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True, check=check
    )


def make_project(root: Path, dvc_yaml: str = DVC_YAML) -> Path:
    """Create a git + DVC project at `root` with params.yaml from the smoke profile; commit it."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "profiles", root / "profiles")
    (root / "stage.py").write_text(STAGE_SCRIPT)
    (root / "dvc.yaml").write_text(dvc_yaml)
    profiles.write("smoke", root, root / "params.yaml")
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@example.invalid")
    git(root, "config", "user.name", "cnnrepro test")
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    dvc(root, "config", "core.autostage", "true")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "test project")
    return root
