"""LFW pair handling on the real protocol files and on a hand-made pairs file with known scores."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cnnrepro.data.lfw import read_pairs
from cnnrepro.errors import InputError
from cnnrepro.evaluation import lfw, verification
from cnnrepro.faces import store
from tests.test_evaluation_verification import HAND_SCORES

# Three folds of two matched then two mismatched pairs, in the pairs.txt layout.
HAND_PAIRS = """3\t2
Ann_A\t1\t2
Bob_B\t1\t2
Cid_C\t1\tDan_D\t1
Eve_E\t1\tFay_F\t1
Gil_G\t1\t2
Hal_H\t1\t2
Ida_I\t1\tJon_J\t1
Kim_K\t1\tLeo_L\t1
Max_M\t1\t2
Ned_N\t1\t2
Oli_O\t1\tPam_P\t1
Quy_Q\t1\tRon_R\t1
"""


def test_hand_pairs_file_reproduces_hand_numbers(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(HAND_PAIRS)
    table = lfw.pair_table(read_pairs(path))
    assert list(table.fold) == [0] * 4 + [1] * 4 + [2] * 4, "folds follow the file's own sets"
    # Known scores, pair by pair in file order.
    scores = np.concatenate([HAND_SCORES[f][0] + HAND_SCORES[f][1] for f in range(3)])
    result = verification.evaluate(scores, table.same, table.fold)
    np.testing.assert_allclose(result.fold_accuracies, [0.5, 0.75, 0.5], err_msg="hand-computed fold accuracies")
    assert result.mean_accuracy == pytest.approx(7 / 12), "hand-computed mean accuracy"
    assert result.standard_error == pytest.approx(1 / 12), "hand-computed standard error (n-1)"
    assert result.roc.eer() == pytest.approx(1 / 3), "hand-computed EER"


@pytest.fixture(scope="module")
def view2(shared_data):
    return lfw.pair_table(read_pairs(shared_data / "lfw" / "pairs.txt"))


def test_view2_structure(view2):
    assert len(view2) == 6000, "pairs.txt holds 6,000 pairs"
    for f in range(10):
        in_fold = view2.fold == f
        assert in_fold.sum() == 600, f"fold {f} size"
        assert view2.same[in_fold].sum() == 300, f"fold {f} matched pairs"
        assert view2.same[in_fold][:300].all(), f"fold {f} lists its 300 matched pairs first"


def test_view2_folds_have_disjoint_people(view2):
    # The unrestricted protocol fits on the training folds' identities; no test identity may be among them.
    people = [set() for _ in range(10)]
    for a, b, f in zip(view2.left, view2.right, view2.fold):
        people[f].update({a.split("/")[0], b.split("/")[0]})
    for i in range(10):
        for j in range(i + 1, 10):
            assert not people[i] & people[j], f"folds {i} and {j} share people {sorted(people[i] & people[j])[:3]}"


def test_view2_images_exist_in_deepfunneled(view2, shared_data):
    folder = shared_data / "lfw" / "lfw-deepfunneled"
    missing = [k for k in view2.images() if not (folder / f"{k}.jpg").is_file()]
    assert not missing, f"pair images missing from the deep-funneled set: {missing[:5]}"


def test_view2_protocols_on_synthetic_features(view2):
    keys = view2.images()
    rng = np.random.default_rng(0)
    names = sorted({k.split("/")[0] for k in keys})
    centre = {n: rng.normal(0, 1, 32) for n in names}
    features = np.abs(np.stack([centre[k.split("/")[0]] + rng.normal(0, 1.2, 32) for k in keys]))
    results = lfw.run_protocols(features, keys, view2, None, "cosine", wccn_dims=16)
    assert [r.protocol for r in results] == ["unsupervised", "image-restricted", "unrestricted"], "protocol names"
    for r in results:
        assert 0.6 < r.result.mean_accuracy <= 1.0, f"{r.protocol} accuracy {r.result.mean_accuracy:.3f}"
        assert r.row()["outside_data"] == lfw.OUTSIDE_DATA, "each protocol states its outside data"


def test_view2_evaluation_under_a_tenth_of_a_second(view2):
    rng = np.random.default_rng(0)
    scores = rng.normal(view2.same * 1.0, 1.0)
    verification.evaluate(scores, view2.same, view2.fold)  # warm-up
    start = time.perf_counter()
    result = verification.evaluate(scores, view2.same, view2.fold)
    elapsed = time.perf_counter() - start
    assert result.pairs == 6000, "all pairs evaluated"
    assert elapsed < 0.1, f"10-fold evaluation of 6,000 pairs took {elapsed:.3f} s"


def test_missing_image_error_names_it(view2, tmp_path):
    subset = view2.subset(np.arange(len(view2)) < 20)
    failed = subset.left[0]
    missing = subset.right[5]
    keys = [key for key in subset.images() if key != missing]
    rows = [store.IndexRow(key, key.split("/")[0], "aligned") for key in keys]
    store.write(tmp_path, rows, {8: np.zeros((len(rows), 8, 8, 3), np.uint8)})
    check = lfw.check_images(subset, store.AlignedCrops(tmp_path, 8, "align@lfw"), {failed: "error"})
    assert set(check.unusable) == {failed, missing}, f"unusable images {check.unusable}"
    with pytest.raises(InputError, match=failed):
        lfw.drop_unusable(subset, check, "error")
    kept, skipped = lfw.drop_unusable(subset, check, "skip")
    assert skipped >= 2, f"pairs touching the two images are skipped, got {skipped}"
    assert len(kept) == len(subset) - skipped, "skipped pairs leave the table"


def test_view1_train_and_test_folds(shared_data):
    from cnnrepro.evaluation.stage import _lfw_table

    table = _lfw_table(shared_data / "lfw", "view1")
    assert (table.fold == 0).sum() == 2200, "pairsDevTrain.txt is fold 0"
    assert (table.fold == 1).sum() == 1000, "pairsDevTest.txt is fold 1"
    assert table.same[table.fold == 1].sum() == 500, "pairsDevTest.txt has 500 matched pairs"


def test_chi2_protocol_on_view2(view2):
    keys = view2.images()
    rng = np.random.default_rng(1)
    names = sorted({k.split("/")[0] for k in keys})
    centre = {n: rng.random(24) for n in names}
    features = np.stack([centre[k.split("/")[0]] + rng.random(24) * 0.8 for k in keys])
    results = lfw.run_protocols(features, keys, view2, features.max(axis=0), "chi2", wccn_dims=8)
    restricted = results[1]
    assert restricted.similarity == "chi2", "the image-restricted protocol uses the chosen similarity"
    assert restricted.result.mean_accuracy > 0.6, f"weighted chi2 accuracy {restricted.result.mean_accuracy:.3f}"


def test_flip_adds_mirrored_features():
    import torch

    class Probe(torch.nn.Module):
        def features(self, x):
            return x[:, 0, 0, :2]  # the first two pixels of the top row

    image = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, index):
            return image[0]

    plain = lfw.extract_features(Probe(), Images(), batch_size=1)
    flipped = lfw.extract_features(Probe(), Images(), batch_size=1, flip=True)
    np.testing.assert_allclose(plain, [[0.0, 1.0]], err_msg="features of the image")
    np.testing.assert_allclose(flipped, [[0.0 + 3.0, 1.0 + 2.0]], err_msg="image plus mirrored image features")
