"""The download stage's offline path: every dataset from the real data folder used as a mirror."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from cnnrepro.data import download, identity, imagenet, lfw, mnist, packed, sources
from cnnrepro.data.mirror import Mirror
from cnnrepro.errors import InputError
from cnnrepro.params.download import LfwDownload

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mirror(shared_data) -> Mirror:
    return Mirror.open(shared_data)


def _run(name, section, fetcher, tmp_path):
    out = tmp_path / name
    out.mkdir()
    return out, download.PREPARE[name](out, section, fetcher)


def _fetcher(mirror, tmp_path):
    return download.Fetcher(cache=tmp_path / "cache", mirror=mirror)


def test_mirror_mnist_without_train_images(mirror, tmp_path):
    out, prepared = _run("mnist", SimpleNamespace(include_train=True), _fetcher(mirror, tmp_path), tmp_path)
    assert prepared.info["files_missing"] == ["train-images-idx3-ubyte.gz"], prepared.info
    assert prepared.info["train_images"] is False, prepared.info
    assert (out / "train-labels-idx1-ubyte.gz").is_file(), "train labels are copied when present"
    images, _ = mnist.load(out, "test")
    assert len(images) == 10_000, f"{len(images)} test images"
    with pytest.raises(InputError, match="test-holdout"):
        mnist.load(out, "train")


def test_mirror_mnist_test_only(mirror, tmp_path):
    out, prepared = _run("mnist", SimpleNamespace(include_train=False), _fetcher(mirror, tmp_path), tmp_path)
    assert sorted(p.name for p in out.iterdir()) == sorted(mnist.FILES["test"]), "only the test files"
    assert prepared.info["files_missing"] == [], prepared.info


def test_mirror_mnist_damaged_copy(shared_data, tmp_path):
    copy = tmp_path / "mirror"
    (copy / "mnist").mkdir(parents=True)
    for path in (shared_data / "mnist").iterdir():
        shutil.copy(path, copy / "mnist" / path.name)
    broken = copy / "mnist" / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(InputError, match="t10k-labels-idx1-ubyte.gz"):
        _run("mnist", SimpleNamespace(include_train=False), _fetcher(Mirror.open(copy), tmp_path), tmp_path)


def test_mirror_lfw_full_set(mirror, shared_data, tmp_path):
    out, prepared = _run("lfw", LfwDownload(images="deepfunneled"), _fetcher(mirror, tmp_path), tmp_path)
    assert prepared.info["image_count"] == sources.LFW_IMAGE_COUNT, prepared.info
    assert prepared.info["people"] == 5749, prepared.info
    assert prepared.info["official_content"] is True, prepared.info
    for name in download.PROTOCOL_FILES:
        assert (out / name).read_bytes() == (shared_data / "lfw" / name).read_bytes(), f"{name} copied"
    assert not (out / "images").exists(), "the image tree is packed, not left as files"
    members = packed.TarMembers(out / packed.PACKED_IMAGES)
    assert len(members.names()) == sources.LFW_IMAGE_COUNT, f"{len(members.names())} images in the tar"
    original = shared_data / "lfw" / "lfw-deepfunneled" / "Zico" / "Zico_0001.jpg"
    assert members.read(lfw.image_relpath("Zico", 1)) == original.read_bytes(), "a packed image equals the mirror's"
    assert prepared.info["content_digest"] == sources.LFW_CONTENT_DIGEST["deepfunneled"], prepared.info
    assert len(prepared.known) == len(download.PROTOCOL_FILES), "the protocol files' sums are reused"


def test_mirror_lfw_original_missing(mirror, tmp_path):
    with pytest.raises(InputError, match="download.lfw.images to deepfunneled"):
        _run("lfw", SimpleNamespace(images="original"), _fetcher(mirror, tmp_path), tmp_path)


def test_mirror_imagenette(mirror, shared_data, tmp_path):
    section = SimpleNamespace(source="imagenette", archives=None)
    out, prepared = _run("imagenet", section, _fetcher(mirror, tmp_path), tmp_path)
    assert prepared.info["eval_images"] == 500, prepared.info
    total = sum(1 for _ in (shared_data / "imagenette").rglob("*.JPEG"))
    assert prepared.info["train_images"] + prepared.info["eval_images"] == total, prepared.info
    assert sorted(p.name for p in (out / "meta").iterdir()) == sorted(sources.IMAGENET_META_SHA256), "meta files"
    assert imagenet.classes(out) == imagenet.classes(shared_data / "imagenette"), "same classes"


def test_mirror_ilsvrc2012_needs_archives(mirror, tmp_path):
    section = SimpleNamespace(source="ilsvrc2012", archives=None)
    with pytest.raises(InputError, match="download.imagenet.archives"):
        _run("imagenet", section, _fetcher(mirror, tmp_path), tmp_path)


def test_mirror_faces_orl(mirror, shared_data, tmp_path):
    out, prepared = _run("faces", SimpleNamespace(source="orl"), _fetcher(mirror, tmp_path), tmp_path)
    items, names = identity.scan(out)
    assert len(names) == 40, f"{len(names)} identities"
    assert len(items) == 400, f"{len(items)} images"
    original = shared_data / "orl-faces" / "orl_faces" / "s40" / "10.pgm"
    assert (out / "s40" / "10.pgm").read_bytes() == original.read_bytes(), "PGM bytes kept as they are"


def test_mirror_faces_lfw_train_folds(mirror, shared_data, tmp_path):
    section = SimpleNamespace(source="lfw-train-folds", test_fold=9, min_images=2)
    out, prepared = _run("faces", section, _fetcher(mirror, tmp_path), tmp_path)
    _, names = identity.scan(out)
    sets = lfw.read_people(shared_data / "lfw" / "people.txt")
    test_people = {name for name, _ in sets[9]}
    assert not set(names) & test_people, "no person of the test fold is in the training set"
    test_pairs = lfw.read_pairs(shared_data / "lfw" / "pairs.txt")[9]
    pair_people = {p.name1 for p in test_pairs} | {p.name2 for p in test_pairs}
    assert not set(names) & pair_people, "no person of fold 9's pairs is in the training set"
    expected = {n for i, people in enumerate(sets) if i != 9 for n, count in people if count >= 2}
    assert set(names) == expected, f"{len(names)} identities, expected {len(expected)}"


def test_mirror_faces_folder_archive(shared_data, tmp_path):
    archive = tmp_path / "people.tar.gz"
    subprocess.run(
        ["tar", "-czf", str(archive), "-C", str(shared_data / "faces"), "test_images"], check=True
    )
    section = SimpleNamespace(source="folder", path=str(archive))
    out, prepared = _run("faces", section, download.Fetcher(cache=tmp_path / "cache"), tmp_path)
    _, names = identity.scan(out)
    expected = sorted(p.name for p in (shared_data / "faces" / "test_images").iterdir())
    assert names == expected, f"identities {names}"
    assert len(prepared.info["archive_sha256"]) == 64, prepared.info


def test_mirror_without_sums_subset_rejected(shared_data, tmp_path):
    """Without SHA256SUMS, an LFW image set that differs from the official one is not trusted."""
    copy = tmp_path / "mirror" / "lfw"
    copy.mkdir(parents=True)
    for name in download.PROTOCOL_FILES:
        os.link(shared_data / "lfw" / name, copy / name)
    shutil.copytree(shared_data / "lfw" / "lfw-deepfunneled" / "Zico", copy / "lfw-deepfunneled" / "Zico")
    with pytest.raises(InputError, match="differ from the official set"):
        fetcher = _fetcher(Mirror.open(tmp_path / "mirror"), tmp_path)
        _run("lfw", LfwDownload(images="deepfunneled"), fetcher, tmp_path)
