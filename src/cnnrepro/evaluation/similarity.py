"""Pair similarities for face verification, and the metrics fitted on LFW training folds.

DeepFace compares two faces by the inner product of normalised F7 features: each component is divided by its
maximum over the training set, then the vector is L2-normalised. Its supervised variant uses the weighted
chi-squared distance sum_i w_i (f1_i - f2_i)^2 / (f1_i + f2_i), with the weights w learned by a linear SVM on
the element-wise chi-squared vectors of labelled pairs. The unrestricted protocol may use identity labels too;
here they fit within-class covariance normalisation (WCCN) after PCA.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

EPS = 1e-12


def deepface_normalise(features: np.ndarray, component_max: np.ndarray | None) -> np.ndarray:
    """Divide each component by its training-set maximum (when given), then L2-normalise each row."""
    features = np.asarray(features, dtype=np.float64)
    if component_max is not None:
        component_max = np.asarray(component_max, dtype=np.float64)
        if component_max.shape != features.shape[1:]:
            raise ValueError(
                f"the feature normaliser has shape {component_max.shape} but the features have {features.shape[1:]}: "
                f"the model file and the features come from different models"
            )
        features = features / np.maximum(component_max, EPS)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, EPS)


def cosine_scores(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Return the inner product of each pair of rows; equal to the cosine for L2-normalised rows."""
    return np.einsum("ij,ij->i", left, right)


def chi2_vectors(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Return the element-wise chi-squared terms (a - b)^2 / (a + b) of non-negative feature pairs."""
    left = np.maximum(left, 0.0)
    right = np.maximum(right, 0.0)
    return (left - right) ** 2 / np.maximum(left + right, EPS)


def fit_chi2_weights(vectors: np.ndarray, same: np.ndarray, c: float = 1.0, seed: int = 0) -> tuple[np.ndarray, float]:
    """Fit a linear SVM on chi-squared vectors; return (weights, bias) of its decision function.

    The decision value w . chi2 + b is positive for pairs the SVM calls "same", so it serves as a similarity.
    """
    from sklearn.svm import LinearSVC

    svm = LinearSVC(C=c, dual="auto", max_iter=5000, random_state=seed)
    svm.fit(vectors, np.asarray(same, dtype=int))
    return svm.coef_.ravel(), float(svm.intercept_[0])


def chi2_fold_scores(
    left: np.ndarray, right: np.ndarray, same: np.ndarray, fold: np.ndarray, c: float = 1.0
) -> list[np.ndarray]:
    """Return, per test fold, the weighted chi-squared similarity of every pair with weights from the other folds."""
    vectors = chi2_vectors(left, right)
    scores = []
    for f in np.unique(fold):
        train = fold != f
        weights, bias = fit_chi2_weights(vectors[train], same[train], c=c)
        scores.append(vectors @ weights + bias)
    return scores


def fit_wccn(features: np.ndarray, identities: np.ndarray, dims: int, shrinkage: float = 1e-3) -> np.ndarray:
    """Fit PCA to `dims` components followed by WCCN; return the (D, dims) projection matrix.

    WCCN whitens the mean within-identity covariance, so directions that vary within one person count less.
    `shrinkage` adds that fraction of the mean eigenvalue to the diagonal before inversion.
    """
    features = np.asarray(features, dtype=np.float64)
    centred = features - features.mean(axis=0)
    dims = min(dims, features.shape[0] - 1, features.shape[1])
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    pca = components[:dims].T  # (D, dims)
    projected = centred @ pca

    _, inverse = np.unique(identities, return_inverse=True)
    counts = np.bincount(inverse)
    means = np.zeros((counts.size, dims))
    np.add.at(means, inverse, projected)
    means /= counts[:, None]
    within = projected - means[inverse]
    keep = counts[inverse] > 1  # single-image identities carry no within-class variation
    if keep.sum() <= dims:
        log.warning("only %d images of identities with 2+ images to fit WCCN in %d dimensions", keep.sum(), dims)
    covariance = within[keep].T @ within[keep] / max(int(keep.sum()), 1)
    covariance += shrinkage * np.trace(covariance) / dims * np.eye(dims)
    values, vectors = np.linalg.eigh(covariance)
    whitening = vectors @ np.diag(1.0 / np.sqrt(np.maximum(values, EPS))) @ vectors.T
    return pca @ whitening


def wccn_fold_scores(
    left: np.ndarray,
    right: np.ndarray,
    fold: np.ndarray,
    train_features: list[tuple[np.ndarray, np.ndarray]],
    dims: int,
) -> list[np.ndarray]:
    """Return, per test fold, cosine similarities after a PCA+WCCN projection fitted on the other folds.

    `train_features[i]` is (features, identity labels) of the images the model for test fold i may use.
    """
    scores = []
    for features, identities in train_features:
        centre = features.mean(axis=0)
        projection = fit_wccn(features, identities, dims)
        a = deepface_normalise((left - centre) @ projection, None)
        b = deepface_normalise((right - centre) @ projection, None)
        scores.append(cosine_scores(a, b))
    if len(scores) != np.unique(fold).size:
        raise ValueError(f"expected training features for {np.unique(fold).size} folds, got {len(scores)}")
    return scores
