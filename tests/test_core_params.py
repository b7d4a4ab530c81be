"""params.yaml validation, profiles and the dvc.yaml declarations of each stage."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnrepro import params, stage
from cnnrepro.params import profiles

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    return tmp_path


def _edit(path: Path, dotted: str, value) -> None:
    data = yaml.safe_load(path.read_text())
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


_DELETE = object()


@pytest.mark.parametrize("name", params.PROFILES)
def test_profiles_validate(name, repo_copy):
    tree = profiles.resolve(name, repo_copy)
    assert tree["profile"] == name, "resolved tree must carry its profile name"
    params.Params.model_validate(tree)


def test_committed_params_match_quick_profile():
    expected = profiles.render("quick", REPO)
    assert (REPO / "params.yaml").read_text() == expected, "params.yaml differs from `cnnrepro profile quick`"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("train.lenet5.optimizer.lr", -0.1, "train.lenet5.optimizer.lr = -0.1 is invalid"),
        ("train.alexnet.batch_size", 0, "train.alexnet.batch_size = 0 is invalid"),
        ("profile", "quik", "allowed: smoke, quick, paper"),
        ("train.googlenet.batchsize", 32, "did you mean 'batch_size'"),
        ("download.imagenet.source", "imagenet22k", "'imagenette' or 'ilsvrc2012'"),
    ],
)
def test_invalid_value_names_key_and_allowed(key, value, expected, repo_copy):
    path = repo_copy / "params.yaml"
    _edit(path, key, value)
    section = "profile" if key == "profile" else ".".join(key.split(".")[:2])
    with pytest.raises(params.ParamsError) as info:
        params.load([section], path)
    assert expected in str(info.value), f"message {info.value!r} lacks {expected!r}"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("download.retries", -1, "download.retries = -1 is invalid"),
        ("download.timeout_s", -5.0, "download.timeout_s = -5.0 is invalid"),
    ],
)
def test_leaf_key_keeps_field_bounds(key, value, expected, repo_copy):
    path = repo_copy / "params.yaml"
    _edit(path, key, value)
    with pytest.raises(params.ParamsError) as info:
        params.load([key], path)
    assert expected in str(info.value), f"message {info.value!r} lacks {expected!r}"


def test_unknown_top_level_key_is_rejected(repo_copy):
    path = repo_copy / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data["trian"] = data["train"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(params.ParamsError) as info:
        params.load(["train.lenet5"], path)
    assert "unknown top-level key 'trian'" in str(info.value), f"message {info.value!r} does not name the key"
    assert "did you mean 'train'" in str(info.value), f"message {info.value!r} suggests no fix"


def test_missing_section_is_named(repo_copy):
    path = repo_copy / "params.yaml"
    _edit(path, "evaluate", _DELETE)
    with pytest.raises(params.ParamsError, match="missing params key 'evaluate.lfw'"):
        params.load(["evaluate.lfw"], path)


def test_unknown_model_section_lists_allowed():
    with pytest.raises(params.ParamsError, match="allowed: lenet5, alexnet, deepface, googlenet"):
        params.section_type("train.vgg16")


def test_cli_profile_writes_and_checks(repo_copy):
    env_cmd = [sys.executable, "-m", "cnnrepro"]
    written = subprocess.run([*env_cmd, "profile", "smoke"], cwd=repo_copy, capture_output=True, text=True)
    assert written.returncode == 0, written.stderr
    assert yaml.safe_load((repo_copy / "params.yaml").read_text())["profile"] == "smoke", "profile not written"
    check = subprocess.run([*env_cmd, "profile", "quick", "--check"], cwd=repo_copy, capture_output=True, text=True)
    assert check.returncode == 1, "a smoke params.yaml must not pass the quick check"
    bad = subprocess.run([*env_cmd, "profile", "quik"], cwd=repo_copy, capture_output=True, text=True)
    assert bad.returncode == 2, "a misspelt profile must exit 2"
    assert "allowed: smoke, quick, paper" in bad.stderr, bad.stderr


def _dvc_stage_names() -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_every_stage_declares_resolvable_params():
    names = _dvc_stage_names()
    assert "train@googlenet-7" in names, f"stage list lacks the GoogLeNet members: {names}"
    for name in names:
        declared = stage.declared_params(REPO, name)
        assert "profile" in declared, f"{name} must declare profile"
        assert "tracking" in declared, f"{name} must declare tracking"
        for key in declared:
            params.section_type(key)


def test_undeclared_read_is_rejected():
    with pytest.raises(RuntimeError, match="declares only"):
        stage.check_declared(REPO, "train@lenet5", ["profile", "train.alexnet"])
    stage.check_declared(REPO, "align@lfw", ["profile", "align.detector"])


def test_profile_partial_override_keeps_section_defaults(repo_copy):
    (repo_copy / "profiles" / "smoke.yaml").write_text("train:\n  deepface:\n    optimizer:\n      lr: 0.003\n")
    tree = profiles.resolve("smoke", repo_copy)
    optimizer = tree["train"]["deepface"]["optimizer"]
    assert optimizer["lr"] == 0.003, "the profile's value must win"
    assert optimizer["weight_decay"] == 0.0, "DeepFace's own default (no weight decay) must survive the override"
