"""The ensemble stage: Table 3 grid and members curve from saved per-member softmax outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cnnrepro.evaluation import ensemble
from cnnrepro.evaluation.classification import topk_errors
from cnnrepro.params import profiles
from tests.test_report_render import REPO

CLASSES, IMAGES = 12, 60


def member_probs(seed: int, labels: np.ndarray, skill: float) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for scheme, boost in ((1, 0.0), (10, 0.5), (144, 0.8)):
        logits = rng.normal(0, 1, (len(labels), CLASSES))
        logits[np.arange(len(labels)), labels] += skill + boost
        p = np.exp(logits)
        out[scheme] = (p / p.sum(1, keepdims=True)).astype(np.float16)
    return out


def write_members(root, count=7):
    labels = np.random.default_rng(99).integers(0, CLASSES, IMAGES)
    paths = np.array([f"val/n0/ILSVRC2012_val_{i:08d}.JPEG" for i in range(IMAGES)])
    members = []
    for k in range(1, count + 1):
        probs = member_probs(k, labels, skill=1.0 + 0.1 * k)
        folder = root / "results" / f"googlenet-{k}"
        folder.mkdir(parents=True)
        np.savez_compressed(folder / "probs.npz", labels=labels, paths=paths,
                            **{f"crops_{s}": p for s, p in probs.items()})
        members.append(probs)
    return labels, members


def test_grid_rows_and_best_member(tmp_path):
    labels, probs = write_members(tmp_path)
    members = [ensemble.load_member(tmp_path / "results" / f"googlenet-{k}") for k in range(1, 8)]
    rows, best = ensemble.grid(members, [1, 10])
    top1 = [topk_errors(p[1].astype(np.float32), labels, (1,))["top1_error"] for p in probs]
    assert best.name == f"googlenet-{int(np.argmin(top1)) + 1}", "single-model rows use the lowest top-1 member"
    assert [(r["models"], r["crops"], r["cost"]) for r in rows] == [(1, 1, 1), (1, 10, 10), (7, 1, 7), (7, 10, 70)], "grid"
    mean = np.mean([p[10].astype(np.float32) for p in probs], axis=0)
    assert rows[3]["top5_error"] == pytest.approx(topk_errors(mean, labels)["top5_error"]), "7 x 10 top-5 error"
    assert rows[2]["paper_top5_error"] == pytest.approx(0.0809), "paper value beside the 7 x 1 cell"


def test_full_table3_grid(tmp_path):
    labels, probs = write_members(tmp_path)
    members = [ensemble.load_member(tmp_path / "results" / f"googlenet-{k}") for k in range(1, 8)]
    rows, _ = ensemble.grid(members, [1, 10, 144])
    cells = [(r["models"], r["crops"], r["cost"]) for r in rows]
    expected = [(1, 1, 1), (1, 10, 10), (1, 144, 144), (7, 1, 7), (7, 10, 70), (7, 144, 1008)]
    assert cells == expected, f"Table 3 cells and costs: {cells}"
    mean = np.mean([p[144].astype(np.float32) for p in probs], axis=0)
    assert rows[5]["top5_error"] == pytest.approx(topk_errors(mean, labels)["top5_error"]), "7 x 144 top-5 error"
    assert rows[5]["paper_top5_error"] == pytest.approx(0.0667), "paper value beside the 7 x 144 cell"


def test_members_curve_starts_at_best(tmp_path):
    labels, _ = write_members(tmp_path)
    members = [ensemble.load_member(tmp_path / "results" / f"googlenet-{k}") for k in range(1, 8)]
    rows, best = ensemble.grid(members, [1])
    curve = ensemble.members_curve(members, 1)
    assert [c["members"] for c in curve] == list(range(1, 8)), "one point per member count"
    assert curve[0]["top5_error"] == pytest.approx(rows[0]["top5_error"]), "n = 1 equals the single-model row"
    assert curve[-1]["top5_error"] == pytest.approx(rows[1]["top5_error"]), "n = 7 equals the ensemble row"


def test_mismatched_members_raise(tmp_path):
    write_members(tmp_path, count=2)
    folder = tmp_path / "results" / "googlenet-2"
    with np.load(folder / "probs.npz") as data:
        arrays = dict(data)
    arrays["paths"] = arrays["paths"][::-1]
    np.savez_compressed(folder / "probs.npz", **arrays)
    members = [ensemble.load_member(tmp_path / "results" / f"googlenet-{k}") for k in (1, 2)]
    with pytest.raises(ensemble.InputError, match="different images"):
        ensemble.check_members(members)


def test_ensemble_stage_writes_outputs(tmp_path, monkeypatch, mlflow_uri):
    import mlflow

    from pipeline import ensemble as stage

    write_members(tmp_path)
    profiles.write("smoke", REPO, tmp_path / "params.yaml")
    shutil.copyfile(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.setenv("CNNREPRO_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert stage.main(["googlenet"]) == 0, "ensemble stage exit code"

    metrics = json.loads((tmp_path / "metrics/ensemble/googlenet.json").read_text())
    assert {"top5_error_1model_1crop", "top5_error_7model_10crop"} <= set(metrics), f"metric keys {sorted(metrics)}"
    for name in ("googlenet-grid.csv", "googlenet-grid.png", "googlenet-members.csv", "googlenet-members.png"):
        assert (tmp_path / "plots/ensemble" / name).is_file(), f"plot {name} written"
    assert (tmp_path / "results/ensemble-googlenet/manifest.json").is_file(), "results folder has a manifest"

    client = mlflow.tracking.MlflowClient(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("cnnrepro").experiment_id])[0]
    assert run.data.metrics["top5_error_7model_10crop"] == pytest.approx(metrics["top5_error_7model_10crop"]), "MLflow metric"
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/googlenet-grid.png" in logged, f"plots logged to MLflow: {logged}"
