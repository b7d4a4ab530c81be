"""DeepFace's training-set ablations on the real ORL faces: fewer identities, fewer images per identity.

ORL has 40 identities (s1 .. s40) of 10 images each. Most tests need only its labels, so they pair the real
folder's labels with 1 x 1 placeholder images. One test decodes the faces through the stage's `prepare`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from cnnrepro import params
from cnnrepro.data import identity
from cnnrepro.errors import InputError
from cnnrepro.params.train import DeepFaceTrain
from cnnrepro.training import data, distributed, recipes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def orl(shared_data) -> Path:
    return shared_data / "orl-faces" / "orl_faces"


@pytest.fixture(scope="module")
def orl_labels(orl) -> data.ImageStore:
    """ORL's real labels and identity names with placeholder pixels."""
    items, names = identity.scan(orl)
    labels = np.array([item.label for item in items], dtype=np.int64)
    return data.ImageStore(np.zeros((len(items), 3, 1, 1), dtype=np.uint8), labels, list(names))


def folder_names(orl: Path) -> list[str]:
    return sorted(entry.name for entry in orl.iterdir() if entry.is_dir())


def test_first_identities_in_name_order(orl, orl_labels):
    train, val = data.split_validation(len(orl_labels), 0.05, seed=0)
    store, _, _ = data.subset_identities(orl_labels, train, val, identities=5)
    expected = folder_names(orl)[:5]
    assert store.classes == expected, f"kept {store.classes}, expected the first five names {expected}"
    # Name order is string order, so s10 comes before s2.
    assert "s10" in store.classes, f"kept {store.classes}: identities must be sorted by name, not by number"


def test_identities_do_not_depend_on_the_seed(orl_labels):
    kept = set()
    for seed in range(3):
        train, val = data.split_validation(len(orl_labels), 0.05, seed)
        store, _, _ = data.subset_identities(orl_labels, train, val, identities=7)
        kept.add(tuple(store.classes))
    assert len(kept) == 1, f"different seeds kept different identities: {kept}"


def test_validation_images_stay_those_of_the_full_split(orl_labels):
    train, val = data.split_validation(len(orl_labels), 0.2, seed=3)
    store, _, val_kept = data.subset_identities(orl_labels, train, val, identities=6, images_fraction=0.3)
    names = [orl_labels.classes[label] for label in orl_labels.labels]
    expected = [index for index in val if names[index] in set(store.classes)]
    assert val_kept.tolist() == expected, f"validation {val_kept.tolist()} is not the full split's {expected}"
    assert len(expected) > 0, "the test needs validation images among the kept identities"


def test_images_fraction_counts_per_identity(orl, orl_labels):
    train, val = data.split_validation(len(orl_labels), 0.05, seed=0)
    fraction = 0.5
    store, train_kept, val_kept = data.subset_identities(orl_labels, train, val, identities=5, images_fraction=fraction)

    names = [orl_labels.classes[label] for label in orl_labels.labels]
    held = Counter(names[index] for index in val)
    expected = {}
    for name in folder_names(orl)[:5]:
        available = len(list((orl / name).glob("*.pgm"))) - held[name]
        expected[name] = max(1, round(available * fraction))
    got = Counter(store.classes[label] for label in store.labels[train_kept])
    assert dict(got) == expected, f"training images per identity {dict(got)}, expected {expected}"
    assert set(train_kept) <= set(train), "the subset took images outside the full training split"
    renamed = [store.classes[store.labels[index]] for index in np.concatenate([train_kept, val_kept])]
    original = [names[index] for index in np.concatenate([train_kept, val_kept])]
    assert renamed == original, "renumbered labels name other identities than the images' folders"


def test_tiny_fraction_keeps_one_image_each(orl_labels):
    train, val = data.split_validation(len(orl_labels), 0.0, seed=0)
    store, train_kept, _ = data.subset_identities(orl_labels, train, val, images_fraction=0.01)
    per_identity = Counter(store.labels[train_kept].tolist())
    assert len(store.classes) == len(orl_labels.classes), "identities=0 must keep every identity"
    assert set(per_identity.values()) == {1}, f"images per identity {sorted(per_identity.values())}, expected 1"
    assert len(per_identity) == len(orl_labels.classes), "some identity lost all its training images"


def test_defaults_keep_everything(orl_labels):
    train, val = data.split_validation(len(orl_labels), 0.05, seed=0)
    store, train_kept, val_kept = data.subset_identities(orl_labels, train, val)
    assert store is orl_labels, "the defaults must return the store unchanged"
    assert train_kept.tolist() == train.tolist(), "the defaults changed the training images"
    assert val_kept.tolist() == val.tolist(), "the defaults changed the validation images"


@pytest.fixture
def faces_root(tmp_path, orl) -> Path:
    """A checkout whose aligned faces folder (size 32) is the real ORL folder."""
    faces = tmp_path / "data" / "aligned" / "faces"
    faces.mkdir(parents=True)
    (faces / "32").symlink_to(orl, target_is_directory=True)
    return tmp_path


def test_prepare_subsets_decoded_faces(faces_root, orl):
    section = DeepFaceTrain(image_size=32, identities=3, images_fraction=0.25, val_fraction=0.1)
    prepared = recipes.prepare("deepface", section, faces_root, "orl", distributed.DistInfo())
    assert prepared.store.classes == folder_names(orl)[:3], f"prepare kept {prepared.store.classes}"
    labels = prepared.store.labels[np.concatenate([prepared.train_indices, prepared.val_indices])]
    assert set(labels.tolist()) <= {0, 1, 2}, f"labels {sorted(set(labels.tolist()))} fall outside 3 identities"
    assert prepared.store.images.shape[1:] == (3, 32, 32), f"decoded shape {prepared.store.images.shape[1:]}"
    # 30 images minus their validation share, a quarter of each identity's rest, at least one.
    full = recipes.prepare("deepface", DeepFaceTrain(image_size=32, val_fraction=0.1), faces_root, "orl",
                           distributed.DistInfo())
    full_train = Counter(full.store.labels[full.train_indices].tolist())
    expected = sum(max(1, round(full_train[label] * 0.25)) for label in range(3))
    kept = len(prepared.train_indices)
    assert kept == expected, f"{kept} training images, expected {expected}"


def test_too_many_identities_fail_naming_both_numbers(faces_root):
    section = DeepFaceTrain(image_size=32, identities=41)
    with pytest.raises(InputError) as info:
        recipes.prepare("deepface", section, faces_root, "orl", distributed.DistInfo())
    message = str(info.value)
    for part in ("train.deepface.identities", "41", "only 40"):
        assert part in message, f"message {message!r} lacks {part!r}"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("identities", -1, "train.deepface.identities = -1 is invalid: Input should be greater than or equal to 0"),
        ("images_fraction", 0.0, "train.deepface.images_fraction = 0.0 is invalid: Input should be greater than 0"),
        ("images_fraction", 1.5, "train.deepface.images_fraction = 1.5 is invalid: Input should be less than or"),
        ("variant", "sub4", "train.deepface.variant = 'sub4' is invalid: Input should be 'full', 'sub1', 'sub2'"),
    ],
)
def test_invalid_values_name_key_value_and_range(tmp_path, key, value, expected):
    tree = yaml.safe_load((REPO / "params.yaml").read_text())
    tree["train"]["deepface"][key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    with pytest.raises(params.ParamsError) as info:
        params.load(["train.deepface"], path)
    assert expected in str(info.value), f"message {info.value!r} lacks {expected!r}"
