"""Face verification on LFW pairs: k-fold accuracy, ROC, AUC, EER and TAR at a fixed FAR.

The LFW protocol trains on nine of the ten folds of pairs.txt and tests on the tenth. Here "training" a
threshold means choosing the similarity cut that classifies the most training-fold pairs correctly, then
applying it to the test fold. Accuracy is reported as the mean over folds with the standard error of the mean,
sigma / sqrt(k), where sigma uses the n-1 estimate, as the LFW results page requests.

Every function takes a similarity (higher means "same person") per pair, a same/not-same label and a fold index.
The threshold search sorts the scores once and reads every possible cut off cumulative counts, so all folds are
evaluated in a few vectorised passes instead of a loop over a threshold grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Roc:
    """A ROC curve: false and true positive rates at decreasing thresholds, starting at (0, 0)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray

    def auc(self) -> float:
        return float(np.trapezoid(self.tpr, self.fpr))

    def eer(self) -> float:
        """Return the equal error rate: the FPR where FPR equals 1 - TPR, interpolated linearly."""
        gap = self.fpr - (1.0 - self.tpr)  # rises from -1 at (0, 0) to 1 at (1, 1)
        above = int(np.argmax(gap >= 0))
        if above == 0:
            return float(self.fpr[0])
        g0, g1 = gap[above - 1], gap[above]
        weight = 0.0 if g1 == g0 else -g0 / (g1 - g0)
        return float(self.fpr[above - 1] + weight * (self.fpr[above] - self.fpr[above - 1]))

    def tar_at_far(self, far: float) -> float:
        """Return the TPR at FPR = `far`, interpolated linearly between the curve's points."""
        return float(np.interp(far, self.fpr, self.tpr))


@dataclass
class VerificationResult:
    """The numbers the LFW results page requests, plus the per-fold detail behind them."""

    fold_accuracies: np.ndarray
    thresholds: np.ndarray  # the threshold chosen on the training folds of each test fold
    roc: Roc
    pairs: int
    skipped: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean(self.fold_accuracies))

    @property
    def standard_error(self) -> float:
        return standard_error(self.fold_accuracies)

    def metrics(self, prefix: str = "") -> dict[str, float]:
        values = {
            "accuracy": self.mean_accuracy,
            "accuracy_se": self.standard_error,
            "auc": self.roc.auc(),
            "eer": self.roc.eer(),
            "tar_at_far_1e-3": self.roc.tar_at_far(1e-3),
            "pairs": float(self.pairs),
            "skipped_pairs": float(self.skipped),
        }
        return {f"{prefix}{key}": value for key, value in values.items()}


def standard_error(values: np.ndarray) -> float:
    """Return the standard error of the mean, std(ddof=1) / sqrt(n)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        raise ValueError(f"the standard error needs at least 2 folds, got {values.size}")
    return float(np.std(values, ddof=1) / math.sqrt(values.size))


def _check(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    fold = np.asarray(fold, dtype=np.int64)
    if not (scores.shape == same.shape == fold.shape) or scores.ndim != 1:
        raise ValueError(
            f"scores, labels and folds must be 1-D arrays of one length, got shapes "
            f"{scores.shape}, {same.shape}, {fold.shape}"
        )
    if fold.size and fold.min() < 0:
        raise ValueError(f"fold ids must be >= 0, got {fold.min()}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{int(np.sum(~np.isfinite(scores)))} similarity scores are NaN or infinite")
    return scores, same, fold


@dataclass
class _RankedCounts:
    """Scores sorted once, with per-fold cumulative counts of same and not-same pairs down the ranking."""

    ranked: np.ndarray  # scores, descending
    folds: np.ndarray  # the fold ids, sorted
    member: np.ndarray  # (F, n): the pair at position j belongs to fold i
    fold_pos: np.ndarray  # (F, n): same pairs of fold i among the top j + 1
    fold_neg: np.ndarray  # (F, n): not-same pairs of fold i among the top j + 1

    def counts_at(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return per fold the same and not-same pairs of that fold with score >= its threshold."""
        above = np.searchsorted(-self.ranked, -thresholds, side="right")  # pairs with score >= threshold
        rows = np.arange(self.folds.size)
        return _with_none(self.fold_pos)[rows, above], _with_none(self.fold_neg)[rows, above]


def _with_none(counts: np.ndarray) -> np.ndarray:
    """Prepend the column for zero pairs above the threshold."""
    return np.concatenate([np.zeros((counts.shape[0], 1), counts.dtype), counts], axis=1)


def _rank(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> _RankedCounts:
    order = np.argsort(-scores)
    ranked, ranked_same, ranked_fold = scores[order], same[order], fold[order]
    folds = np.flatnonzero(np.bincount(fold))  # sorted fold ids; faster than np.unique
    member = ranked_fold[None, :] == folds[:, None]
    return _RankedCounts(
        ranked=ranked,
        folds=folds,
        member=member,
        fold_pos=np.cumsum(member & ranked_same[None, :], axis=1, dtype=np.int32),
        fold_neg=np.cumsum(member & ~ranked_same[None, :], axis=1, dtype=np.int32),
    )


def _train_thresholds(rc: _RankedCounts) -> np.ndarray:
    """Return, per fold, the threshold with the highest accuracy on the other folds (the strictest on ties).

    Only training scores place the threshold: it is the midpoint between two consecutive distinct training
    scores, 1 above the highest or 1 below the lowest, so test scores never move it.
    """
    n = rc.ranked.size
    train = ~rc.member
    # Training pairs called correctly when the top j + 1 are called same:
    # (same above the cut - not-same above the cut) + all not-same, and the last term is constant per fold.
    margin = rc.fold_pos - rc.fold_neg
    train_margin = margin.sum(axis=0, keepdims=True) - margin

    # Index and score of the first training pair strictly below position j.
    index = np.where(train, np.arange(n)[None, :], n)
    first_at_or_after = np.minimum.accumulate(index[:, ::-1], axis=1)[:, ::-1]
    next_index = np.concatenate([first_at_or_after[:, 1:], np.full((rc.folds.size, 1), n)], axis=1)
    next_score = np.append(rc.ranked, -np.inf)[next_index]
    valid = train & (rc.ranked[None, :] > next_score)

    scored = np.where(valid, train_margin, np.iinfo(np.int32).min)
    best = np.argmax(scored, axis=1)
    rows = np.arange(rc.folds.size)
    below = next_score[rows, best]
    cut = np.where(np.isfinite(below), (rc.ranked[best] + below) / 2.0, rc.ranked[best] - 1.0)
    # Calling no pair same has margin 0 and wins ties as the strictest choice.
    top_train = rc.ranked[first_at_or_after[:, 0]]
    return np.where(scored[rows, best] > 0, cut, top_train + 1.0)


def fold_thresholds(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Choose a threshold per fold on the other folds' pairs and return (fold ids, thresholds).

    A pair is called "same" when its score is >= the threshold. The threshold maximises training accuracy and is
    the midpoint between two consecutive distinct training scores (or lies 1 beyond the extremes). On ties the
    strictest threshold (the highest) wins.
    """
    rc = _rank(*_check(scores, same, fold))
    return rc.folds, _train_thresholds(rc)


def _mean_roc(rc: _RankedCounts) -> Roc:
    cuts = np.flatnonzero(np.append(rc.ranked[:-1] > rc.ranked[1:], True))
    # The mean over folds of count / fold total is one weighted sum over the fold axis.
    tpr = (1.0 / np.maximum(rc.fold_pos[:, -1], 1)) @ rc.fold_pos / rc.folds.size
    fpr = (1.0 / np.maximum(rc.fold_neg[:, -1], 1)) @ rc.fold_neg / rc.folds.size
    return Roc(
        fpr=np.concatenate([[0.0], fpr[cuts]]),
        tpr=np.concatenate([[0.0], tpr[cuts]]),
        thresholds=np.concatenate([[np.inf], rc.ranked[cuts]]),
    )


def mean_roc(scores: np.ndarray, same: np.ndarray, fold: np.ndarray) -> Roc:
    """Return the ROC averaged over folds: each point is the mean (FPR, TPR) of the folds at one threshold."""
    return _mean_roc(_rank(*_check(scores, same, fold)))


def _test_accuracies(rc: _RankedCounts, thresholds: np.ndarray) -> np.ndarray:
    true_pos, false_pos = rc.counts_at(thresholds)
    positives, negatives = rc.fold_pos[:, -1], rc.fold_neg[:, -1]
    return (true_pos + negatives - false_pos) / (positives + negatives)


def evaluate(scores: np.ndarray, same: np.ndarray, fold: np.ndarray, skipped: int = 0) -> VerificationResult:
    """Evaluate similarities with the k-fold protocol: a threshold from k-1 folds, accuracy on the k-th."""
    rc = _rank(*_check(scores, same, fold))
    thresholds = _train_thresholds(rc)
    return VerificationResult(
        fold_accuracies=_test_accuracies(rc, thresholds),
        thresholds=thresholds,
        roc=_mean_roc(rc),
        pairs=int(rc.ranked.size),
        skipped=skipped,
    )


def evaluate_fold_scores(
    fold_scores: list[np.ndarray], same: np.ndarray, fold: np.ndarray, skipped: int = 0
) -> VerificationResult:
    """Evaluate when each test fold has its own scores from a model fitted on the other folds.

    `fold_scores[i]` contains scores for every pair from the model fitted without fold i. The threshold for fold i
    is chosen on the training folds' pairs under that same model; the ROC uses each fold's own test scores.
    """
    same = np.asarray(same, dtype=bool)
    fold = np.asarray(fold, dtype=np.int64)
    folds = np.unique(fold)
    if len(fold_scores) != folds.size:
        raise ValueError(f"expected one score array per fold ({folds.size}), got {len(fold_scores)}")
    accuracies, thresholds = [], []
    test_scores = np.empty(fold.shape, dtype=np.float64)
    for f, scores in zip(folds, fold_scores):
        ids, chosen = fold_thresholds(scores, same, fold)
        threshold = chosen[int(np.searchsorted(ids, f))]
        test = fold == f
        accuracies.append(np.mean((scores[test] >= threshold) == same[test]))
        thresholds.append(threshold)
        test_scores[test] = scores[test]
    return VerificationResult(
        fold_accuracies=np.array(accuracies),
        thresholds=np.array(thresholds),
        roc=mean_roc(test_scores, same, fold),
        pairs=int(same.size),
        skipped=skipped,
    )


def _confusion(predicted: np.ndarray, same: np.ndarray) -> tuple[int, int, int, int]:
    true_pos = int(np.sum(predicted & same))
    false_pos = int(np.sum(predicted & ~same))
    true_neg = int(np.sum(~predicted & ~same))
    false_neg = int(np.sum(~predicted & same))
    return true_pos, false_pos, true_neg, false_neg


def evaluate_grid_loop(
    scores: np.ndarray, same: np.ndarray, fold: np.ndarray, n_thresholds: int = 400
) -> tuple[np.ndarray, Roc]:
    """Return per-fold accuracies and the fold-averaged ROC the classic way, with Python loops.

    For each fold and each of `n_thresholds` grid thresholds it counts the training-fold confusion matrix to
    pick the threshold, and the test-fold one for the ROC. Kept as the reference that `benchmarks/lfw_eval.py`
    times the vectorised search against.
    """
    scores, same, fold = _check(scores, same, fold)
    grid = np.linspace(scores.max(), scores.min(), n_thresholds)
    folds = np.unique(fold)
    accuracies = np.zeros(folds.size)
    tpr = np.zeros((folds.size, n_thresholds))
    fpr = np.zeros((folds.size, n_thresholds))
    for k, f in enumerate(folds):
        train, test = fold != f, fold == f
        train_acc = np.zeros(n_thresholds)
        for i, threshold in enumerate(grid):
            tp, fp, tn, fn = _confusion(scores[train] >= threshold, same[train])
            train_acc[i] = (tp + tn) / (tp + fp + tn + fn)
            tp, fp, tn, fn = _confusion(scores[test] >= threshold, same[test])
            tpr[k, i] = tp / max(tp + fn, 1)
            fpr[k, i] = fp / max(fp + tn, 1)
        best = grid[int(np.argmax(train_acc))]
        tp, fp, tn, fn = _confusion(scores[test] >= best, same[test])
        accuracies[k] = (tp + tn) / (tp + fp + tn + fn)
    roc = Roc(
        fpr=np.concatenate([[0.0], fpr.mean(0)]),
        tpr=np.concatenate([[0.0], tpr.mean(0)]),
        thresholds=np.concatenate([[np.inf], grid]),
    )
    return accuracies, roc
