"""The `evaluate@<key>` stage: each trained model on its paper's test protocol.

- lenet5: MNIST test error on the split the model file names (the held-out test images in the test-holdout set-up).
- deepface: LFW verification under the unsupervised, image-restricted and unrestricted protocols.
- alexnet, googlenet-k: ImageNet top-1/top-5 error for each test-time crop scheme; GoogLeNet members also save
  every image's averaged softmax per scheme to results/<key>/probs.npz for the ensemble stage.

Outputs: results/<key>/ (written as a whole), metrics/evaluate/<key>.json, plots/evaluate/<key>-*.{csv,png}.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnrepro import atomic, manifest
from cnnrepro.errors import InputError
from cnnrepro.evaluation import classification, lfw, plots, verification

log = logging.getLogger(__name__)

KEYS = ("lenet5", "deepface", "alexnet", *(f"googlenet-{k}" for k in range(1, 8)))
SECTIONS = {"lenet5": "evaluate.mnist", "deepface": "evaluate.lfw"}
DATA = {"lenet5": ("mnist", "data/raw/mnist"), "deepface": ("lfw", "data/aligned/lfw")}
PLOTS = {"lenet5": "lenet5-confusion", "deepface": "deepface-roc"}


def section_of(key: str) -> str:
    return SECTIONS.get(key, "evaluate.ilsvrc")


def data_of(key: str) -> tuple[str, str]:
    return DATA.get(key, ("imagenet", "data/raw/imagenet"))


def plot_of(key: str) -> str:
    return PLOTS.get(key, f"{key}-topk")


def outputs_of(key: str) -> list[str]:
    return [f"results/{key}", f"metrics/evaluate/{key}.json", f"plots/evaluate/{plot_of(key)}.csv"]


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(root: Path, key: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    from cnnrepro.training.checkpoint import load_model as load

    return load(root / "models" / key, device=device())


def _normalisation(meta: dict[str, Any]) -> classification.Normalisation:
    try:
        norm = meta["normalization"]
        return classification.Normalisation(tuple(norm["mean"]), tuple(norm["std"]))
    except (KeyError, TypeError) as err:
        raise InputError(f"the model file lacks its input normalisation ({err}); retrain it") from None


def _image_size(meta: dict[str, Any]) -> int:
    try:
        return int(meta["input_shape"][-1])
    except (KeyError, TypeError, IndexError):
        return int(meta["build_kwargs"]["image_size"])


# -- LeNet-5 on MNIST ------------------------------------------------------------------------------------------


def evaluate_mnist(ctx, key: str, out: Path) -> dict[str, float]:
    from cnnrepro.data import mnist

    section = ctx.params["evaluate.mnist"]
    model, meta = load_model(ctx.root, key)
    spec = meta.get("evaluation", {"split": "test"})
    images, labels = mnist.load(ctx.root / "data" / "raw" / "mnist", spec.get("split", "test"))
    if spec.get("indices") is not None:
        indices = np.asarray(spec["indices"], dtype=np.int64)
        images, labels = images[indices], labels[indices]
    norm = _normalisation(meta)
    padded = np.zeros((len(images), 1, 32, 32), dtype=np.float32)
    padded[:, 0, 2:30, 2:30] = images / 255.0  # LeNet-5 reads the 28x28 digit centred in a 32x32 field
    predictions = []
    with torch.inference_mode():
        for chunk in torch.from_numpy(padded).split(section.batch_size):
            x = (chunk - norm.mean[0]) / norm.std[0]
            predictions.append(model(x.to(device())).argmax(dim=1).cpu().numpy())
    predicted = np.concatenate(predictions)
    errors = int(np.sum(predicted != labels))
    metrics = {
        "test_error": errors / len(labels),
        "top1_correct": float(len(labels) - errors),
        "test_errors": float(errors),
        "test_images": float(len(labels)),
    }
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    plots.write_csv(out / "predictions.csv", ["actual", "predicted"], zip(labels.tolist(), predicted.tolist()))
    plots.write_csv(
        ctx.root / "plots" / "evaluate" / f"{plot_of(key)}.csv", ["actual", "predicted"],
        zip(labels.tolist(), predicted.tolist()),
    )
    plots.confusion_png(
        matrix, [str(d) for d in range(10)], ctx.root / "plots" / "evaluate" / f"{plot_of(key)}.png",
        f"LeNet-5 on MNIST {spec.get('split', 'test')} ({len(labels)} images): {100 * metrics['test_error']:.2f}% error",
    )
    atomic.write_json(out / "evaluation.json", {"split": spec.get("split"), "held_out": spec.get("indices") is not None})
    return metrics


# -- DeepFace on LFW -------------------------------------------------------------------------------------------


def _lfw_table(protocol: Path, view: str) -> lfw.PairTable:
    from cnnrepro.data.lfw import read_pairs

    if view == "view2":
        return lfw.pair_table(read_pairs(protocol / "pairs.txt"))
    train = lfw.pair_table(read_pairs(protocol / "pairsDevTrain.txt"))
    test = lfw.pair_table(read_pairs(protocol / "pairsDevTest.txt"))
    return lfw.PairTable(
        left=train.left + test.left,
        right=train.right + test.right,
        same=np.concatenate([train.same, test.same]),
        fold=np.concatenate([np.zeros(len(train), np.int64), np.ones(len(test), np.int64)]),
    )


def evaluate_lfw(ctx, key: str, out: Path) -> dict[str, float]:
    from cnnrepro.faces.store import AlignedCrops

    section = ctx.params["evaluate.lfw"]
    root = ctx.root / "data" / "aligned" / "lfw"
    model, meta = load_model(ctx.root, key)
    image_size = _image_size(meta)
    table = _lfw_table(root / "protocol", section.view)
    report = root / "report.csv"
    statuses = lfw.read_alignment_status(report) if report.is_file() else None
    store = AlignedCrops.open(root, image_size, "align@lfw")
    check = lfw.check_images(table, store, statuses)
    table, skipped = lfw.drop_unusable(table, check, section.missing)

    keys = table.images()
    norm = _normalisation(meta)
    dataset = lfw.FaceImages(store.images, [check.rows[k] for k in keys], image_size, norm.mean, norm.std)
    features = lfw.extract_features(model, dataset, section.batch_size, section.flip, device(), section.workers)
    feature_max = meta.get("feature_max")
    if feature_max is None:
        log.warning("the model file has no feature_max; features are only L2-normalised")
    else:
        feature_max = torch.as_tensor(feature_max).cpu().numpy()
    results = lfw.run_protocols(features, keys, table, feature_max, section.similarity, skipped, section.wccn_dims)

    fallback_pairs = sum(a in check.fallback or b in check.fallback for a, b in zip(table.left, table.right))
    metrics: dict[str, float] = {}
    for item in results:
        prefix = item.protocol.replace("-", "_") + "."
        values = item.result.metrics(prefix)
        if section.view == "view1":
            # View 1 has one test set: report the accuracy on pairsDevTest.txt with the threshold from DevTrain.
            values[prefix + "accuracy"] = float(item.result.fold_accuracies[1])
            values.pop(prefix + "accuracy_se")
        metrics.update(values)
    metrics.update({"pairs": float(len(table)), "skipped_pairs": float(skipped), "fallback_pairs": float(fallback_pairs)})
    # Plain headline names: the image-restricted protocol, the one DeepFace-single reports as 97.00%.
    metrics["accuracy_mean"] = metrics["image_restricted.accuracy"]
    if "image_restricted.accuracy_se" in metrics:
        metrics["accuracy_se"] = metrics["image_restricted.accuracy_se"]

    atomic.write_json(
        out / "protocols.json",
        {"view": section.view, "crop_size": store.size, "protocols": [r.row() for r in results]},
    )
    np.savez_compressed(out / "features.npz", keys=np.array(keys), features=features.astype(np.float32))
    curves = {}
    for item in results:
        roc = item.result.roc
        name = item.protocol
        plots.write_csv(out / f"roc-{name}.csv", ["fpr", "tpr"], zip(roc.fpr.tolist(), roc.tpr.tolist()))
        curves[f"{name} ({item.similarity}), AUC {roc.auc():.4f}"] = (roc.fpr, roc.tpr)
    unsupervised = results[0].result.roc
    plot_dir = ctx.root / "plots" / "evaluate"
    plots.write_csv(
        plot_dir / f"{plot_of(key)}.csv", ["fpr", "tpr"], zip(unsupervised.fpr.tolist(), unsupervised.tpr.tolist())
    )
    plots.roc_png(curves, plot_dir / f"{plot_of(key)}.png", f"DeepFace on LFW {section.view}, {len(table)} pairs")
    return metrics


# -- AlexNet and GoogLeNet on ImageNet -------------------------------------------------------------------------


def _label_map(data_classes: list[str], model_classes: list[str], folder: Path) -> np.ndarray:
    """Return, for each dataset class index, the model's output index of the same wnid."""
    position = {wnid: i for i, wnid in enumerate(model_classes)}
    missing = [w for w in data_classes if w not in position]
    if missing:
        raise InputError(
            f"{folder} has classes the model was not trained on ({', '.join(missing[:5])}): the model file lists "
            f"{len(model_classes)} classes; retrain it on this dataset"
        )
    return np.array([position[w] for w in data_classes], dtype=np.int64)


def evaluate_ilsvrc(ctx, key: str, out: Path) -> dict[str, float]:
    from cnnrepro.data import imagenet

    section = ctx.params["evaluate.ilsvrc"]
    folder = ctx.root / "data" / "raw" / "imagenet"
    model, meta = load_model(ctx.root, key)
    items = imagenet.split(folder, "eval")
    if section.max_images and section.max_images < len(items):
        # Evenly spaced, so that a subset of a class-sorted list still covers every class.
        step = len(items) / section.max_images
        items = [items[int(i * step)] for i in range(section.max_images)]
        log.warning("evaluating %d evenly spaced images only (evaluate.ilsvrc.max_images)", len(items))
    mapping = _label_map(imagenet.classes(folder), list(meta["classes"]), folder)
    labels = mapping[np.array([item.label for item in items])]
    dataset = classification.CropDataset(
        [item.path for item in items], labels.tolist(), section.crops, _image_size(meta), _normalisation(meta),
        classification.pil_to_tensor_loader(imagenet.load_rgb),
    )
    probs = classification.predict(model, dataset, section.batch_size, device(), section.workers)

    metrics: dict[str, float] = {"images": float(len(items)), "classes": float(len(meta["classes"]))}
    ks = list(range(1, min(10, len(meta["classes"])) + 1))
    curve = {}
    for scheme, p in probs.items():
        errors = classification.topk_errors(p, labels, ks)
        metrics[f"top1_error_{scheme}crop"] = errors["top1_error"]
        metrics[f"top5_error_{scheme}crop"] = errors.get("top5_error", float("nan"))
        curve[f"crops_{scheme}"] = [errors[f"top{k}_error"] for k in ks]
    # Plain headline names: the largest crop scheme evaluated, as the papers report their best single model.
    largest = max(probs)
    metrics["top1_error"] = metrics[f"top1_error_{largest}crop"]
    metrics["top5_error"] = metrics[f"top5_error_{largest}crop"]
    if key.startswith("googlenet"):
        np.savez_compressed(
            out / "probs.npz",
            labels=labels,
            paths=np.array([str(Path(item.path).relative_to(folder)) for item in items]),
            classes=np.array(meta["classes"]),
            **{f"crops_{scheme}": p.astype(np.float16) for scheme, p in probs.items()},
        )
    plot_dir = ctx.root / "plots" / "evaluate"
    rows = [[k, *(curve[name][i] for name in curve)] for i, k in enumerate(ks)]
    plots.write_csv(plot_dir / f"{plot_of(key)}.csv", ["k", *curve], rows)
    plots.lines_png(ks, curve, plot_dir / f"{plot_of(key)}.png", f"{key}: top-k error, {len(items)} images",
                    "k", "top-k error")
    return metrics


def evaluate_stage(ctx, key: str) -> dict[str, float]:
    """Evaluate one model and write its outputs; return the headline metrics."""
    if key not in KEYS:
        raise InputError(f"unknown evaluation key {key!r}; expected one of {', '.join(KEYS)}")
    body = {"lenet5": evaluate_mnist, "deepface": evaluate_lfw}.get(key, evaluate_ilsvrc)
    with atomic.atomic_dir(ctx.root / "results" / key) as out:
        metrics = body(ctx, key, out)
        atomic.write_json(out / "metrics.json", metrics)
        manifest.write(out)
    atomic.write_json(ctx.root / "metrics" / "evaluate" / f"{key}.json", metrics)
    ctx.run.log_artifact(ctx.root / "results" / key, "results")
    for png in (ctx.root / "plots" / "evaluate").glob(f"{plot_of(key)}.*"):
        ctx.run.log_artifact(png, "plots")
    ctx.run.set_tags({"cnnrepro.dataset": data_of(key)[0]})
    return metrics
