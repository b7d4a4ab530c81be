"""Offline mirrors: a local folder laid out like the project's real-data folder, named by CNNREPRO_DATA_MIRROR.

Layout: `mnist/*.gz`, `lfw/` (protocol files and `lfw-deepfunneled/` or `lfw/` image folders, or the
`.tgz` archives), `imagenette/{train,val}/`, `imagenet-meta/`, `orl-faces/orl_faces/`. A `SHA256SUMS` file at
the top (`sha256  ./relative/path` per line, as `sha256sum` writes it) lists checksums. Every file it lists is
verified before it is linked. Files it does not list rely on the checks of the dataset that uses them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from cnnrepro.data.fetch import ChecksumError, link_or_copy
from cnnrepro.errors import InputError
from cnnrepro.manifest import sha256_file

log = logging.getLogger(__name__)

MIRROR_ENV = "CNNREPRO_DATA_MIRROR"
SUMS_FILE = "SHA256SUMS"


def mirror_from_env() -> Path | None:
    """Return the folder named by CNNREPRO_DATA_MIRROR, or None when it is unset or empty."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise InputError(f"{MIRROR_ENV}={value} is not a folder: point it at a local data mirror or unset it")
    return folder


def read_sums(path: Path) -> dict[str, str]:
    """Read a `sha256sum` listing into {relative posix path: sha256}."""
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        name = name.lstrip(" *")
        if len(digest) != 64 or not name:
            raise InputError(f"{path}, line {number}: expected '<sha256>  <path>', found {line!r}")
        sums[name.removeprefix("./")] = digest.lower()
    return sums


@dataclass
class Mirror:
    """A local mirror folder and the checksums its SHA256SUMS lists (empty when it has none)."""

    root: Path
    sums: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path) -> Mirror:
        sums_path = root / SUMS_FILE
        sums = read_sums(sums_path) if sums_path.is_file() else {}
        if not sums:
            log.warning("%s has no %s: mirror files are checked only by the datasets' own checksums", root, SUMS_FILE)
        return cls(root, sums)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def verify(self, relative: str) -> str | None:
        """Check one mirror file against SHA256SUMS; return its sha256, or None when SHA256SUMS does not list it."""
        expected = self.sums.get(relative)
        if expected is None:
            return None
        actual = sha256_file(self.root / relative)
        if actual != expected:
            raise ChecksumError(
                f"checksum mismatch for {self.root / relative}: expected SHA256 {expected} (from {SUMS_FILE}), "
                f"got {actual}; the mirror copy is damaged, restore it"
            )
        return actual

    def copy_tree(
        self, relative: str, target: Path, *, accept: Callable[[str], bool] = lambda name: True, label: str = "copy"
    ) -> dict[str, str]:
        """Verify and link every accepted file under mirror/`relative` into `target`, keeping relative paths.

        Returns {path relative to `target`: sha256} for every file copied, hashing files SHA256SUMS does not
        list as well, so the caller can compare content digests without hashing twice.
        """
        source_root = self.root / relative
        if not source_root.is_dir():
            raise InputError(f"{source_root} not found in the mirror {self.root}")
        files = sorted(p for p in source_root.rglob("*") if p.is_file() and accept(p.name))
        copied: dict[str, str] = {}
        created_folders: set[Path] = set()
        for source in tqdm(files, desc=label, unit="file", leave=False, disable=None):
            inner = source.relative_to(source_root).as_posix()
            digest = self.verify(f"{relative}/{inner}") or sha256_file(source)
            destination = target / inner
            if destination.parent not in created_folders:
                destination.parent.mkdir(parents=True, exist_ok=True)
                created_folders.add(destination.parent)
            link_or_copy(source, destination)
            copied[inner] = digest
        return copied


