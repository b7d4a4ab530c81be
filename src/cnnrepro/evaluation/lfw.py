"""LFW verification of a face model: pair table, image checks, features and the three protocols.

Protocol names follow the LFW results page. The model was trained on identity-labelled faces outside LFW, so
every protocol here uses labeled outside data:

- unsupervised: no training on LFW at all. The similarity of normalised features is the score; ROC, AUC and EER
  describe it. (Its accuracy still needs a threshold, which is chosen on the training folds' pair labels.)
- image-restricted: only the same/not-same labels of the nine training folds' pairs are used, to fit a threshold
  or a classifier (the weighted chi-squared SVM) applied to the tenth fold.
- unrestricted: the identity labels of the nine training folds' images may be used too. Here they fit PCA and
  within-class covariance normalisation (WCCN), which transform the features before the cosine similarity.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cnnrepro.errors import InputError
from cnnrepro.evaluation import crops, similarity, verification
from cnnrepro.faces.store import INDEX, AlignedCrops

log = logging.getLogger(__name__)

FAILED_STATUSES = {"error"}
FALLBACK_STATUS = "fallback-center"
OUTSIDE_DATA = "labeled outside data"


@dataclass
class PairTable:
    """Pairs as arrays: image keys `Name/Name_0001` of each side, labels and 0-based fold ids."""

    left: list[str]
    right: list[str]
    same: np.ndarray
    fold: np.ndarray

    def __len__(self) -> int:
        return len(self.left)

    def subset(self, keep: np.ndarray) -> PairTable:
        keep = np.asarray(keep, dtype=bool)
        return PairTable(
            left=[k for k, ok in zip(self.left, keep) if ok],
            right=[k for k, ok in zip(self.right, keep) if ok],
            same=self.same[keep],
            fold=self.fold[keep],
        )

    def images(self) -> list[str]:
        """Return the distinct image keys, sorted."""
        return sorted(set(self.left) | set(self.right))


def image_key(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}"


def pair_table(folds: Sequence[Sequence]) -> PairTable:
    """Build a PairTable from `cnnrepro.data.lfw.read_pairs` output, keeping the file's own folds."""
    left, right, same, fold = [], [], [], []
    for pairs in folds:
        for pair in pairs:
            left.append(image_key(pair.name1, pair.n1))
            right.append(image_key(pair.name2, pair.n2))
            same.append(bool(pair.same))
            fold.append(int(pair.fold))
    if not left:
        raise InputError("the pairs file lists no pairs")
    return PairTable(left, right, np.array(same, dtype=bool), np.array(fold, dtype=np.int64))


def read_alignment_status(report: Path) -> dict[str, str]:
    """Return {image key: status} from the align stage's report.csv (columns path and status)."""
    statuses = {}
    with open(report, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"path", "status"} <= set(reader.fieldnames):
            raise InputError(f"{report} lacks the columns 'path' and 'status': run `dvc repro align@lfw` again")
        for row in reader:
            statuses[row["path"].rsplit(".", 1)[0]] = row["status"]
    return statuses


@dataclass
class ImageCheck:
    rows: dict[str, int]  # image key -> row of its crop in the aligned-crop store
    unusable: dict[str, str]  # image key -> reason
    fallback: set[str]  # image keys whose crop is the detector-free centre crop


def check_images(table: PairTable, store: AlignedCrops, statuses: dict[str, str] | None) -> ImageCheck:
    """Find each pair image's crop in the aligned-crop store and note the missing and failed ones."""
    rows, unusable, fallback = {}, {}, set()
    for key in table.images():
        row = store.row(key)
        status = (statuses or {}).get(key)
        if status in FAILED_STATUSES:
            unusable[key] = f"alignment status '{status}'"
        elif row is None:
            unusable[key] = f"no crop in {store.folder / INDEX}"
        else:
            rows[key] = row
            if status == FALLBACK_STATUS:
                fallback.add(key)
    return ImageCheck(rows, unusable, fallback)


def drop_unusable(table: PairTable, check: ImageCheck, missing: str) -> tuple[PairTable, int]:
    """Return the table without pairs that touch an unusable image, and how many were left out.

    With `missing` = "error" any such pair raises InputError naming the images.
    """
    if not check.unusable:
        return table, 0
    bad = set(check.unusable)
    keep = np.array([a not in bad and b not in bad for a, b in zip(table.left, table.right)])
    skipped = int((~keep).sum())
    if missing == "error":
        listed = "; ".join(f"{key}: {why}" for key, why in sorted(check.unusable.items())[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise InputError(
            f"{len(bad)} LFW pair image(s) cannot be used, affecting {skipped} of {len(table)} pairs: {listed}{more}. "
            f"Rerun `dvc repro align@lfw`, or set evaluate.lfw.missing to skip to leave those pairs out"
        )
    log.warning("leaving out %d of %d pairs whose images are missing or failed alignment", skipped, len(table))
    return table.subset(keep), skipped


class FaceImages(torch.utils.data.Dataset):
    """Rows of an (N, H, W, 3) uint8 crop array, scaled, centre-cropped to image_size and normalised."""

    def __init__(self, images: np.ndarray, rows: Sequence[int], image_size: int, mean, std) -> None:
        self.images = images
        self.rows = list(rows)
        self.image_size = image_size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(self.images[self.rows[index]], dtype=np.uint8)).permute(2, 0, 1)
        image = crops.to_float(pixels)
        side = self.image_size
        image = crops.resize_shorter(image, side)
        top, left = (image.shape[1] - side) // 2, (image.shape[2] - side) // 2
        image = image[:, top : top + side, left : left + side]
        return (image - self.mean) / self.std


@torch.inference_mode()
def extract_features(
    model: torch.nn.Module,
    dataset: FaceImages,
    batch_size: int,
    flip: bool = False,
    device: str | torch.device = "cpu",
    workers: int = 0,
) -> np.ndarray:
    """Return F7 features (N, D) of every image; with `flip`, the sum of the image's and its mirror's features."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    parts = []
    for batch in tqdm(loader, desc="features", unit="batch", leave=False):
        batch = batch.to(device)
        features = model.features(batch).float()
        if flip:
            features = features + model.features(batch.flip(-1)).float()
        parts.append(features.cpu().numpy())
    return np.concatenate(parts).astype(np.float64)


@dataclass
class ProtocolResult:
    protocol: str
    similarity: str
    result: verification.VerificationResult

    def row(self) -> dict:
        return {
            "protocol": self.protocol,
            "outside_data": OUTSIDE_DATA,
            "similarity": self.similarity,
            **self.result.metrics(),
            "fold_accuracies": [float(a) for a in self.result.fold_accuracies],
        }


def run_protocols(
    features: dict[str, np.ndarray] | np.ndarray,
    keys: Sequence[str],
    table: PairTable,
    feature_max: np.ndarray | None,
    similarity_name: str,
    skipped: int = 0,
    wccn_dims: int = 128,
) -> list[ProtocolResult]:
    """Evaluate the pairs under the unsupervised, image-restricted and unrestricted protocols."""
    index = {key: i for i, key in enumerate(keys)}
    raw = np.asarray(features)
    normalised = similarity.deepface_normalise(raw, feature_max)
    left = normalised[[index[k] for k in table.left]]
    right = normalised[[index[k] for k in table.right]]
    results = []

    cosine = similarity.cosine_scores(left, right)
    results.append(ProtocolResult("unsupervised", "cosine", verification.evaluate(cosine, table.same, table.fold, skipped)))

    if similarity_name == "chi2":
        fold_scores = similarity.chi2_fold_scores(left, right, table.same, table.fold)
        restricted = verification.evaluate_fold_scores(fold_scores, table.same, table.fold, skipped)
    else:
        restricted = verification.evaluate(cosine, table.same, table.fold, skipped)
    results.append(ProtocolResult("image-restricted", similarity_name, restricted))

    train_sets = []
    for f in np.unique(table.fold):
        train_keys = sorted({k for side in (table.left, table.right) for k, pf in zip(side, table.fold) if pf != f})
        rows = [index[k] for k in train_keys]
        identities = np.array([k.split("/", 1)[0] for k in train_keys])
        train_sets.append((normalised[rows], identities))
    wccn = similarity.wccn_fold_scores(left, right, table.fold, train_sets, wccn_dims)
    unrestricted = verification.evaluate_fold_scores(wccn, table.same, table.fold, skipped)
    results.append(ProtocolResult("unrestricted", "cosine after PCA+WCCN", unrestricted))
    return results
