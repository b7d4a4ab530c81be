"""Verified, resumable downloads with mirror fallback.

`download` tries each URL of a `RemoteFile` in turn and writes the bytes to `<cache>/<name>.part`. An
interrupted transfer resumes from the end of that file with an HTTP Range request. Only a file whose checksums
match is renamed to `<cache>/<name>`. torchvision's `download_url` (0.29) neither resumes nor tries another URL
after a checksum mismatch, so this module does not use it.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# Bytes per network read: small enough that a dropped connection loses little of what already arrived.
NETWORK_CHUNK = 1 << 16
PART_SUFFIX = ".part"


@dataclass(frozen=True)
class RemoteFile:
    """A file with its download URLs, in order of preference, and the checksums it must match.

    `content_md5` is the MD5 of the gzip-decompressed content. MNIST mirrors recompress the official `.gz`
    files, so their compressed bytes differ while the content is the same.
    """

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    content_md5: str | None = None
    # True for an archive without a published checksum whose extracted content the caller checks instead.
    checked_after_extraction: bool = False

    def __post_init__(self) -> None:
        if not (self.md5 or self.sha256 or self.content_md5 or self.checked_after_extraction):
            raise ValueError(f"{self.name}: a RemoteFile needs at least one checksum")


class ChecksumError(InputError):
    """A file whose content does not match its published checksum."""


def file_digest(path: Path, algorithm: str, *, decompress: bool = False) -> str:
    """Return the hex digest of `path` (of its gzip-decompressed content when `decompress`)."""
    digest = hashlib.new(algorithm)
    opener = gzip.open if decompress else open
    try:
        with opener(path, "rb") as handle:
            for block in iter(lambda: handle.read(CHUNK), b""):
                digest.update(block)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ChecksumError(f"{path} is not a complete gzip file ({err})") from None
    return digest.hexdigest()


def verify(path: Path, remote: RemoteFile, *, delete: bool = True) -> dict[str, str]:
    """Check `path` against every checksum of `remote`; return {algorithm: digest} of what was checked.

    On a mismatch the file is deleted (unless `delete` is false) and ChecksumError names the expected and
    the actual sum.
    """
    path = Path(path)
    checks = [("md5", remote.md5, False), ("sha256", remote.sha256, False), ("content_md5", remote.content_md5, True)]
    found: dict[str, str] = {}
    for label, expected, decompress in checks:
        if not expected:
            continue
        try:
            actual = file_digest(path, "md5" if label == "content_md5" else label, decompress=decompress)
        except ChecksumError:
            if delete:
                path.unlink(missing_ok=True)
            raise
        if actual != expected:
            if delete:
                path.unlink(missing_ok=True)
            what = "MD5 of the decompressed content" if decompress else label.upper()
            removed = " The file was deleted; run the stage again to download it again." if delete else ""
            raise ChecksumError(
                f"checksum mismatch for {path.name} ({path}): expected {what} {expected}, got {actual}.{removed}"
            )
        found[label] = actual
    return found


def _fetch_once(url: str, part: Path, timeout: float, session: requests.Session, label: str) -> None:
    """Transfer `url` into `part`, resuming from its current size; raise on any HTTP or network error."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with session.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=True) as response:
        if offset and response.status_code == 416:
            # The part file already contains every byte; the checksum decides whether it is right.
            return
        response.raise_for_status()
        if offset and response.status_code != 206:
            log.info("%s ignored the Range request; downloading %s from the start", url, label)
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        mode = "ab" if offset else "wb"
        with open(part, mode) as handle, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, desc=label, leave=False, disable=None
        ) as bar:
            for block in response.iter_content(NETWORK_CHUNK):
                handle.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size < total:
            raise requests.ConnectionError(f"connection closed after {part.stat().st_size} of {total} bytes")


def download(
    remote: RemoteFile,
    cache: Path,
    *,
    timeout: float = 60.0,
    retries: int = 3,
    session: requests.Session | None = None,
) -> Path:
    """Download `remote` into `cache` unless a verified copy is there; return the path of the verified file.

    Each URL is tried up to `retries + 1` times on network errors, and every retry resumes the partial file.
    An HTTP error status or a checksum mismatch moves on to the next URL. Raises InputError listing every
    URL's failure.
    """
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / remote.name
    if target.exists():
        try:
            verify(target, remote)
            return target
        except ChecksumError as err:
            log.warning("cached %s failed verification, downloading it again: %s", target, err)
    part = cache / (remote.name + PART_SUFFIX)
    session = session or requests.Session()
    failures: list[str] = []
    for url in remote.urls:
        for attempt in range(retries + 1):
            try:
                _fetch_once(url, part, timeout, session, remote.name)
            except requests.HTTPError as err:
                failures.append(f"{url}: HTTP {err.response.status_code if err.response is not None else err}")
                log.warning("%s failed with %s; trying the next mirror", url, failures[-1].split(": ", 1)[1])
                break
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
                log.warning("%s: attempt %d of %d failed: %s", url, attempt + 1, retries + 1, err)
                if attempt == retries:
                    failures.append(f"{url}: {type(err).__name__}: {err}")
                    break
                time.sleep(min(2.0**attempt, 30.0) * 0.5)
                continue
            try:
                verify(part, remote)
            except ChecksumError as err:
                failures.append(f"{url}: {err}")
                log.warning("%s", err)
                break
            os.replace(part, target)
            return target
    tried = "\n  ".join(failures)
    raise InputError(
        f"could not download {remote.name} from any of {len(remote.urls)} URL(s):\n  {tried}\n"
        f"Without network access, set CNNREPRO_DATA_MIRROR to a local folder that holds the dataset."
    )


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link `source` to `target`, or copy it when the two are on different file systems.

    The parent folder of `target` must exist.
    """
    # NOTE: a hard link shares its inode with the mirror file, so writing into `target` in place would change
    # the mirror too (file modes do not stop root). Stages only read data/raw, and DVC caches a copy.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
