"""Faulty inputs built at test time from the real data, run through the stages as a user runs them.

Each case must end in a clear error that names the file or value and the fix, exit non-zero, and leave nothing
under data/, models/, results/ or metrics/. The parsers' own fault tests live beside their modules; this file
covers the cases that only show up when a stage reads a damaged mirror, face set or archive.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
OUTPUT_FOLDERS = ("data", "models", "results", "metrics")


def _project(tmp_path: Path, **faces) -> Path:
    """A project root with the repository's dvc.yaml and the smoke profile, with `download.faces` overridden."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(REPO / "profiles", root / "profiles")
    subprocess.run(
        [sys.executable, "-m", "cnnrepro", "profile", "smoke"],
        cwd=root,
        env={**os.environ, "CNNREPRO_ROOT": str(root)},
        check=True,
        capture_output=True,
    )
    data = yaml.safe_load((root / "params.yaml").read_text())
    data["download"]["faces"].update(faces)
    (root / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def _download(root: Path, dataset: str, mirror: Path | None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CNNREPRO_ROOT": str(root),
        "CNNREPRO_DATA_MIRROR": str(mirror) if mirror else "",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    return subprocess.run(
        [sys.executable, "-m", "pipeline.download", dataset],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _outputs(root: Path) -> list[str]:
    """Every file or non-empty folder left under the stages' output folders."""
    left = []
    for name in OUTPUT_FOLDERS:
        folder = root / name
        if folder.is_dir():
            left += [str(p.relative_to(root)) for p in folder.rglob("*") if p.is_file()]
    return left


def _facts(result: subprocess.CompletedProcess, root: Path, named: str) -> dict:
    """Measured facts of one input fault case, for the fault_record fixture."""
    return {
        "kind": "input",
        "exit": result.returncode,
        "traceback": "Traceback (most recent call last)" in result.stderr,
        "names_input": named in result.stderr,
        "recorded": False,
        "left_outputs": _outputs(root),
    }


def _orl_mirror(shared_data: Path, tmp_path: Path, damaged: str, listed: bool) -> tuple[Path, Path]:
    """Copy the real ORL set into a mirror, truncate `damaged`, and write SHA256SUMS with or without it."""
    mirror = tmp_path / "mirror"
    shutil.copytree(shared_data / "orl-faces", mirror / "orl-faces")
    for path in mirror.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    broken = mirror / "orl-faces" / "orl_faces" / damaged
    broken.write_bytes(broken.read_bytes()[:2000])
    lines = [
        line
        for line in (shared_data / "SHA256SUMS").read_text().splitlines()
        if line.split("  ./", 1)[-1].startswith("orl-faces/") and (listed or not line.endswith(damaged))
    ]
    (mirror / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return mirror, broken


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "unlisted"])
def test_orl_mirror_damaged_image_rejected(shared_data, tmp_path, listed, fault_record):
    mirror, broken = _orl_mirror(shared_data, tmp_path, "s3/4.pgm", listed)
    root = _project(tmp_path, source="orl")
    result = _download(root, "faces", mirror)
    fault_record(**_facts(result, root, str(broken)))
    assert result.returncode == 1, f"exit {result.returncode}; stderr:\n{result.stderr}"
    assert str(broken) in result.stderr, f"the damaged file is not named:\n{result.stderr}"
    fix = "restore it" if listed else "restore the original files"
    assert fix in result.stderr, f"the message gives no fix:\n{result.stderr}"
    assert _outputs(root) == [], f"partial output left: {_outputs(root)}"


def test_mnist_mirror_damaged_unlisted_file(shared_data, tmp_path, fault_record):
    mirror = tmp_path / "mirror"
    (mirror / "mnist").mkdir(parents=True)
    for path in (shared_data / "mnist").iterdir():
        shutil.copyfile(path, mirror / "mnist" / path.name)
    labels = mirror / "mnist" / "t10k-labels-idx1-ubyte.gz"
    damaged = bytearray(labels.read_bytes())
    damaged[100] ^= 0xFF
    labels.write_bytes(bytes(damaged))
    # No SHA256SUMS: the file is checked only by the dataset's own reader.
    root = _project(tmp_path)
    result = _download(root, "mnist", mirror)
    fault_record(**_facts(result, root, str(labels)))
    assert result.returncode == 1, f"exit {result.returncode}; stderr:\n{result.stderr}"
    assert str(labels) in result.stderr, f"the damaged file is not named:\n{result.stderr}"
    assert _outputs(root) == [], f"partial output left: {_outputs(root)}"


def _face_archive(shared_data: Path, path: Path, escape: str) -> None:
    """Write a tar.gz of two real ORL identities plus one member whose name climbs out with `../`."""
    orl = shared_data / "orl-faces" / "orl_faces"
    with tarfile.open(path, "w:gz") as archive:
        for person in ("s1", "s2"):
            for image in sorted((orl / person).iterdir())[:3]:
                archive.add(image, arcname=f"people/{person}/{image.name}")
        payload = (orl / "s3" / "1.pgm").read_bytes()
        member = tarfile.TarInfo(escape)
        member.size = len(payload)
        archive.addfile(member, io.BytesIO(payload))


def test_face_archive_parent_member_rejected(shared_data, tmp_path, fault_record):
    archive = tmp_path / "faces.tar.gz"
    _face_archive(shared_data, archive, "people/s3/../../../escaped.pgm")
    root = _project(tmp_path, source="folder", path=str(archive))
    result = _download(root, "faces", None)
    fault_record(**_facts(result, root, archive.name))
    assert result.returncode == 1, f"exit {result.returncode}; stderr:\n{result.stderr}"
    assert str(archive) in result.stderr or archive.name in result.stderr, f"archive not named:\n{result.stderr}"
    assert "'..'" in result.stderr, f"the unsafe member is not named:\n{result.stderr}"
    escaped = [p for p in tmp_path.rglob("escaped.pgm")]
    assert escaped == [], f"a member escaped the extraction folder: {escaped}"
    assert _outputs(root) == [], f"partial output left: {_outputs(root)}"


def test_face_folder_zero_byte_image_recorded(shared_data, tmp_path, fault_record):
    from cnnrepro.faces.runner import AlignSettings, align_folder

    raw = tmp_path / "raw"
    (raw / "s1").mkdir(parents=True)
    shutil.copyfile(shared_data / "orl-faces" / "orl_faces" / "s1" / "1.pgm", raw / "s1" / "1.pgm")
    (raw / "s1" / "empty.pgm").write_bytes(b"")
    out = tmp_path / "aligned"
    settings = AlignSettings(sizes=(32,), batch_size=2, workers=0, device="cpu")
    summary = align_folder(raw, out, settings, state=tmp_path / "state", input_digest="x", progress=False)
    report = (out / "report.csv").read_text()
    line = next((row for row in report.splitlines() if row.startswith("s1/empty.pgm,")), "")
    fault_record(kind="input", exit=0, traceback=False, names_input="empty.pgm" in line, recorded=",error," in line,
                 left_outputs=[])
    assert summary["errors"] == 1, f"summary counts {summary['errors']} errors, expected 1 for the empty file"
    assert ",error," in line, f"the empty file is not recorded as an error: {line!r}"
    assert "empty.pgm" in line, f"the error message does not name the file: {line!r}"
    assert not (out / "32" / "s1" / "empty.png").exists(), "an empty file must not produce a crop"
