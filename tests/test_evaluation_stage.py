"""The evaluate stage end to end on real data, with untrained models built by `cnnrepro.models`.

The trained-model loader is replaced by one that builds a fresh model with the metadata a training run saves, so
these tests exercise data reading, preprocessing, protocols and outputs without a training run.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnrepro import atomic, models
from cnnrepro.data.lfw import read_pairs
from cnnrepro.evaluation import stage as evaluation_stage
from cnnrepro.evaluation.classification import topk_errors
from cnnrepro.faces import store
from cnnrepro.params import profiles
from pipeline import evaluate as evaluate_stage
from tests.test_report_render import REPO


def fake_manifest(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_json(folder / "manifest.json", {"digest": f"test-{folder.name}", "count": 0, "files": {}})


@pytest.fixture
def project(tmp_path, monkeypatch, mlflow_uri):
    profiles.write("quick", REPO, tmp_path / "params.yaml")
    shutil.copyfile(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    monkeypatch.setenv("CNNREPRO_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    return tmp_path


def use_model(monkeypatch, root: Path, key: str, family: str, meta: dict, **build) -> torch.nn.Module:
    model = models.build(family, **build).eval()
    fake_manifest(root / "models" / key)
    monkeypatch.setattr(evaluation_stage, "load_model", lambda _root, _key: (model, {**meta, "build_kwargs": build}))
    return model


def set_param(root: Path, dotted: str, value) -> None:
    import yaml

    tree = yaml.safe_load((root / "params.yaml").read_text())
    node = tree
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    (root / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))


def test_lenet5_error_on_held_out_split(project, monkeypatch, shared_data):
    from cnnrepro.data import mnist

    (project / "data/raw").mkdir(parents=True)
    shutil.copytree(shared_data / "mnist", project / "data/raw/mnist")
    fake_manifest(project / "data/raw/mnist")
    held = np.sort(np.random.default_rng(0).permutation(10000)[:300])
    meta = {"normalization": {"mean": [0.0784], "std": [0.784]}, "input_shape": [1, 32, 32],
            "evaluation": {"split": "test", "indices": held.tolist()}, "classes": [str(d) for d in range(10)]}
    model = use_model(monkeypatch, project, "lenet5", "lenet5", meta, num_classes=10, image_size=32)

    assert evaluate_stage.main(["lenet5"]) == 0, "evaluate@lenet5 exit code"
    metrics = json.loads((project / "metrics/evaluate/lenet5.json").read_text())
    images, labels = mnist.load(project / "data/raw/mnist", "test")
    x = torch.zeros(300, 1, 32, 32)
    x[:, 0, 2:30, 2:30] = torch.from_numpy(images[held]).float() / 255
    with torch.inference_mode():
        expected = (model((x - 0.0784) / 0.784).argmax(1).numpy() != labels[held]).mean()
    assert metrics["test_images"] == 300, "only the held-out images are tested"
    assert metrics["test_error"] == pytest.approx(expected), "error on the held-out split"
    assert (project / "plots/evaluate/lenet5-confusion.csv").is_file(), "confusion data for DVC"


def lfw_project(project: Path, shared_data: Path, size: int = 76) -> list[str]:
    """Write a 3-fold pairs file drawn from the real pairs.txt and 76 px crops of its images."""
    from PIL import Image

    folds = read_pairs(shared_data / "lfw" / "pairs.txt")
    lines = ["3\t4"]
    keys = set()
    for fold in folds[:3]:
        for pair in fold[:4] + fold[300:304]:
            lines.append(f"{pair.name1}\t{pair.n1}\t{pair.n2}" if pair.same else
                         f"{pair.name1}\t{pair.n1}\t{pair.name2}\t{pair.n2}")
            keys |= {f"{pair.name1}/{pair.name1}_{pair.n1:04d}", f"{pair.name2}/{pair.name2}_{pair.n2:04d}"}
    root = project / "data/aligned/lfw"
    (root / "protocol").mkdir(parents=True)
    (root / "protocol/pairs.txt").write_text("\n".join(lines) + "\n")
    rows, pixels = [], []
    for key in sorted(keys):
        image = Image.open(shared_data / "lfw/lfw-deepfunneled" / f"{key}.jpg").convert("RGB").resize((size, size))
        pixels.append(np.asarray(image))
        rows.append({"path": f"{key}.jpg", "status": "aligned"})
    rows[0]["status"] = "fallback-center"
    index = [store.IndexRow(r["path"].removesuffix(".jpg"), r["path"].split("/")[0], r["status"]) for r in rows]
    store.write(root, index, {size: np.stack(pixels)})
    with open(root / "report.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "status"])
        writer.writeheader()
        writer.writerows(rows)
    fake_manifest(root)
    return sorted(keys)


def deepface_meta(features: int) -> dict:
    return {"normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}, "input_shape": [3, 76, 76],
            "feature_max": torch.rand(features) + 0.5, "classes": [f"id{i}" for i in range(40)]}


def test_deepface_lfw_protocols(project, monkeypatch, shared_data):
    keys = lfw_project(project, shared_data)
    use_model(monkeypatch, project, "deepface", "deepface", deepface_meta(512), num_classes=40, image_size=76, width=0.125)
    set_param(project, "evaluate.lfw.wccn_dims", 8)

    assert evaluate_stage.main(["deepface"]) == 0, "evaluate@deepface exit code"
    metrics = json.loads((project / "metrics/evaluate/deepface.json").read_text())
    for protocol in ("unsupervised", "image_restricted", "unrestricted"):
        for name in ("accuracy", "accuracy_se", "auc", "eer", "tar_at_far_1e-3"):
            assert f"{protocol}.{name}" in metrics, f"metric {protocol}.{name}"
    assert metrics["pairs"] == 24, "every pair evaluated"
    assert metrics["accuracy_mean"] == metrics["image_restricted.accuracy"], "headline accuracy is image-restricted"
    assert metrics["accuracy_se"] == metrics["image_restricted.accuracy_se"], "headline SE is image-restricted"
    assert metrics["fallback_pairs"] >= 1, "pairs with a centre-crop fallback image are counted"
    rows = json.loads((project / "results/deepface/protocols.json").read_text())["protocols"]
    assert len(rows[0]["fold_accuracies"]) == 3, "one accuracy per fold of the file"
    with np.load(project / "results/deepface/features.npz") as saved:
        assert list(saved["keys"]) == keys, "features saved for every pair image"
    with open(project / "plots/evaluate/deepface-roc.csv") as handle:
        roc = list(csv.DictReader(handle))
    assert float(roc[0]["fpr"]) == 0.0, "ROC starts at FPR 0"
    assert float(roc[-1]["tpr"]) == 1.0, "ROC ends at TPR 1"
    assert (project / "plots/evaluate/deepface-roc.png").stat().st_size > 0, "ROC figure"


def test_deepface_missing_image(project, monkeypatch, shared_data, capsys):
    keys = lfw_project(project, shared_data)
    # Drop keys[3] from the store, as if its crop were missing.
    root = project / "data/aligned/lfw"
    crops = store.AlignedCrops(root, 76, "align@lfw")
    kept = [i for i, row in enumerate(crops.rows) if row.key != keys[3]]
    store.write(root, [crops.rows[i] for i in kept], {76: np.array(crops.images[kept])})
    use_model(monkeypatch, project, "deepface", "deepface", deepface_meta(512), num_classes=40, image_size=76, width=0.125)
    assert evaluate_stage.main(["deepface"]) == 1, "a missing image stops the stage"
    assert keys[3] in capsys.readouterr().err, "the error names the missing image"
    assert not (project / "results/deepface").exists(), "no partial output"

    set_param(project, "evaluate.lfw.missing", "skip")
    set_param(project, "evaluate.lfw.wccn_dims", 8)
    assert evaluate_stage.main(["deepface"]) == 0, "with missing: skip the stage finishes"
    metrics = json.loads((project / "metrics/evaluate/deepface.json").read_text())
    assert metrics["skipped_pairs"] >= 1, "skipped pairs are reported"
    assert metrics["pairs"] + metrics["skipped_pairs"] == 24, "evaluated plus skipped is every pair"


def test_googlenet_member_multicrop_probs(project, monkeypatch, shared_data):
    from cnnrepro.data import imagenet

    folder = project / "data/raw/imagenet"
    folder.mkdir(parents=True)
    for part, source in (("train", "imagenette/train"), ("val", "imagenette/val"), ("meta", "imagenet-meta")):
        (folder / part).symlink_to(shared_data / source)
    fake_manifest_file = folder / "manifest.json"
    atomic.write_json(fake_manifest_file, {"digest": "test-imagenet"})
    # The model's outputs are in reverse wnid order, so labels must be mapped by wnid, not by index.
    model_classes = imagenet.classes(folder)[::-1]
    meta = {"normalization": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "input_shape": [3, 96, 96], "classes": model_classes}
    use_model(monkeypatch, project, "googlenet-1", "googlenet", meta, num_classes=10, image_size=96, width=0.125)
    set_param(project, "evaluate.ilsvrc.max_images", 3)
    set_param(project, "evaluate.ilsvrc.crops", [1, 10, 144])

    assert evaluate_stage.main(["googlenet-1"]) == 0, "evaluate@googlenet-1 exit code"
    metrics = json.loads((project / "metrics/evaluate/googlenet-1.json").read_text())
    with np.load(project / "results/googlenet-1/probs.npz") as saved:
        for scheme in (1, 10, 144):
            probs = saved[f"crops_{scheme}"].astype(np.float32)
            assert probs.shape == (3, 10), f"{scheme}-crop probabilities per image"
            np.testing.assert_allclose(probs.sum(1), 1.0, atol=5e-3, err_msg=f"{scheme}-crop rows are softmax")
            expected = topk_errors(probs, saved["labels"])["top1_error"]
            assert metrics[f"top1_error_{scheme}crop"] == pytest.approx(expected, abs=1e-6), f"{scheme}-crop top-1"
        for label, path in zip(saved["labels"], saved["paths"]):
            assert model_classes[label] == Path(str(path)).parent.name, f"{path} labelled {model_classes[label]}"
    assert metrics["top1_error"] == metrics["top1_error_144crop"], "headline top-1 is the largest crop scheme"
    assert metrics["top5_error"] == metrics["top5_error_144crop"], "headline top-5 is the largest crop scheme"
