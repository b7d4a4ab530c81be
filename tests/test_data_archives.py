"""Safe extraction of real LFW images packed into tar and zip archives, and of hostile archives."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from cnnrepro.data import archives
from cnnrepro.errors import InputError

PEOPLE = ("Aaron_Eckhart", "Zico")


@pytest.fixture
def tgz(shared_data, tmp_path):
    """A .tgz of two real LFW people, wrapped in lfw-deepfunneled/ as the official archive is."""
    path = tmp_path / "small.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for person in PEOPLE:
            tar.add(shared_data / "lfw" / "lfw-deepfunneled" / person, arcname=f"lfw-deepfunneled/{person}")
    return path


def _tar_with(tmp_path, member: tarfile.TarInfo, data: bytes = b"") -> str:
    path = tmp_path / "hostile.tar"
    with tarfile.open(path, "w") as tar:
        good = tarfile.TarInfo("ok.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if data else None)
    return path


def test_extract_tgz_strip(tgz, shared_data, tmp_path):
    target = tmp_path / "out"
    count = archives.extract(tgz, target, strip=1)
    expected = sorted(
        p.relative_to(shared_data / "lfw" / "lfw-deepfunneled").as_posix()
        for person in PEOPLE
        for p in (shared_data / "lfw" / "lfw-deepfunneled" / person).iterdir()
    )
    found = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert found == expected, f"extracted {found}"
    assert count == len(expected), f"count {count}"
    for relative in expected:
        original = (shared_data / "lfw" / "lfw-deepfunneled" / relative).read_bytes()
        assert (target / relative).read_bytes() == original, f"{relative} bytes"


def test_extract_truncated_tgz(tgz, tmp_path):
    data = tgz.read_bytes()
    truncated = tmp_path / "truncated.tgz"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="truncated or corrupt") as info:
        archives.extract(truncated, tmp_path / "out", strip=1)
    assert "truncated.tgz" in str(info.value), str(info.value)


def test_extract_truncated_zip(shared_data, tmp_path):
    path = tmp_path / "small.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        for image in (shared_data / "lfw" / "lfw-deepfunneled" / "Zico").iterdir():
            bundle.write(image, f"Zico/{image.name}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])
    with pytest.raises(InputError, match="small.zip"):
        archives.extract(path, tmp_path / "out")


def test_extract_rejects_parent_member(tmp_path):
    member = tarfile.TarInfo("images/../../escape.txt")
    path = _tar_with(tmp_path, member, b"evil")
    with pytest.raises(InputError, match=r"'\.\.'"):
        archives.extract(path, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists(), "nothing escaped"


def test_extract_rejects_absolute_member(tmp_path):
    member = tarfile.TarInfo(str(tmp_path / "absolute.txt"))
    path = _tar_with(tmp_path, member, b"evil")
    with pytest.raises(InputError, match="absolute path"):
        archives.extract(path, tmp_path / "out")
    assert not (tmp_path / "absolute.txt").exists(), "nothing written at the absolute path"


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_extract_rejects_links(tmp_path, kind):
    member = tarfile.TarInfo("innocent.jpg")
    member.type = kind
    member.linkname = "/etc/passwd"
    path = _tar_with(tmp_path, member)
    with pytest.raises(InputError, match="link"):
        archives.extract(path, tmp_path / "out")
    assert not (tmp_path / "out" / "innocent.jpg").exists(), "no link was created"


def test_extract_rejects_zip_parent_member(tmp_path):
    path = tmp_path / "hostile.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("../escape.txt", b"evil")
    with pytest.raises(InputError, match=r"'\.\.'"):
        archives.extract(path, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists(), "nothing escaped"


def test_extract_rejects_zip_symlink(tmp_path):
    path = tmp_path / "hostile.zip"
    info = zipfile.ZipInfo("link.jpg")
    info.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr(info, "/etc/passwd")
    with pytest.raises(InputError, match="symbolic link"):
        archives.extract(path, tmp_path / "out")
