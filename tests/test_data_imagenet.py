"""ImageNet reader on the real Imagenette images and ILSVRC2012 devkit files."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from cnnrepro.data import imagenet
from cnnrepro.errors import InputError


@pytest.fixture
def imagenette(shared_data, tmp_path):
    """A data/raw/imagenet-like folder whose parts are symlinks into the read-only real data."""
    folder = tmp_path / "imagenet"
    folder.mkdir()
    (folder / "train").symlink_to(shared_data / "imagenette" / "train")
    (folder / "val").symlink_to(shared_data / "imagenette" / "val")
    (folder / "meta").symlink_to(shared_data / "imagenet-meta")
    return folder


def _ground_truth(meta):
    return imagenet.read_devkit_ground_truth(meta / imagenet.GROUND_TRUTH, meta / imagenet.MAP_CLSLOC)


def test_imagenet_classes_sorted(imagenette, shared_data):
    names = imagenet.classes(imagenette)
    assert len(names) == 10, f"Imagenette has 10 classes, found {names}"
    assert names == sorted(names), f"classes are sorted: {names}"
    all_wnids = imagenet.imagenet1k_wnids(shared_data / "imagenet-meta")
    assert set(names) <= set(all_wnids), "Imagenette classes are ILSVRC2012 classes"


def test_imagenet_eval_split_labels(imagenette):
    names = imagenet.classes(imagenette)
    items = imagenet.split(imagenette, "eval")
    assert len(items) == 500, f"Imagenette holds 500 ILSVRC2012 validation images, found {len(items)}"
    assert all(item.path.name.startswith("ILSVRC2012_val_") for item in items), "eval holds only val images"
    for item in items:
        assert names[item.label] == item.path.parent.name, f"{item.path} labelled {names[item.label]}"
    counts = Counter(item.label for item in items)
    assert sorted(counts) == list(range(10)), f"every class is in eval: {counts}"


def test_imagenet_train_split_disjoint(imagenette, shared_data):
    names = imagenet.classes(imagenette)
    train = imagenet.split(imagenette, "train")
    evaluation = imagenet.split(imagenette, "eval")
    total = sum(1 for p in (shared_data / "imagenette").rglob("*.JPEG"))
    assert len(train) + len(evaluation) == total, f"train {len(train)} + eval {len(evaluation)} != {total} files"
    assert not {i.path for i in train} & {i.path for i in evaluation}, "train and eval share images"
    assert all(names[i.label] == i.path.parent.name for i in train), "train labels follow folders"
    assert not any(i.path.name.startswith("ILSVRC2012_val_") for i in train), "no val image in train"


def test_devkit_ids_are_not_class_indices(imagenette, shared_data):
    """Indexing the sorted wnids with the devkit ID (the classic bug) mislabels the real images."""
    meta = shared_data / "imagenet-meta"
    all_wnids = imagenet.imagenet1k_wnids(meta)
    raw_ids = (meta / imagenet.GROUND_TRUTH).read_text().split()
    names = imagenet.classes(imagenette)
    items = imagenet.split(imagenette, "eval")
    wrong_agrees = 0
    right_agrees = 0
    for item in items:
        number = int(item.path.stem.rsplit("_", 1)[1])
        devkit_id = int(raw_ids[number - 1])
        buggy_wnid = all_wnids[devkit_id - 1]
        wrong_agrees += buggy_wnid == item.path.parent.name
        right_agrees += names[item.label] == item.path.parent.name
    assert right_agrees == len(items), f"correct mapping matches the folder for {right_agrees}/{len(items)}"
    assert wrong_agrees < len(items) // 10, f"devkit-ID indexing matches the folder for {wrong_agrees}/{len(items)}"


def test_devkit_matches_kaggle_solution(shared_data):
    meta = shared_data / "imagenet-meta"
    devkit = _ground_truth(meta)
    kaggle = imagenet.read_kaggle_solution(meta / imagenet.KAGGLE_SOLUTION)
    assert len(devkit) == 50_000, f"devkit lists {len(devkit)} images"
    assert devkit.keys() == kaggle.keys(), "both files cover the same images"
    differing = [k for k in devkit if devkit[k] != kaggle[k]]
    assert not differing, f"devkit and Kaggle labels differ for {differing[:5]}"


def test_imagenet1k_wnids_both_sources(shared_data):
    meta = shared_data / "imagenet-meta"
    from_json = imagenet.imagenet1k_wnids(meta / imagenet.CLASS_INDEX)
    from_txt = imagenet.imagenet1k_wnids(meta / imagenet.SYNSET_MAPPING)
    assert len(from_json) == 1000, f"{len(from_json)} wnids"
    assert from_json == from_txt, "class index json and synset mapping agree"
    clsloc = imagenet.read_map_clsloc(meta / imagenet.MAP_CLSLOC)
    assert sorted(clsloc.values()) == from_json, "map_clsloc covers the same 1000 wnids"
    assert list(clsloc.values()) != from_json, "devkit order differs from sorted order"


def test_eval_image_in_wrong_folder(shared_data, tmp_path):
    folder = tmp_path / "imagenet"
    shutil.copytree(shared_data / "imagenette" / "train" / "n01440764", folder / "train" / "n01440764")
    (folder / "train" / "n02102040").mkdir()
    (folder / "meta").symlink_to(shared_data / "imagenet-meta")
    moved = sorted((folder / "train" / "n01440764").glob("ILSVRC2012_val_*"))[0]
    target = folder / "train" / "n02102040" / moved.name
    moved.rename(target)
    with pytest.raises(InputError, match="n01440764") as info:
        imagenet.split(folder, "eval")
    assert moved.name in str(info.value), str(info.value)


def test_ground_truth_bad_id(shared_data, tmp_path):
    meta = tmp_path / "meta"
    shutil.copytree(shared_data / "imagenet-meta", meta)
    lines = (meta / imagenet.GROUND_TRUTH).read_text().splitlines()
    lines[6] = "1001"
    (meta / imagenet.GROUND_TRUTH).write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 7: '1001'"):
        _ground_truth(meta)


def test_missing_meta(tmp_path):
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    (tmp_path / "train" / "n01440764" / "ILSVRC2012_val_00000293.JPEG").write_bytes(b"x")
    with pytest.raises(InputError, match="map_clsloc.txt not found"):
        imagenet.split(tmp_path, "eval")


def test_non_wnid_folder(tmp_path):
    (tmp_path / "train" / "cats").mkdir(parents=True)
    with pytest.raises(InputError, match="cats"):
        imagenet.classes(tmp_path)
