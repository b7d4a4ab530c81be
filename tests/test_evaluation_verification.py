"""k-fold verification maths against hand-computed values and against the threshold-grid loop."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrepro.evaluation import similarity, verification

# Three folds of 2 same + 2 not-same pairs. Worked by hand: the thresholds chosen on the other two folds are
# 0.675, 0.8 and 0.45, giving test accuracies 1/2, 3/4 and 1/2. The fold-averaged ROC passes through
# (1/3, 2/3), where FPR = 1 - TPR, and its area is 5/6.
HAND_SCORES = {
    0: ([0.9, 0.6], [0.7, 0.2]),
    1: ([0.8, 0.5], [0.4, 0.3]),
    2: ([0.95, 0.35], [0.55, 0.1]),
}


def hand_arrays():
    scores, same, fold = [], [], []
    for f, (positives, negatives) in HAND_SCORES.items():
        scores += positives + negatives
        same += [True] * len(positives) + [False] * len(negatives)
        fold += [f] * (len(positives) + len(negatives))
    return np.array(scores), np.array(same), np.array(fold)


def test_hand_example_accuracy_and_thresholds():
    result = verification.evaluate(*hand_arrays())
    np.testing.assert_allclose(result.thresholds, [0.675, 0.8, 0.45], err_msg="per-fold thresholds")
    np.testing.assert_allclose(result.fold_accuracies, [0.5, 0.75, 0.5], err_msg="per-fold accuracies")
    assert result.mean_accuracy == pytest.approx(7 / 12), "mean accuracy"


def test_hand_example_standard_error_uses_n_minus_1():
    result = verification.evaluate(*hand_arrays())
    assert result.standard_error == pytest.approx(1 / 12), "SE = std(ddof=1)/sqrt(3) = 1/12"


def test_hand_example_roc_eer_auc():
    result = verification.evaluate(*hand_arrays())
    assert result.roc.eer() == pytest.approx(1 / 3), "EER where FPR = 1 - TPR"
    assert result.roc.auc() == pytest.approx(5 / 6), "area under the fold-averaged ROC"
    assert result.roc.tar_at_far(0.0) == pytest.approx(0.5), "TAR with no false accepts"


def test_threshold_ties_pick_strictest():
    # Two cuts give equal training accuracy; the higher threshold must be chosen.
    scores = np.array([0.9, 0.1, 0.5, 0.4, 0.9, 0.1, 0.5, 0.4])
    same = np.array([True, False, True, False] * 2)
    fold = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    folds, thresholds = verification.fold_thresholds(scores, same, fold)
    assert list(folds) == [0, 1], "fold ids"
    np.testing.assert_allclose(thresholds, [0.45, 0.45], err_msg="separating threshold")


def random_lfw_like(seed: int = 0, separation: float = 1.5):
    rng = np.random.default_rng(seed)
    same = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], 10)
    fold = np.repeat(np.arange(10), 600)
    return rng.normal(same * separation, 1.0), same, fold


def test_vectorised_matches_dense_search():
    scores, same, fold = random_lfw_like()
    result = verification.evaluate(scores, same, fold)
    # The same search written plainly: every midpoint between distinct training scores, per fold.
    for f in range(10):
        train, test = fold != f, fold == f
        distinct = np.unique(scores[train])[::-1]
        # Descending, so that argmax picks the strictest of equally good thresholds.
        candidates = np.concatenate([[distinct[0] + 1], (distinct[1:] + distinct[:-1]) / 2, [distinct[-1] - 1]])
        train_acc = [np.mean((scores[train] >= t) == same[train]) for t in candidates]
        best = candidates[int(np.argmax(train_acc))]
        assert result.thresholds[f] == pytest.approx(best), f"fold {f} threshold"
        expected = np.mean((scores[test] >= best) == same[test])
        assert result.fold_accuracies[f] == pytest.approx(expected), f"fold {f} accuracy"


def test_close_to_grid_loop():
    scores, same, fold = random_lfw_like(seed=1)
    fast = verification.evaluate(scores, same, fold).mean_accuracy
    loop = verification.evaluate_grid_loop(scores, same, fold)[0].mean()
    assert abs(fast - loop) < 0.01, f"exact search {fast:.4f} vs 400-threshold grid {loop:.4f}"


def test_roc_auc_matches_sklearn_for_equal_folds():
    from sklearn.metrics import roc_auc_score

    scores, same, fold = random_lfw_like(seed=2)
    auc = verification.evaluate(scores, same, fold).roc.auc()
    per_fold = np.mean([roc_auc_score(same[fold == f], scores[fold == f]) for f in range(10)])
    # Averaging curves at shared thresholds is not averaging areas, but both estimate the same AUC.
    assert abs(auc - per_fold) < 0.01, f"fold-averaged ROC AUC {auc:.4f} vs mean per-fold AUC {per_fold:.4f}"


def test_invalid_scores_raise():
    scores, same, fold = hand_arrays()
    scores[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        verification.evaluate(scores, same, fold)


def test_fold_scores_threshold_from_training_folds():
    scores, same, fold = hand_arrays()
    # The same scores under every fold's model must give the plain result.
    result = verification.evaluate_fold_scores([scores] * 3, same, fold)
    np.testing.assert_allclose(result.fold_accuracies, [0.5, 0.75, 0.5], err_msg="per-fold accuracies")


def test_deepface_normalise_divides_by_max_then_l2():
    features = np.array([[2.0, 1.0], [4.0, 0.0]])
    normalised = similarity.deepface_normalise(features, np.array([4.0, 1.0]))
    np.testing.assert_allclose(normalised[0], np.array([0.5, 1.0]) / np.sqrt(1.25), err_msg="row 0")
    np.testing.assert_allclose(normalised[1], [1.0, 0.0], err_msg="row 1")


def test_chi2_weights_separate_pairs():
    rng = np.random.default_rng(0)
    base = rng.random((400, 16))
    same = np.arange(400) % 2 == 0
    other = np.where(same[:, None], base + rng.normal(0, 0.02, base.shape), rng.random((400, 16)))
    fold = np.arange(400) % 4
    scores = similarity.chi2_fold_scores(base, np.abs(other), same, fold)
    result = verification.evaluate_fold_scores(scores, same, fold)
    assert result.mean_accuracy > 0.95, f"weighted chi2 accuracy {result.mean_accuracy:.3f} on separable pairs"


def test_wccn_discounts_within_identity_noise():
    rng = np.random.default_rng(0)
    people, per_person, dims = 60, 4, 8
    centres = rng.normal(0, 1, (people, dims))
    # Dimension 0 carries large within-identity noise that a plain cosine cannot ignore.
    noise = rng.normal(0, 0.1, (people, per_person, dims))
    noise[..., 0] = rng.normal(0, 5.0, (people, per_person))
    features = (centres[:, None, :] + noise).reshape(-1, dims)
    identities = np.repeat(np.arange(people), per_person)
    projection = similarity.fit_wccn(features, identities, dims=dims)

    def within_variance(x):
        means = x.reshape(people, per_person, -1).mean(axis=1)
        return np.var(x - np.repeat(means, per_person, axis=0), axis=0)

    before, after = within_variance(features), within_variance(features @ projection)
    assert before.max() / before.min() > 100, f"within-class variance before WCCN {before}"
    assert after.max() / after.min() < 1.5, f"within-class variance after WCCN {after}"
