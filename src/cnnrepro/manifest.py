"""Content manifests of data folders.

Every stage that produces a data folder writes `manifest.json` into it: the sha256 of each file and one digest
over all of them. Downstream stages read the digest instead of hashing thousands of images again, and record it
in MLflow as the hash of the data they read.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from cnnrepro import atomic

MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def iter_files(folder: Path) -> Iterable[Path]:
    """Yield the files under `folder` in sorted order, skipping the manifest and partial leftovers."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if atomic.PARTIAL_MARK not in d)
        for name in sorted(filenames):
            if name == MANIFEST_NAME and Path(dirpath) == folder:
                continue
            if atomic.PARTIAL_MARK in name:
                continue
            yield Path(dirpath) / name


def combined_digest(files: dict[str, str]) -> str:
    """Return one sha256 over a {relative path: sha256} mapping, independent of insertion order."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]}\n".encode())
    return digest.hexdigest()


def build(folder: str | os.PathLike[str], known: dict[str, str] | None = None) -> dict:
    """Hash every file under `folder`; `known` supplies sums already verified, so they are not recomputed."""
    folder = Path(folder)
    known = known or {}
    files = {}
    for path in iter_files(folder):
        rel = path.relative_to(folder).as_posix()
        files[rel] = known.get(rel) or sha256_file(path)
    return {"digest": combined_digest(files), "count": len(files), "files": files}


def write(folder: str | os.PathLike[str], known: dict[str, str] | None = None, **extra) -> dict:
    manifest = build(folder, known)
    manifest.update(extra)
    atomic.write_json(Path(folder) / MANIFEST_NAME, manifest)
    return manifest


def read_digest(folder: str | os.PathLike[str]) -> str:
    """Return the digest recorded in `folder`'s manifest; raise FileNotFoundError naming the stage to run."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the stage that produces {folder} first (dvc repro)")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["digest"]
