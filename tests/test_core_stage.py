"""The stage frame: params are checked before any work, input errors end without a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from cnnrepro import stage
from cnnrepro.errors import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_copy(tmp_path, monkeypatch, mlflow_uri):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CNNREPRO_ROOT", raising=False)
    return tmp_path


def test_invalid_params_stop_before_work(repo_copy, capsys):
    data = yaml.safe_load((repo_copy / "params.yaml").read_text())
    data["train"]["lenet5"]["batch_size"] = 0
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(data))
    calls = []
    code = stage.run_stage("train@lenet5", ["train.lenet5"], lambda ctx: calls.append(ctx))
    assert code == 2, f"invalid params must exit 2, got {code}"
    assert calls == [], "the body must not run"
    assert "train.lenet5.batch_size = 0 is invalid" in capsys.readouterr().err


def test_input_error_exits_1_with_message(repo_copy, capsys):
    def body(ctx):
        raise InputError("pairs.txt line 3 has 5 fields; expected 3 or 4")

    assert stage.run_stage("evaluate@deepface", ["evaluate.lfw"], body) == 1
    assert "line 3 has 5 fields" in capsys.readouterr().err


def test_missing_input_manifest_names_stage(repo_copy, capsys):
    code = stage.run_stage("align@lfw", ["align"], lambda ctx: {}, inputs={"lfw": "data/raw/lfw"})
    assert code == 1, "a missing upstream output must exit 1"
    assert "dvc repro" in capsys.readouterr().err


def test_body_metrics_reach_run(repo_copy):
    seen = {}

    def body(ctx):
        seen["profile"] = ctx.profile
        seen["section"] = ctx.params["train.lenet5"].epochs
        return {"test_error": 0.01}

    assert stage.run_stage("train@lenet5", ["train.lenet5"], body) == 0
    epochs = yaml.safe_load((repo_copy / "params.yaml").read_text())["train"]["lenet5"]["epochs"]
    assert seen == {"profile": "quick", "section": epochs}, seen
