"""Atomic outputs and data manifests."""

from __future__ import annotations

import pytest

from cnnrepro import atomic, manifest


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "out"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with atomic.atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"], "the old folder's files must be gone"
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "no temporary folder may remain"


def test_atomic_dir_error_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic.atomic_dir(target) as tmp:
        (tmp / "half.txt").write_text("partial")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == [], "a failed write must leave no output and no temporary folder"


def test_atomic_file_error_keeps_old_content(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_text("garbage")
        raise RuntimeError("killed")
    assert target.read_text().strip().endswith("}"), "the previous file must stay intact"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"], "no partial file may remain"


def test_remove_stale_partials(tmp_path):
    (tmp_path / ".out.partial-abc").mkdir()
    (tmp_path / ".m.json.partial-x").write_text("")
    (tmp_path / "keep").write_text("")
    assert atomic.remove_stale_partials(tmp_path) == 2, "both leftovers must be removed"
    assert [p.name for p in tmp_path.iterdir()] == ["keep"], "other files must stay"


def test_manifest_digest_tracks_content(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.bin").write_bytes(b"abc")
    first = manifest.write(tmp_path)
    assert first["count"] == 1, first
    assert manifest.read_digest(tmp_path) == first["digest"], "digest must round-trip"
    (tmp_path / "sub" / "x.bin").write_bytes(b"abd")
    assert manifest.build(tmp_path)["digest"] != first["digest"], "a changed byte must change the digest"


def test_missing_manifest_names_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        manifest.read_digest(tmp_path)
