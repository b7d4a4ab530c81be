"""SIGKILL at seeded random points of the download, align, train and evaluate stages, then a rerun.

Each case first runs the stage uninterrupted in its own project to get the reference outputs and the number of
calls into project code it makes. A seeded RNG then draws the call at which a fresh run kills itself. After the
kill, every stage output that exists must equal the reference, so no partial output was visible at that moment.
After a plain rerun, every output must equal the reference and no MLflow run of the stage may stay RUNNING.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from cnnrepro import atomic, manifest
from cnnrepro.params import profiles

sys.path.insert(0, str(Path(__file__).parent))
import stage_killer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Columns and keys whose values are wall-clock measurements and differ between any two runs.
TIMING_WORDS = ("seconds", "per_s", "elapsed", "duration", "timestamp")
KILLED = -signal.SIGKILL
# One kill point per stage in the default run keeps it to about a minute on 2 cores; the slow run adds 12 more.
SEEDS = [0, *(pytest.param(seed, marks=pytest.mark.slow) for seed in range(1, 13))]


@dataclass(frozen=True)
class Case:
    """One stage under test: how to call it, what it writes and how to set up its inputs."""

    module: str
    argv: tuple[str, ...]
    stage: str
    outputs: tuple[str, ...]
    params: dict


CASES = {
    "download": Case(
        "pipeline.download", ("mnist",), "download@mnist",
        ("data/raw/mnist", "metrics/download/mnist.json"),
        {},
    ),
    "align": Case(
        "pipeline.align", ("faces",), "align@faces",
        ("data/aligned/faces", "metrics/align/faces.json"),
        {"align": {"sizes": [48], "batch_size": 2, "workers": 0, "device": "cpu", "subset": "all"}},
    ),
    "train": Case(
        "pipeline.train", ("lenet5",), "train@lenet5",
        ("models/lenet5", "metrics/train/lenet5.json", "plots/train/lenet5.csv"),
        {"train": {"lenet5": {"epochs": 3, "max_batches": 4, "holdout": 500, "workers": 0, "threads": 1,
                              "device": "cpu", "deterministic": True}}},
    ),
    "evaluate": Case(
        "pipeline.evaluate", ("lenet5",), "evaluate@lenet5",
        ("results/lenet5", "metrics/evaluate/lenet5.json", "plots/evaluate/lenet5-confusion.csv",
         "plots/evaluate/lenet5-confusion.png"),
        {"evaluate": {"mnist": {"batch_size": 250}}},
    ),
}


# -- projects ----------------------------------------------------------------------------------------------------


def _merge(tree: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict):
            _merge(tree.setdefault(key, {}), value)
        else:
            tree[key] = value


def _lenet5_model(folder: Path) -> None:
    """Save an untrained LeNet-5 as the train stage saves its models, evaluated on 1,000 MNIST test images."""
    from cnnrepro import models

    torch.manual_seed(0)
    model = models.build("lenet5", num_classes=10, image_size=32)
    saved = {
        "state_dict": model.state_dict(),
        "family": "lenet5",
        "build_kwargs": {"num_classes": 10, "image_size": 32},
        "classes": [str(d) for d in range(10)],
        "normalization": {"mean": [0.1307], "std": [0.3081]},
        "input_shape": [1, 32, 32],
        "evaluation": {"split": "test", "indices": list(range(0, 10000, 10))},
    }
    folder.mkdir(parents=True)
    torch.save(saved, folder / "model.pt")
    manifest.write(folder)


def _project(root: Path, name: str, shared_data: Path, mlflow_template: Path) -> tuple[Path, dict[str, str]]:
    """Create a project for case `name` with the smoke profile, its inputs and a fresh MLflow store."""
    case = CASES[name]
    root.mkdir(parents=True)
    shutil.copyfile(REPO / "dvc.yaml", root / "dvc.yaml")
    tree = yaml.safe_load(profiles.render("smoke", REPO))
    _merge(tree, case.params)
    (root / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    shutil.copyfile(mlflow_template, root / "mlflow.db")

    if name in ("train", "evaluate"):
        shutil.copytree(shared_data / "mnist", root / "data/raw/mnist")
        manifest.write(root / "data/raw/mnist")
    if name == "evaluate":
        _lenet5_model(root / "models/lenet5")
    if name == "align":
        faces = shared_data / "orl-faces" / "orl_faces"
        for person in ("s1", "s2"):
            for image in sorted((faces / person).iterdir())[:3]:
                (root / "data/raw/faces" / person).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(image, root / "data/raw/faces" / person / image.name)
        manifest.write(root / "data/raw/faces")
    env = {
        "CNNREPRO_ROOT": str(root),
        "CNNREPRO_DATA_MIRROR": str(shared_data),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
    }
    return root, env


# -- output snapshots --------------------------------------------------------------------------------------------


def _timing(name: str) -> bool:
    return any(word in name for word in TIMING_WORDS)


def _content(path: Path):
    """Return a file's content with its wall-clock fields removed, in a form that compares by value."""
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        return {k: v for k, v in data.items() if not _timing(k)} if isinstance(data, dict) else data
    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        return [{k: v for k, v in row.items() if not _timing(k)} for row in rows]
    if path.suffix == ".pt":
        saved = torch.load(path, weights_only=True)
        weights = saved.pop("state_dict")
        return {**saved, "state_dict": {k: v.numpy().tobytes() for k, v in weights.items()}}
    return path.read_bytes()


def _snapshot(root: Path, outputs: tuple[str, ...]) -> dict[str, dict]:
    """Map each existing output to {file inside it: content}; a missing output is left out."""
    found = {}
    for output in outputs:
        path = root / output
        if path.is_file():
            found[output] = {"": _content(path)}
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            found[output] = {p.relative_to(path).as_posix(): _content(p) for p in files}
    return found


def _drop_digests(snapshot: dict[str, dict]) -> dict[str, dict]:
    """Remove the digest and file hashes from manifests: the other entries compare those files by value."""
    cleaned = {}
    for output, files in snapshot.items():
        cleaned[output] = {}
        for name, content in files.items():
            if name.endswith(manifest.MANIFEST_NAME) and isinstance(content, dict):
                content = {k: v for k, v in content.items() if k not in ("digest", "files")}
            cleaned[output][name] = content
        if files and "" not in files:
            cleaned[output]["(file list)"] = sorted(files)
    return cleaned


def _differences(actual: dict[str, dict], expected: dict[str, dict]) -> list[str]:
    found = []
    for output, files in actual.items():
        reference = expected.get(output)
        if reference is None:
            found.append(f"{output} exists but the uninterrupted run does not write it")
            continue
        for name in sorted(set(files) | set(reference)):
            if files.get(name) != reference.get(name):
                found.append(f"{output}/{name}".rstrip("/"))
    return found


def _partials(root: Path, outputs: tuple[str, ...]) -> list[str]:
    folders = {(root / output).parent for output in outputs}
    return sorted(
        str(p.relative_to(root)) for folder in folders if folder.is_dir() for p in folder.iterdir()
        if atomic.PARTIAL_MARK in p.name
    )


def _runs(root: Path, stage: str) -> list:
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cnnrepro")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], f"tags.`cnnrepro.stage` = '{stage}'", max_results=100)


# -- tests -------------------------------------------------------------------------------------------------------

_references: dict[str, tuple[dict, int]] = {}


def _reference(name: str, tmp_path_factory, shared_data: Path, mlflow_template: Path) -> tuple[dict, int]:
    """Run case `name` once without a kill; return its output snapshot and its count of project calls."""
    if name not in _references:
        root, env = _project(tmp_path_factory.mktemp(f"reference-{name}") / "project", name, shared_data,
                             mlflow_template)
        case = CASES[name]
        code, calls = stage_killer.run(case.module, list(case.argv), root, env)
        assert code == 0, f"uninterrupted {case.stage} exited with {code}"
        assert calls, f"uninterrupted {case.stage} reported no calls"
        _references[name] = (_drop_digests(_snapshot(root, case.outputs)), calls)
    return _references[name]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(CASES))
def test_stage_sigkill_then_rerun(name, seed, tmp_path, tmp_path_factory, shared_data, mlflow_template,
                                  fault_record):
    expected, calls = _reference(name, tmp_path_factory, shared_data, mlflow_template)
    case = CASES[name]
    root, env = _project(tmp_path / "project", name, shared_data, mlflow_template)
    kill_at = int(np.random.default_rng(seed).integers(1, calls))

    killed, _ = stage_killer.run(case.module, list(case.argv), root, env, kill_at=kill_at)
    visible = _differences(_drop_digests(_snapshot(root, case.outputs)), expected)
    code, _ = stage_killer.run(case.module, list(case.argv), root, env)
    rerun = _drop_digests(_snapshot(root, case.outputs))
    statuses = [run.info.status for run in _runs(root, case.stage)]
    fault_record(kind="kill", stage=case.stage, seed=seed, kill_at=kill_at, calls=calls, exit=killed,
                 partial_visible=visible, rerun_exit=code,
                 rerun_differences=_differences(rerun, expected) + sorted(set(expected) - set(rerun)),
                 running_runs=statuses.count("RUNNING"))

    assert killed == KILLED, f"{case.stage} exited with {killed} before its call {kill_at} of {calls}"
    assert visible == [], f"partial outputs after a kill at call {kill_at} of {calls}"
    assert code == 0, f"rerun of {case.stage} after a kill at call {kill_at} exited with {code}"
    assert sorted(rerun) == sorted(expected), f"outputs after the rerun: {sorted(rerun)}"
    assert _differences(rerun, expected) == [], f"rerun outputs differ from an uninterrupted run (kill at {kill_at})"
    assert _partials(root, case.outputs) == [], "temporary .partial- paths left beside the outputs"
    assert "RUNNING" not in statuses, f"MLflow runs of {case.stage} after the rerun: {statuses}"
    assert statuses.count("FINISHED") == 1, f"MLflow runs of {case.stage} after the rerun: {statuses}"
