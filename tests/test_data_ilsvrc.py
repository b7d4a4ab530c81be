"""ILSVRC2012 from user-supplied archives, rebuilt small from real Imagenette photos and the real devkit files.

The real archives (150 GB, behind an ImageNet account) are not available to tests, so these archives keep the
official layout: per-class tars inside the training tar, flat validation JPEGs, and a devkit with meta.mat.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.io import savemat

from cnnrepro.data import download, imagenet, sources
from cnnrepro.errors import InputError

CLASSES = ("n01440764", "n02102040")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _meta_mat(shared_data: Path) -> bytes:
    mapping = (shared_data / "imagenet-meta" / "LOC_synset_mapping.txt").read_text()
    words = dict(line.split(" ", 1) for line in mapping.splitlines())
    rows = []
    for line in (shared_data / "imagenet-meta" / "map_clsloc.txt").read_text().splitlines():
        wnid, devkit_id, _ = line.split()
        rows.append((int(devkit_id), wnid, words[wnid], 0))
    rows.append((1001, "n00001740", "entity", 3))  # an inner node of the hierarchy, which is not a class
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    synsets = np.array(rows, dtype=dtype)
    buffer = io.BytesIO()
    savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


@pytest.fixture
def ilsvrc_archives(shared_data, tmp_path, monkeypatch):
    folder = tmp_path / "archives"
    folder.mkdir()
    nette = shared_data / "imagenette"
    with tarfile.open(folder / sources.ILSVRC2012_ARCHIVES["train"], "w") as outer:
        for wnid in CLASSES:
            inner_bytes = io.BytesIO()
            with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
                for path in sorted((nette / "val" / wnid).glob(f"{wnid}_*.JPEG"))[:3]:
                    _add_bytes(inner, path.name, path.read_bytes())
            _add_bytes(outer, f"{wnid}.tar", inner_bytes.getvalue())
    val_images = [p for wnid in CLASSES for p in sorted((nette / "train" / wnid).glob("ILSVRC2012_val_*"))[:2]]
    with tarfile.open(folder / sources.ILSVRC2012_ARCHIVES["val"], "w") as tar:
        for path in val_images:
            _add_bytes(tar, path.name, path.read_bytes())
    with tarfile.open(folder / sources.ILSVRC2012_ARCHIVES["devkit"], "w:gz") as tar:
        ground_truth = (shared_data / "imagenet-meta" / imagenet.GROUND_TRUTH).read_bytes()
        _add_bytes(tar, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", ground_truth)
        _add_bytes(tar, "ILSVRC2012_devkit_t12/data/meta.mat", _meta_mat(shared_data))
    sums = {
        name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in sources.ILSVRC2012_ARCHIVES.values()
    }
    monkeypatch.setattr(sources, "ILSVRC2012_MD5", sums)
    return SimpleNamespace(folder=folder, val_images=val_images)


def test_ilsvrc2012_from_archives(ilsvrc_archives, shared_data, tmp_path):
    out = tmp_path / "imagenet"
    out.mkdir()
    section = SimpleNamespace(source="ilsvrc2012", archives=str(ilsvrc_archives.folder))
    prepared = download.prepare_imagenet(out, section, download.Fetcher(cache=tmp_path / "cache"))
    assert prepared.info["train_images"] == 6, prepared.info
    assert prepared.info["eval_images"] == 4, prepared.info
    for path in ilsvrc_archives.val_images:
        assert (out / "val" / path.parent.name / path.name).is_file(), f"{path.name} sorted into its class folder"
    clsloc = (out / "meta" / imagenet.MAP_CLSLOC).read_text()
    real = (shared_data / "imagenet-meta" / imagenet.MAP_CLSLOC).read_text()
    assert [line.split()[:2] for line in clsloc.splitlines()] == [line.split()[:2] for line in real.splitlines()], (
        "map_clsloc.txt rebuilt from meta.mat maps the same devkit ids to the same wnids"
    )
    assert imagenet.imagenet1k_wnids(out / "meta") == imagenet.imagenet1k_wnids(shared_data / "imagenet-meta"), "wnids"


def test_ilsvrc2012_archive_checksum(ilsvrc_archives, tmp_path, monkeypatch):
    monkeypatch.setitem(sources.ILSVRC2012_MD5, sources.ILSVRC2012_ARCHIVES["val"], "f" * 32)
    out = tmp_path / "imagenet"
    out.mkdir()
    section = SimpleNamespace(source="ilsvrc2012", archives=str(ilsvrc_archives.folder))
    with pytest.raises(InputError, match="ILSVRC2012_img_val.tar") as info:
        download.prepare_imagenet(out, section, download.Fetcher(cache=tmp_path / "cache"))
    assert "f" * 32 in str(info.value), str(info.value)
    assert (ilsvrc_archives.folder / sources.ILSVRC2012_ARCHIVES["val"]).exists(), "user archives are never deleted"


def test_ilsvrc2012_missing_archive(ilsvrc_archives, tmp_path):
    (ilsvrc_archives.folder / sources.ILSVRC2012_ARCHIVES["train"]).unlink()
    out = tmp_path / "imagenet"
    out.mkdir()
    section = SimpleNamespace(source="ilsvrc2012", archives=str(ilsvrc_archives.folder))
    with pytest.raises(InputError, match="ILSVRC2012_img_train.tar not found"):
        download.prepare_imagenet(out, section, download.Fetcher(cache=tmp_path / "cache"))
