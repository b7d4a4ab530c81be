"""The train stage for AlexNet, GoogLeNet and DeepFace on small generated image folders (slow: real models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cnnrepro import manifest
from cnnrepro.params import profiles
from cnnrepro.training import checkpoint
from cnnrepro.training.data import split_validation
from pipeline import train as train_stage

REPO = Path(__file__).resolve().parents[1]
WNIDS = ("n01440764", "n02102040")


def _write_images(folder: Path, count: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.JPEG" if folder.parent.name == "train" else folder / f"{i}.png")


@pytest.fixture
def checkout(tmp_path, mlflow_uri, monkeypatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    for k, wnid in enumerate(WNIDS):
        _write_images(root / "data" / "raw" / "imagenet" / "train" / wnid, 12, 72, k)
    for k in range(3):
        _write_images(root / "data" / "aligned" / "faces" / "152" / f"person{k}", 6, 152, 10 + k)
    manifest.write(root / "data" / "raw" / "imagenet")
    manifest.write(root / "data" / "aligned" / "faces")

    tree = profiles.resolve("smoke", REPO)
    tiny = {"epochs": 2, "batch_size": 8, "max_batches": 2, "workers": 0, "threads": 1, "val_fraction": 0.2}
    tree["train"]["alexnet"].update(tiny, image_size=67, width=0.125)
    tree["train"]["googlenet"].update(tiny, image_size=96, width=0.125, polyak_decay=0.5)
    tree["train"]["deepface"].update(tiny, image_size=76, width=0.125)
    (root / "params.yaml").write_text(yaml.safe_dump(tree), encoding="utf-8")
    monkeypatch.setenv("CNNREPRO_ROOT", str(root))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("key", ["alexnet", "googlenet-1", "deepface"])
def test_stage_family_writes_loadable_model(checkout, key):
    assert train_stage.main([key]) == 0, f"train@{key} failed"
    metrics = json.loads((checkout / "metrics" / "train" / f"{key}.json").read_text())
    assert metrics["epochs"] == 2, f"{key}: expected 2 epochs, got {metrics['epochs']}"
    model, meta = checkpoint.load_model(checkout / "models" / key)
    channels, size, _ = meta["input_shape"]
    with torch.no_grad():
        logits = model(torch.zeros(2, channels, size, size))
    assert logits.shape[1] == len(meta["classes"]), f"{key}: {logits.shape[1]} outputs for {meta['classes']}"
    if key == "deepface":
        assert meta["feature_max"].ndim == 1, "DeepFace must save a per-component feature maximum"
        assert (meta["feature_max"] >= 0).all(), "F7 features follow a ReLU, so their maxima are non-negative"


@pytest.mark.slow
def test_stage_googlenet_members_differ_only_in_data(checkout):
    assert train_stage.main(["googlenet-1"]) == 0, "train@googlenet-1 failed"
    assert train_stage.main(["googlenet-2"]) == 0, "train@googlenet-2 failed"
    first = checkpoint.safe_load(checkout / "models" / "googlenet-1" / "model.pt")
    second = checkpoint.safe_load(checkout / "models" / "googlenet-2" / "model.pt")
    assert first["seed"] + 1 == second["seed"], f"member seeds {first['seed']} and {second['seed']}"
    assert first["build_kwargs"] == second["build_kwargs"], "members must share the architecture"
    different = [k for k in first["state_dict"] if not torch.equal(first["state_dict"][k], second["state_dict"][k])]
    assert different, "two members with different data order ended with identical weights"


@pytest.mark.slow
def test_stage_deepface_ablation_options(checkout):
    path = checkout / "params.yaml"
    tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    tree["train"]["deepface"].update(variant="sub3", identities=2, images_fraction=0.5)
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    assert train_stage.main(["deepface"]) == 0, "train@deepface with ablation options failed"
    model, meta = checkpoint.load_model(checkout / "models" / "deepface")
    assert meta["classes"] == ["person0", "person1"], f"the first two identities by name, got {meta['classes']}"
    assert meta["build_kwargs"]["variant"] == "sub3", f"saved build options {meta['build_kwargs']}"
    assert isinstance(model.l4, torch.nn.Identity), "the reloaded sub3 model still has L4"
    metrics = json.loads((checkout / "metrics" / "train" / "deepface.json").read_text())
    assert metrics["identities"] == 2, f"metrics report {metrics['identities']} identities"
    # The validation split runs first, over all 3 x 6 images in identity order. Half of each kept identity's
    # remaining images train.
    _, held = split_validation(18, tree["train"]["deepface"]["val_fraction"], tree["train"]["deepface"]["seed"])
    expected = sum(max(1, round((6 - int(np.sum(held // 6 == k))) * 0.5)) for k in range(2))
    assert metrics["train_images"] == expected, f"{metrics['train_images']} training images, expected {expected}"
