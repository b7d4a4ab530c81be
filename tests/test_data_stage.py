"""`python -m pipeline.download` as DVC runs it: kill safety and the recorded manifest."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from cnnrepro import manifest

REPO = Path(__file__).resolve().parents[1]


def _stage(root: Path, shared_data: Path, dataset: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "CNNREPRO_ROOT": str(root),
        "CNNREPRO_DATA_MIRROR": str(shared_data),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.download", dataset],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _partials(raw: Path) -> list[Path]:
    return [p for p in raw.iterdir() if ".partial-" in p.name] if raw.is_dir() else []


def test_download_stage_sigkill_then_rerun(shared_data, tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    raw = root / "data" / "raw"

    process = _stage(root, shared_data, "imagenet")
    deadline = time.monotonic() + 120
    killed_with = None
    while time.monotonic() < deadline and process.poll() is None:
        partial = _partials(raw)
        # The stage links train/ first, then the 3,925 images of val/; kill it in the middle of val/.
        classes = list((partial[0] / "val").iterdir()) if partial and (partial[0] / "val").is_dir() else []
        if classes:
            killed_with = len(classes)
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    output = process.communicate(timeout=60)[0]
    assert killed_with is not None, f"the stage was killed while copying images; output:\n{output}"
    assert process.returncode == -signal.SIGKILL, f"return code {process.returncode}"
    assert not (raw / "imagenet").exists(), "a killed run leaves no data/raw/imagenet"
    assert _partials(raw), "the killed run left its temporary folder, which the rerun must remove"

    rerun = _stage(root, shared_data, "imagenet")
    output = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, f"rerun failed:\n{output}"
    assert not _partials(raw), f"stale partial folders removed: {_partials(raw)}"
    recorded = json.loads((raw / "imagenet" / manifest.MANIFEST_NAME).read_text())
    rebuilt = manifest.build(raw / "imagenet")
    assert recorded["digest"] == rebuilt["digest"], "manifest matches the files on disk"
    total = sum(1 for _ in (shared_data / "imagenette").rglob("*.JPEG"))
    assert recorded["train_images"] + recorded["eval_images"] == total, f"{recorded['train_images']} + eval"
    metrics = json.loads((root / "metrics" / "download" / "imagenet.json").read_text())
    assert metrics["files"] == recorded["count"], f"metrics {metrics}"
    umask = os.umask(0)
    os.umask(umask)
    mode = (raw / "imagenet").stat().st_mode & 0o777
    assert mode == 0o777 & ~umask, f"dataset folder mode {oct(mode)} follows the umask {oct(umask)}"
