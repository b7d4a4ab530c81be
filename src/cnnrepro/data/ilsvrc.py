"""ILSVRC2012 from the archives a user downloaded from image-net.org (an account is required, so the stage
cannot fetch them): `ILSVRC2012_img_train.tar` (one tar per class inside), `ILSVRC2012_img_val.tar` (50,000 flat
JPEGs) and `ILSVRC2012_devkit_t12.tar.gz` (ground truth and `meta.mat`).
"""

from __future__ import annotations

import io
import logging
import tarfile
import zlib
from pathlib import Path

from cnnrepro.data import archives, imagenet, sources
from cnnrepro.data.fetch import RemoteFile, verify
from cnnrepro.errors import InputError

log = logging.getLogger(__name__)

DEVKIT_GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "data/meta.mat"


def _archive(folder: Path, key: str) -> Path:
    name = sources.ILSVRC2012_ARCHIVES[key]
    path = folder / name
    if not path.is_file():
        raise InputError(
            f"{name} not found in {folder} (download.imagenet.archives): download it from image-net.org, "
            f"or set download.imagenet.source to imagenette"
        )
    verify(path, RemoteFile(name, (), md5=sources.ILSVRC2012_MD5[name]), delete=False)
    return path


def _read_devkit_member(tar: tarfile.TarFile, suffix: str, devkit: Path) -> bytes:
    for member in tar.getmembers():
        if member.isfile() and member.name.endswith(suffix):
            handle = tar.extractfile(member)
            assert handle is not None
            return handle.read()
    raise InputError(f"{devkit} contains no {suffix}: it is not the ILSVRC2012 devkit")


def meta_from_devkit(devkit: Path, meta: Path) -> None:
    """Write the ground truth, `map_clsloc.txt` and `LOC_synset_mapping.txt` from the ILSVRC2012 devkit."""
    from scipy.io import loadmat

    verify(devkit, RemoteFile(devkit.name, (), md5=sources.ILSVRC2012_MD5[devkit.name]), delete=False)
    try:
        with tarfile.open(devkit, "r:*") as tar:
            ground_truth = _read_devkit_member(tar, DEVKIT_GROUND_TRUTH, devkit)
            meta_mat = _read_devkit_member(tar, DEVKIT_META, devkit)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise InputError(f"{devkit} is truncated or corrupt ({err})") from None
    synsets = loadmat(io.BytesIO(meta_mat), squeeze_me=True)["synsets"]
    leaves = sorted(
        (int(s["ILSVRC2012_ID"]), str(s["WNID"]), str(s["words"])) for s in synsets if int(s["num_children"]) == 0
    )
    if [devkit_id for devkit_id, _, _ in leaves] != list(range(1, 1001)):
        raise InputError(f"{devkit}: meta.mat does not list the 1000 classes with ids 1..1000")
    meta.mkdir(parents=True, exist_ok=True)
    (meta / imagenet.GROUND_TRUTH).write_bytes(ground_truth)
    clsloc = [
        f"{wnid} {devkit_id} {words.split(',')[0].strip().replace(' ', '_')}" for devkit_id, wnid, words in leaves
    ]
    (meta / imagenet.MAP_CLSLOC).write_text("\n".join(clsloc) + "\n")
    mapping = sorted(f"{wnid} {words}" for _, wnid, words in leaves)
    (meta / imagenet.SYNSET_MAPPING).write_text("\n".join(mapping) + "\n")


def extract_images(folder: Path, out: Path, meta: Path) -> dict[str, int]:
    """Extract the training images into `out/train/<wnid>/` and the validation images into `out/val/<wnid>/`.

    The validation folders come from the devkit ground truth already written to `meta`.
    """
    train_tar = _archive(folder, "train")
    val_tar = _archive(folder, "val")
    counts = {"train": 0, "val": 0}
    try:
        with tarfile.open(train_tar, "r|") as outer:
            for member in outer:
                wnid = Path(member.name).name.removesuffix(".tar")
                if not (member.isfile() and imagenet.WNID.match(wnid)):
                    raise InputError(f"{train_tar}: unexpected member {member.name!r}; expected <wnid>.tar")
                inner_stream = outer.extractfile(member)
                with tarfile.open(fileobj=inner_stream, mode="r|") as inner:
                    counts["train"] += archives.extract_tar_members(
                        inner, f"{train_tar}:{member.name}", out / "train" / wnid
                    )
        staging = out / "val.flat"
        counts["val"] = archives.extract(val_tar, staging)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise InputError(f"an ILSVRC2012 archive in {folder} is truncated or corrupt ({err})") from None
    truth = imagenet.read_devkit_ground_truth(meta / imagenet.GROUND_TRUTH, meta / imagenet.MAP_CLSLOC)
    for image in sorted(staging.iterdir()):
        match = imagenet.VAL_NAME.match(image.name)
        if not match or match.group(1) not in truth:
            raise InputError(f"{val_tar}: {image.name} is not an ILSVRC2012 validation image in the ground truth")
        destination = out / "val" / truth[match.group(1)]
        destination.mkdir(parents=True, exist_ok=True)
        image.rename(destination / image.name)
    staging.rmdir()
    return counts
