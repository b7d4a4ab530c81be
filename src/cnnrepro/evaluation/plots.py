"""CSV data and PNG figures of the evaluation plots (matplotlib with the Agg backend, no display needed)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from cnnrepro import atomic


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence]) -> Path:
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
    return Path(path)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure, path: Path) -> Path:
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _figure().close(figure)
    return Path(path)


def roc_png(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """Draw ROC curves {label: (fpr, tpr)} with a logarithmic FPR axis, as LFW ROC plots are usually shown."""
    plt = _figure()
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    for label, (fpr, tpr) in curves.items():
        axis.plot(np.maximum(fpr, 1e-4), tpr, label=label)
    axis.set_xscale("log")
    axis.set_xlim(1e-4, 1.0)
    axis.set_ylim(0.0, 1.01)
    axis.set_xlabel("false positive rate (mean over folds)")
    axis.set_ylabel("true positive rate (mean over folds)")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="lower right", fontsize="small")
    return save_png(figure, path)


def lines_png(
    x: Sequence[float], series: Mapping[str, Sequence[float]], path: Path, title: str, xlabel: str, ylabel: str
) -> Path:
    plt = _figure()
    figure, axis = plt.subplots(figsize=(5.5, 4.0))
    for label, values in series.items():
        axis.plot(x, values, marker="o", label=label)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    if len(series) > 1:
        axis.legend(fontsize="small")
    return save_png(figure, path)


def confusion_png(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    plt = _figure()
    figure, axis = plt.subplots(figsize=(5.0, 4.5))
    image = axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(labels)), labels)
    axis.set_yticks(range(len(labels)), labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    axis.set_title(title)
    figure.colorbar(image, ax=axis)
    return save_png(figure, path)
