"""Safe extraction of tar and zip archives.

Every member is checked before anything is written: absolute paths, `..` components, symbolic and hard links,
and device or FIFO members are rejected, so no member can land outside the target folder. Members are streamed
one by one, so a truncated archive raises InputError while it is being read.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from cnnrepro.errors import InputError


def _safe_relative(name: str, archive: Path) -> PurePosixPath | None:
    """Return the member's path relative to the target, None for the archive root, or raise InputError."""
    normalized = name.replace("\\", "/")
    path = PurePosixPath(normalized)
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        raise InputError(f"{archive}: member {name!r} has an absolute path; the archive is rejected")
    if ".." in path.parts:
        raise InputError(f"{archive}: member {name!r} points outside the target folder ('..'); the archive is rejected")
    parts = [part for part in path.parts if part not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _strip(relative: PurePosixPath, strip: int) -> PurePosixPath | None:
    if len(relative.parts) <= strip:
        return None
    return PurePosixPath(*relative.parts[strip:])


def extract_tar_members(tar: tarfile.TarFile, archive: str | Path, target: Path, strip: int = 0) -> int:
    """Extract the members of an open tar archive into `target` after checking each; return the file count.

    Works on streams (mode "r|"), which ILSVRC2012's nested per-class tars need. `archive` names the archive
    in error messages.
    """
    count = 0
    with tqdm(desc=f"extract {Path(archive).name}", unit="file", leave=False, disable=None) as bar:
        for member in tar:
            relative = _safe_relative(member.name, archive)
            if member.issym() or member.islnk():
                kind = "symbolic" if member.issym() else "hard"
                raise InputError(
                    f"{archive}: member {member.name!r} is a {kind} link (to {member.linkname!r}); links are "
                    f"rejected so that no file can point outside the target"
                )
            if not (member.isfile() or member.isdir()):
                raise InputError(f"{archive}: member {member.name!r} is not a regular file or folder; rejected")
            destination = _destination(target, relative, strip)
            if destination is None:
                continue
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            with source, open(destination, "wb") as handle:
                shutil.copyfileobj(source, handle)
            if destination.stat().st_size != member.size:
                raise InputError(f"{archive}: member {member.name!r} ends early; the archive is truncated")
            count += 1
            bar.update(1)
    return count


def _destination(target: Path, relative, strip: int) -> Path | None:
    """Return where a checked member path lands under `target`, or None for a member that `strip` removes."""
    if relative is None:
        return None
    relative = _strip(relative, strip)
    return None if relative is None else target.joinpath(*relative.parts)


def _extract_tar(archive: Path, target: Path, strip: int) -> int:
    try:
        with tarfile.open(archive, "r:*") as tar:
            return extract_tar_members(tar, archive, target, strip)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise InputError(
            f"{archive} is truncated or corrupt ({type(err).__name__}: {err}): delete it and download it again"
        ) from None


def _extract_zip(archive: Path, target: Path, strip: int) -> int:
    count = 0
    try:
        with zipfile.ZipFile(archive) as bundle:
            for info in tqdm(bundle.infolist(), desc=f"extract {archive.name}", unit="file", disable=None):
                relative = _safe_relative(info.filename, archive)
                # Zip archives made on Unix store st_mode in the high 16 bits of external_attr; S_IFLNK marks a link.
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise InputError(f"{archive}: member {info.filename!r} is a symbolic link; links are rejected")
                destination = _destination(target, relative, strip)
                if destination is None:
                    continue
                if info.is_dir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                destination.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(info) as source, open(destination, "wb") as handle:
                    shutil.copyfileobj(source, handle)
                count += 1
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        raise InputError(
            f"{archive} is truncated or corrupt ({type(err).__name__}: {err}): delete it and download it again"
        ) from None
    return count


def extract(archive: Path, target: Path, *, strip: int = 0) -> int:
    """Extract `archive` (tar, tar.gz, tar.bz2, tar.xz or zip) into `target`; return the number of files.

    `strip` drops that many leading path components from every member, as `tar --strip-components` does.
    Raises InputError on an unsafe member or a truncated or corrupt archive; files written before the error
    remain, so callers extract into a temporary folder.
    """
    archive = Path(archive)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, target, strip)
    return _extract_tar(archive, target, strip)
