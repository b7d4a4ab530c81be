"""The download stage's work: fill a folder with one verified dataset, from an offline mirror or the network.

Each `prepare_<dataset>` function writes into an empty folder that the stage later renames to
`data/raw/<dataset>` (see `pipeline/download.py`), and returns what the stage records in `manifest.json`:
the sha256 of every file it already hashed, and facts about the source. Downloads are cached in
`.cnnrepro/downloads/`, so a rerun after an interruption resumes instead of starting again.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnrepro import manifest
from cnnrepro.data import archives, identity, ilsvrc, imagenet, lfw, mnist, packed, sources
from cnnrepro.data.fetch import RemoteFile, download, link_or_copy, verify
from cnnrepro.data.mirror import MIRROR_ENV, SUMS_FILE, Mirror
from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

DATASETS = ("mnist", "lfw", "imagenet", "faces")


@dataclass
class Fetcher:
    """Source of files: a local mirror when one is set, otherwise the network through the download cache."""

    cache: Path
    mirror: Mirror | None = None
    timeout: float = 60.0
    retries: int = 3

    def download(self, remote: RemoteFile) -> Path:
        return download(remote, self.cache, timeout=self.timeout, retries=self.retries)


@dataclass
class Prepared:
    """Result of a prepare function: sha256 sums already verified, by relative path, and manifest fields."""

    known: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def _prefixed(sums: dict[str, str], prefix: str) -> dict[str, str]:
    return {f"{prefix}/{path}": digest for path, digest in sums.items()}


# ---------------------------------------------------------------- MNIST


def prepare_mnist(out: Path, section: Any, fetcher: Fetcher) -> Prepared:
    """Write the MNIST `.gz` files; the training files only when `include_train` and available."""
    requested = list(sources.MNIST_FILES)
    if not section.include_train:
        requested = [name for name in requested if name not in sources.MNIST_TRAIN_FILES]
    result = Prepared(info={"source": "mirror" if fetcher.mirror else "download"})
    missing = []
    for name in requested:
        remote = sources.mnist_remote(name)
        if fetcher.mirror:
            relative = f"mnist/{name}"
            if not fetcher.mirror.path(relative).is_file():
                if name in sources.MNIST_TRAIN_FILES:
                    # Offline mirrors often carry only the test set; the reader tells the user what to change.
                    missing.append(name)
                    continue
                raise InputError(f"{fetcher.mirror.path(relative)} not found: the MNIST test set is required")
            digest = fetcher.mirror.verify(relative)
            verify(fetcher.mirror.path(relative), remote, delete=False)
            link_or_copy(fetcher.mirror.path(relative), out / name)
        else:
            link_or_copy(fetcher.download(remote), out / name)
            digest = None
        if digest:
            result.known[name] = digest
    if missing:
        log.warning("MNIST: %s not in the mirror; train.lenet5.data: test-holdout trains without them", missing)
    present = sorted(p.name for p in out.iterdir())
    result.info.update(files_present=present, files_missing=missing,
                       train_images=sources.MNIST_TRAIN_FILES[0] in present)
    mnist.load(out, "test")  # structural check of what was written
    return result


# ---------------------------------------------------------------- LFW

PROTOCOL_FILES = tuple(sources.LFW_PROTOCOL_MD5)


def _is_jpeg(name: str) -> bool:
    return name.lower().endswith(".jpg")


def _lfw_protocol(out: Path, fetcher: Fetcher) -> dict[str, str]:
    known = {}
    for name in PROTOCOL_FILES:
        remote = sources.lfw_protocol_remote(name)
        if fetcher.mirror:
            relative = f"lfw/{name}"
            if not fetcher.mirror.path(relative).is_file():
                raise InputError(f"{fetcher.mirror.path(relative)} not found: the mirror must carry LFW's {name}")
            known[name] = fetcher.mirror.verify(relative) or manifest.sha256_file(fetcher.mirror.path(relative))
            verify(fetcher.mirror.path(relative), remote, delete=False)
            link_or_copy(fetcher.mirror.path(relative), out / name)
        else:
            link_or_copy(fetcher.download(remote), out / name)
    if fetcher.mirror and fetcher.mirror.path("lfw/README.txt").is_file():
        link_or_copy(fetcher.mirror.path("lfw/README.txt"), out / "README.txt")
    return known


def _extract_people(archive: Path, images: Path, people: set[str] | None) -> None:
    """Extract an LFW archive into `images`, keeping only the folders of `people` when it is given."""
    if people is None:
        archives.extract(archive, images, strip=1)
        return
    staging = images.parent / f".{images.name}.extract"
    archives.extract(archive, staging, strip=1)
    images.mkdir(parents=True, exist_ok=True)
    for name in people:
        if (staging / name).is_dir():
            (staging / name).rename(images / name)
    shutil.rmtree(staging)


def lfw_images(
    images: Path, variant: str, fetcher: Fetcher, people: set[str] | None = None
) -> tuple[dict[str, str], str, bool]:
    """Write LFW's images as `images/<Name>/<Name>_NNNN.jpg`, only those of `people` when it is given.

    Returns the sums already computed, where the images came from, and whether every image was verified on the
    way (by the archive's MD5 or by the mirror's SHA256SUMS).
    """
    root_name = sources.LFW_ARCHIVE_ROOT[variant]
    remote = sources.LFW_ARCHIVES[variant]

    def accept(name: str) -> bool:
        return _is_jpeg(name) and (people is None or name.rsplit("_", 1)[0] in people)

    if fetcher.mirror:
        folder = f"lfw/{root_name}"
        archive = fetcher.mirror.path(f"lfw/{remote.name}")
        if fetcher.mirror.path(folder).is_dir():
            sums = fetcher.mirror.copy_tree(folder, images, accept=accept, label=f"link {root_name}")
            listed = all(f"{folder}/{relative}" in fetcher.mirror.sums for relative in sums)
            return sums, f"mirror folder {fetcher.mirror.path(folder)}", listed
        if archive.is_file():
            verify(archive, remote, delete=False)
            _extract_people(archive, images, people)
            return {}, f"mirror archive {archive}", True
        other = "original" if variant == "deepfunneled" else "deepfunneled"
        raise InputError(
            f"LFW {variant} images not found in the mirror: expected the folder {fetcher.mirror.path(folder)} or "
            f"the archive {archive}. Add one of them, or set download.lfw.images to {other}"
        )
    archive = fetcher.download(remote)
    _extract_people(archive, images, people)
    return {}, f"archive {remote.name}", True


def _check_lfw_content(images: Path, sums: dict[str, str], variant: str, verified: bool) -> dict[str, str]:
    """Compare the image set with the official one; return the sums of all images (hashing those not known).

    A different set is an error unless every image was verified on the way (a subset in a mirror whose
    SHA256SUMS lists it, or an archive whose MD5 matched), when it is only logged.
    """
    files = {p.relative_to(images).as_posix(): p for p in sorted(images.rglob("*")) if p.is_file()}
    full = {rel: sums.get(rel) or manifest.sha256_file(path) for rel, path in files.items()}
    digest = manifest.combined_digest(full)
    if digest != sources.LFW_CONTENT_DIGEST[variant]:
        message = (
            f"the {len(full)} LFW {variant} images differ from the official set of {sources.LFW_IMAGE_COUNT} "
            f"(content digest {digest}, expected {sources.LFW_CONTENT_DIGEST[variant]})"
        )
        if not verified:
            raise InputError(message + ": no SHA256SUMS entry vouches for them; restore the original images")
        log.warning("%s; every image was verified on the way, so this set is used", message)
    return full


def _check_pairs_images(out: Path) -> int:
    """Raise InputError when an image named in a pairs file is missing; return how many pairs were checked."""
    count = 0
    for name in ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt"):
        for fold in lfw.read_pairs(out / name):
            for pair in fold:
                for person, number in ((pair.name1, pair.n1), (pair.name2, pair.n2)):
                    if not (out / "images" / lfw.image_relpath(person, number)).is_file():
                        raise InputError(
                            f"{name} names {lfw.image_relpath(person, number)}, which is not among the downloaded "
                            f"images: the image set is incomplete"
                        )
                count += 1
    return count


def prepare_lfw(out: Path, section: Any, fetcher: Fetcher) -> Prepared:
    known = _lfw_protocol(out, fetcher)
    sums, origin, verified = lfw_images(out / "images", section.images, fetcher)
    full = _check_lfw_content(out / "images", sums, section.images, verified)
    if section.pairs_per_fold is not None:
        for name in ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt"):
            kept = lfw.write_pairs_subset(out / name, section.pairs_per_fold)
            known.pop(name, None)
            log.warning("%s cut to %d pairs (download.lfw.pairs_per_fold); results are not LFW-comparable", name, kept)
    pairs = _check_pairs_images(out)
    people = sum(1 for p in (out / "images").iterdir() if p.is_dir())
    # One tar file in place of the image tree: DVC then hashes and checks one file, not about 13,000.
    packed.pack_folder(out / "images", out / packed.PACKED_IMAGES)
    shutil.rmtree(out / "images")
    content_digest = manifest.combined_digest(full)
    info = {"source": origin, "images": section.images, "image_count": len(full), "people": people,
            "pairs_checked": pairs, "pairs_per_fold": section.pairs_per_fold, "content_digest": content_digest,
            "official_content": content_digest == sources.LFW_CONTENT_DIGEST[section.images]}
    return Prepared(known, info)


# ---------------------------------------------------------------- ImageNet


def _imagenet_meta(meta: Path, section: Any, fetcher: Fetcher) -> tuple[dict[str, str], str]:
    """Write the five metadata files; from the mirror, the archives folder, or the ILSVRC2012 devkit."""
    meta.mkdir(parents=True, exist_ok=True)
    candidates = []
    if fetcher.mirror:
        candidates.append(fetcher.mirror.path("imagenet-meta"))
    if section.archives:
        candidates += [Path(section.archives), Path(section.archives) / "imagenet-meta"]
    for folder in candidates:
        if all((folder / name).is_file() for name in sources.IMAGENET_META_SHA256):
            known = {}
            for name, expected in sources.IMAGENET_META_SHA256.items():
                remote = RemoteFile(name, (), sha256=expected)
                known[name] = verify(folder / name, remote, delete=False)["sha256"]
                link_or_copy(folder / name, meta / name)
            return known, str(folder)
    devkit = Path(section.archives or "") / sources.ILSVRC2012_ARCHIVES["devkit"]
    if section.archives and devkit.is_file():

        ilsvrc.meta_from_devkit(devkit, meta)
        return {}, str(devkit)
    places = ", ".join(str(c) for c in candidates) or "(none: no mirror and no download.imagenet.archives)"
    raise InputError(
        f"ImageNet metadata not found: the files {', '.join(sources.IMAGENET_META_SHA256)} were looked for in "
        f"{places}. Set {MIRROR_ENV} to a mirror with imagenet-meta/, or put the five files or "
        f"{sources.ILSVRC2012_ARCHIVES['devkit']} in the folder named by download.imagenet.archives"
    )


def _is_image(name: str) -> bool:
    return name.lower().endswith((".jpeg", ".jpg", ".png"))


def prepare_imagenet(out: Path, section: Any, fetcher: Fetcher) -> Prepared:
    known_meta, meta_origin = _imagenet_meta(out / "meta", section, fetcher)
    known = _prefixed(known_meta, "meta")
    if section.source == "imagenette":
        if fetcher.mirror and fetcher.mirror.path("imagenette").is_dir():
            for part in ("train", "val"):
                sums = fetcher.mirror.copy_tree(f"imagenette/{part}", out / part, accept=_is_image,
                                                label=f"link imagenette/{part}")
                known.update(_prefixed(sums, part))
            origin = f"mirror folder {fetcher.mirror.path('imagenette')}"
        elif fetcher.mirror:
            raise InputError(f"{fetcher.mirror.path('imagenette')} not found in the mirror {fetcher.mirror.root}")
        else:
            archive = fetcher.download(sources.IMAGENETTE_ARCHIVE)
            archives.extract(archive, out, strip=1)
            origin = f"archive {sources.IMAGENETTE_ARCHIVE.name}"
            for extra in out.iterdir():
                if extra.is_file():
                    extra.unlink()  # noisy_imagenette.csv and similar; the split rule needs only the folders
    else:

        if not section.archives:
            raise InputError(
                "download.imagenet.source is ilsvrc2012, which cannot be downloaded without an ImageNet account: "
                "set download.imagenet.archives to the folder holding "
                f"{', '.join(sources.ILSVRC2012_ARCHIVES.values())}, or set download.imagenet.source to imagenette"
            )
        ilsvrc.extract_images(Path(section.archives), out, out / "meta")
        origin = f"ILSVRC2012 archives in {section.archives}"
    train = imagenet.split(out, "train")
    evaluation = imagenet.split(out, "eval")
    info = {"source": section.source, "origin": origin, "meta_origin": meta_origin,
            "classes": len(imagenet.classes(out)), "train_images": len(train), "eval_images": len(evaluation)}
    return Prepared(known, info)


# ---------------------------------------------------------------- identity-labelled faces


def _faces_orl(out: Path, fetcher: Fetcher) -> tuple[dict[str, str], str]:
    def is_pgm(name: str) -> bool:
        return name.endswith(".pgm")

    unlisted: list[str] = []
    if fetcher.mirror:
        sums = fetcher.mirror.copy_tree("orl-faces/orl_faces", out, accept=is_pgm, label="link ORL")
        origin = f"mirror folder {fetcher.mirror.path('orl-faces/orl_faces')}"
        unlisted = [rel for rel in sums if f"orl-faces/orl_faces/{rel}" not in fetcher.mirror.sums]
    else:
        archive = fetcher.download(sources.ORL_ARCHIVE)
        staging = out / ".extract"
        archives.extract(archive, staging)
        root = _identity_root(staging)
        for person in root.iterdir():
            if person.is_dir():
                for image in person.iterdir():
                    if is_pgm(image.name):
                        (out / person.name).mkdir(exist_ok=True)
                        image.rename(out / person.name / image.name)
        shutil.rmtree(staging)
        sums = {}
        origin = f"archive {sources.ORL_ARCHIVE.name}"
    files = {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*.pgm"))}
    full = {rel: sums.get(rel) or manifest.sha256_file(path) for rel, path in files.items()}
    digest = manifest.combined_digest(full)
    if digest != sources.ORL_CONTENT_DIGEST:
        message = (f"the {len(full)} ORL images differ from the published set of {sources.ORL_IMAGE_COUNT} "
                   f"(content digest {digest}, expected {sources.ORL_CONTENT_DIGEST})")
        if not fetcher.mirror:
            raise InputError(message + ": restore the original files")
        if unlisted:
            # A file that SHA256SUMS does not list was never checked, so it may be the damaged one.
            raise InputError(
                f"{message}, and the mirror's {SUMS_FILE} does not list {len(unlisted)} of them, such as "
                f"{fetcher.mirror.path('orl-faces/orl_faces/' + unlisted[0])}: restore the original files or add "
                f"their checksums to {fetcher.mirror.path(SUMS_FILE)}"
            )
        log.warning("%s; every file matched the mirror's SHA256SUMS, so the subset is used", message)
    return full, origin


def _identity_root(folder: Path) -> Path:
    """Descend through single wrapper folders (`orl_faces/`, `CASIA-WebFace/`) to the identity folders."""
    current = folder
    while True:
        entries = [p for p in current.iterdir() if not p.name.startswith(".") and not p.name.startswith("__MACOSX")]
        dirs = [p for p in entries if p.is_dir()]
        images = [p for p in entries if p.is_file() and identity.is_image_name(p.name)]
        if len(dirs) == 1 and not images and any(child.is_dir() for child in dirs[0].iterdir()):
            current = dirs[0]
            continue
        return current


def _faces_lfw_train_folds(out: Path, section: Any, fetcher: Fetcher) -> tuple[dict[str, str], dict[str, Any]]:
    """Write the deep-funneled LFW images of the people of every people.txt set except `test_fold`.

    The sets of people.txt are the people of the folds of pairs.txt, so a model trained on this set and tested
    on fold `test_fold` of pairs.txt never saw a test identity. People with fewer than `min_images` images are
    left out.
    """
    staging = out / ".lfw-protocol"
    staging.mkdir()
    _lfw_protocol(staging, fetcher)
    sets = lfw.read_people(staging / "people.txt")
    shutil.rmtree(staging)
    if not 0 <= section.test_fold < len(sets):
        raise InputError(
            f"download.faces.test_fold = {section.test_fold} is invalid: people.txt has {len(sets)} sets, "
            f"so use 0..{len(sets) - 1}"
        )
    chosen = {
        name
        for index, people in enumerate(sets)
        if index != section.test_fold
        for name, count in people
        if count >= section.min_images
    }
    sums, origin, verified = lfw_images(out, "deepfunneled", fetcher, people=chosen)
    if not verified:
        raise InputError(
            f"the LFW images in {origin} cannot be verified: the mirror has no SHA256SUMS entries for them. "
            f"Add SHA256SUMS to the mirror, or use source orl"
        )
    found = {p.name for p in out.iterdir() if p.is_dir()}
    if found != chosen:
        missing = sorted(chosen - found)
        raise InputError(f"{len(missing)} LFW people of people.txt have no images, for example {missing[:3]}")
    info = {
        "origin": origin,
        "test_fold": section.test_fold,
        "min_images": section.min_images,
        "note": f"LFW people of people.txt sets other than {section.test_fold}; test a model trained on them on "
        f"fold {section.test_fold} of pairs.txt only",
    }
    return sums, info


def _faces_folder(out: Path, section: Any) -> tuple[dict[str, str], dict[str, Any]]:
    if not section.path:
        raise InputError("download.faces.source is folder but download.faces.path is not set: name an "
                         "<identity>/<image> folder or a .tar, .tar.gz or .zip archive of one")
    source = Path(section.path).expanduser()
    if not source.exists():
        raise InputError(f"download.faces.path = {section.path} not found")
    info: dict[str, Any] = {"path": str(source)}
    if source.is_dir():
        root = _identity_root(source)
        files = [p for p in sorted(root.rglob("*")) if p.is_file() and identity.is_image_name(p.name)
                 and len(p.relative_to(root).parts) >= 2]
        for path in files:
            destination = out / path.relative_to(root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            link_or_copy(path, destination)
    else:
        info["archive_sha256"] = manifest.sha256_file(source)
        staging = out / ".extract"
        archives.extract(source, staging)
        root = _identity_root(staging)
        for person in [p for p in root.iterdir() if p.is_dir()]:
            person.rename(out / person.name)
        shutil.rmtree(staging)
        for path in [p for p in out.rglob("*") if p.is_file() and not identity.is_image_name(p.name)]:
            path.unlink()
    return {}, info


def prepare_faces(out: Path, section: Any, fetcher: Fetcher) -> Prepared:
    if section.source == "orl":
        known, origin = _faces_orl(out, fetcher)
        info: dict[str, Any] = {"origin": origin}
    elif section.source == "lfw-train-folds":
        known, info = _faces_lfw_train_folds(out, section, fetcher)
    else:
        known, info = _faces_folder(out, section)
    items, names = identity.scan(out)
    info.update(source=section.source, identities=len(names), images=len(items))
    return Prepared(known, info)


PREPARE: dict[str, Callable[[Path, Any, Fetcher], Prepared]] = {
    "mnist": prepare_mnist,
    "lfw": prepare_lfw,
    "imagenet": prepare_imagenet,
    "faces": prepare_faces,
}
