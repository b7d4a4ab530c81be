"""Image folders packed into one uncompressed tar file, and random access to its members.

A download stage output of thousands of small images made every `dvc status` and no-op `dvc repro` stat
each file, once as the output of the download and again as a dependency of each stage that reads it. One tar
file is one DVC entry. The tar is uncompressed and written in sorted member order with fixed metadata, so the
same images always give the same bytes. `TarMembers` reads the member table once and then reads each member
with `os.pread` at its offset, which also works in forked DataLoader workers that share the file descriptor.
"""

from __future__ import annotations

import logging
import os
import tarfile
from pathlib import Path

from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

# The file name of a dataset's packed image tree, next to its other files (LFW: data/raw/lfw/images.tar).
PACKED_IMAGES = "images.tar"


def pack_folder(folder: Path, target: Path) -> int:
    """Write every file under `folder` into the uncompressed tar `target` as `<relative path>`; return the count."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as archive:
        for path in files:
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            with open(path, "rb") as handle:
                archive.addfile(info, handle)
    log.info("packed %d files of %s into %s", len(files), folder, target)
    return len(files)


class TarMembers:
    """Read-only random access to the regular-file members of an uncompressed tar file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._spans: dict[str, tuple[int, int]] = {}
        try:
            with tarfile.open(self.path, "r:") as archive:
                for member in archive:
                    if member.isfile():
                        self._spans[member.name] = (member.offset_data, member.size)
        except (OSError, tarfile.TarError) as err:
            raise InputError(f"{self.path} is not a readable uncompressed tar file ({err}); download it again") from err
        self._fd: int | None = None

    def names(self) -> list[str]:
        """Return the member names, sorted."""
        return sorted(self._spans)

    def __contains__(self, name: str) -> bool:
        return name in self._spans

    def read(self, name: str) -> bytes:
        """Return the bytes of member `name`; raise KeyError when the tar has no such member."""
        offset, size = self._spans[name]
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise InputError(f"{self.path}: member {name} is truncated ({len(data)} of {size} bytes); download again")
        return data

    def __getstate__(self) -> dict:
        # A pickled copy (a spawned DataLoader worker) opens its own descriptor.
        return {**self.__dict__, "_fd": None}
