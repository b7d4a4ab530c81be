"""The train stage: invalid params stop it before any work; LeNet-5 trains end to end on real MNIST."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cnnrepro import manifest
from cnnrepro.params import profiles
from cnnrepro.training import checkpoint
from pipeline import train as train_stage

REPO = Path(__file__).resolve().parents[1]


def _checkout(tmp_path: Path, shared_data: Path, lenet5: dict) -> Path:
    """A repository root with real MNIST, the smoke params and `lenet5` overriding train.lenet5."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    tree = profiles.resolve("smoke", REPO)
    tree["train"]["lenet5"].update(lenet5)
    (root / "params.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    mnist = root / "data" / "raw" / "mnist"
    shutil.copytree(shared_data / "mnist", mnist)
    manifest.write(mnist)
    return root


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"optimizer": {"lr": -0.1}}, "train.lenet5.optimizer.lr"),
        ({"batch_size": 0}, "train.lenet5.batch_size"),
    ],
)
def test_stage_invalid_params_fail_first(tmp_path, shared_data, monkeypatch, capsys, mlflow_uri, override, key):
    root = _checkout(tmp_path, shared_data, override)
    monkeypatch.setenv("CNNREPRO_ROOT", str(root))
    code = train_stage.main(["lenet5"])
    assert code == 2, f"invalid params must exit with 2, got {code}"
    assert key in capsys.readouterr().err, f"the message must name {key}"
    assert not (root / "models").exists(), "no output may be written for invalid params"
    assert not (root / ".cnnrepro" / "prepared").exists(), "no data may be prepared for invalid params"


def test_stage_unknown_key_is_rejected(capsys):
    with pytest.raises(SystemExit) as raised:
        train_stage.main(["googlenet-8"])
    assert raised.value.code == 2, "an unknown key is a usage error"
    assert "googlenet-8" in capsys.readouterr().err, "the message must name the key"


def test_stage_lenet5_on_real_mnist(tmp_path, shared_data, monkeypatch, mlflow_uri):
    root = _checkout(tmp_path, shared_data, {"epochs": 2, "max_batches": 60, "workers": 0, "threads": 1, "holdout": 1000})
    monkeypatch.setenv("CNNREPRO_ROOT", str(root))
    assert train_stage.main(["lenet5"]) == 0, "the stage failed"

    metrics = json.loads((root / "metrics" / "train" / "lenet5.json").read_text())
    assert metrics["epochs"] == 2, f"expected 2 epochs, got {metrics['epochs']}"
    assert metrics["val_error"] < 0.5, f"LeNet-5 validation error {metrics['val_error']} is near chance (0.9)"
    with open(root / "plots" / "train" / "lenet5.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2], f"plot rows {rows}"
    assert {"train_loss", "train_error", "val_error", "lr"} <= set(rows[0]), f"plot columns {list(rows[0])}"

    model, meta = checkpoint.load_model(root / "models" / "lenet5")
    held = np.asarray(meta["evaluation"]["indices"])
    assert len(held) == 1000, f"expected 1000 held-out test indices, got {len(held)}"
    from cnnrepro.data import mnist

    images, labels = mnist.load(root / "data" / "raw" / "mnist", "test")
    padded = np.zeros((len(held), 1, 32, 32), dtype=np.float32)
    padded[:, 0, 2:30, 2:30] = images[held] / 255.0
    mean, std = meta["normalization"]["mean"][0], meta["normalization"]["std"][0]
    with torch.no_grad():
        logits = model((torch.from_numpy(padded) - mean) / std)
    error = (logits.argmax(1).numpy() != labels[held]).mean()
    assert error < 0.5, f"held-out test error {error} of the saved model is near chance"
    assert not list((root / ".cnnrepro" / "checkpoints").rglob("last.pt")), "resume checkpoint left behind"
