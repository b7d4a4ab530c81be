"""The alignment of a whole image folder: planning, batched decoding and detection, resuming, the report.

Work happens in a state folder keyed by a fingerprint of the params, the input digest and the file list. Each
finished batch writes its crops there and then, as the commit point, a small JSON file with its records. A
rerun after a kill skips the committed batches and redoes the rest, so the final output does not depend on
where the earlier run stopped. The finished output is assembled from hard links and moved into place in one
rename.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import hashlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cnnrepro import atomic, manifest
from cnnrepro.errors import InputError
from cnnrepro.faces import frontal, mesh
from cnnrepro.faces.align import ALIGNED, ERROR, FALLBACK, FALLBACK_2D, AlignmentRecord, FrontalOptions, align_batch
from cnnrepro.faces.detector import BatchMTCNN
from cnnrepro.faces.imageio import IMAGE_SUFFIXES, UnreadableImageError, image_size, load_rgb

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
REPORT_COLUMNS = ("path", "status", "score", "box", "landmarks", "faces", "chosen", "message")
LFW_PROTOCOL_FILES = (
    "pairs.txt",
    "pairsDevTrain.txt",
    "pairsDevTest.txt",
    "people.txt",
    "peopleDevTrain.txt",
    "peopleDevTest.txt",
)


@dataclass(frozen=True)
class AlignSettings:
    """The values of params.yaml `align` that the runner reads, flattened."""

    method: str = "2d"
    sizes: tuple[int, ...] = (152,)
    select: str = "largest"
    margin: float = 0.0
    fallback_fraction: float = 1.0
    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    batch_size: int = 32
    workers: int = 2
    device: str = "auto"
    on_error: str = "record"
    subset: str = "all"
    residuals: bool = True
    mirror: bool = True
    crop_scale: float = 2.0
    mesh_size: int = 256
    mesh_confidence: float = 0.5

    @classmethod
    def from_params(cls, section) -> AlignSettings:
        return cls(
            method=section.method,
            sizes=tuple(section.sizes),
            select=section.select,
            margin=section.margin,
            fallback_fraction=section.fallback_fraction,
            min_face_size=section.detector.min_face_size,
            thresholds=tuple(section.detector.thresholds),
            factor=section.detector.factor,
            batch_size=section.batch_size,
            workers=section.workers,
            device=section.device,
            on_error=section.on_error,
            subset=section.subset,
            residuals=section.frontal.residuals,
            mirror=section.frontal.mirror,
            crop_scale=section.frontal.crop_scale,
            mesh_size=section.frontal.mesh_size,
            mesh_confidence=section.frontal.min_confidence,
        )

    def output_key(self) -> dict:
        """Return the settings that change the output; workers and device only change the speed."""
        values = asdict(self)
        values.pop("workers")
        values.pop("device")
        if self.method != "3d":
            for name in FRONTAL_SETTINGS:
                values.pop(name)
        return values


FRONTAL_SETTINGS = ("residuals", "mirror", "crop_scale", "mesh_size", "mesh_confidence")


@dataclass
class Plan:
    """The images of one folder: readable ones grouped into equal-size batches, unreadable ones as records."""

    batches: list[list[str]] = field(default_factory=list)
    errors: list[AlignmentRecord] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(b) for b in self.batches) + len(self.errors)


def image_root(raw: Path) -> Path:
    """Return the folder holding `<identity>/<image>`: `images/` when the dataset has one (LFW), else `raw`."""
    return raw / "images" if (raw / "images").is_dir() else raw


def list_images(root: Path) -> list[str]:
    """Return the image paths `<identity>/<file>` under root, sorted; reject layouts the output cannot mirror."""
    if not root.is_dir():
        raise InputError(f"{root} is not a folder: run the download stage first (dvc repro download@<dataset>)")
    found: list[str] = []
    stems: dict[str, str] = {}
    for identity in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(identity.iterdir()):
            if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            rel = f"{identity.name}/{file.name}"
            key = f"{identity.name}/{file.stem}"
            if key in stems:
                raise InputError(
                    f"{root}: {stems[key]} and {rel} would both be written as {key}.png; rename or remove one"
                )
            stems[key] = rel
            found.append(rel)
    if not found:
        raise InputError(f"{root} contains no images in <identity>/<image> folders; check the download stage output")
    return found


PAIRS_FILES = ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt")


def pair_images(raw: Path, paths: Sequence[str]) -> list[str]:
    """Keep the images of `paths` that LFW's pairs files at the top of `raw` name, in their original order."""
    from cnnrepro.data import lfw

    named = set()
    for name in PAIRS_FILES:
        if not (raw / name).is_file():
            raise InputError(f"{raw / name} is missing: align.subset 'pairs' needs the LFW pairs files")
        for fold in lfw.read_pairs(raw / name):
            for pair in fold:
                named.add(lfw.image_relpath(pair.name1, pair.n1))
                named.add(lfw.image_relpath(pair.name2, pair.n2))
    kept = [path for path in paths if path in named]
    log.info("align.subset pairs: %d of %d images are named in the pairs files", len(kept), len(paths))
    return kept


def plan_batches(root: Path, paths: Sequence[str], batch_size: int) -> Plan:
    """Group images by their header size into batches of at most batch_size, in a deterministic order."""
    plan = Plan()
    groups: dict[tuple[int, int], list[str]] = {}
    for rel in paths:
        try:
            size = image_size(root / rel)
        except UnreadableImageError as err:
            plan.errors.append(AlignmentRecord(path=rel, status=ERROR, message=str(err)))
            continue
        groups.setdefault(size, []).append(rel)
    for size in sorted(groups):
        members = groups[size]
        plan.batches.extend(members[i : i + batch_size] for i in range(0, len(members), batch_size))
    return plan


class _BatchDecoder(Dataset):
    """Decodes one planned batch per item, in DataLoader workers."""

    def __init__(self, root: Path, batches: Sequence[tuple[int, list[str]]]) -> None:
        self.root = root
        self.batches = list(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, item: int):
        index, paths = self.batches[item]
        decoded, errors = [], []
        for rel in paths:
            try:
                decoded.append((rel, load_rgb(self.root / rel)))
            except UnreadableImageError as err:
                errors.append((rel, str(err)))
        return index, decoded, errors


def _unbatched(sample):
    return sample


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)
    # Linux only: end this decoder when the main process dies, even by SIGKILL. Without it, workers of a
    # killed run were seen to linger until killed themselves.
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _code_digest() -> str:
    """Hash this package's source and data, so that work left by an older version of the aligner is not resumed."""
    digest = hashlib.sha256()
    folder = Path(__file__).parent
    for source in sorted([*folder.glob("*.py"), *folder.glob("*.csv")]):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def fingerprint(settings: AlignSettings, input_digest: str, paths: Sequence[str]) -> str:
    payload = json.dumps(
        {"settings": settings.output_key(), "input": input_digest, "paths": list(paths), "code": _code_digest()},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _format_float(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _record_row(record: AlignmentRecord) -> dict[str, str]:
    return {
        "path": record.path,
        "status": record.status,
        "score": _format_float(record.score, 6),
        "box": "" if record.box is None else " ".join(f"{v:.2f}" for v in record.box),
        "landmarks": "" if record.landmarks is None else " ".join(f"{v:.2f}" for v in record.landmarks),
        "faces": str(record.faces),
        "chosen": "" if record.chosen is None else str(record.chosen),
        "message": record.message,
    }


def _crop_path(folder: Path, size: int, rel: str) -> Path:
    identity, name = rel.split("/", 1)
    return folder / str(size) / identity / f"{Path(name).stem}.png"


def _stop_on_error(settings: AlignSettings, record: AlignmentRecord) -> None:
    if settings.on_error == "stop":
        raise InputError(f"{record.message}. Replace or delete the file, or set align.on_error: record")
    log.warning("%s", record.message)


class Aligner:
    """Aligns one image folder into a state folder, batch by batch, and assembles the final output."""

    def __init__(
        self,
        settings: AlignSettings,
        detector: BatchMTCNN | None = None,
        frontal_options: FrontalOptions | None = None,
    ) -> None:
        if settings.method == "3d" and frontal_options is None:
            raise ValueError("align.method 3d needs frontal_options with a landmarker and a generic shape")
        self.settings = settings
        self._detector = detector
        self.frontal_options = frontal_options

    @property
    def detector(self) -> BatchMTCNN:
        if self._detector is None:
            settings = self.settings
            self._detector = BatchMTCNN(
                settings.min_face_size, settings.thresholds, settings.factor, device=settings.device
            )
        return self._detector

    def process(self, root: Path, work: Path, plan: Plan, progress: bool = True) -> list[AlignmentRecord]:
        """Align every planned batch not yet committed in `work`; return all records sorted by path."""
        settings = self.settings
        done_dir = work / "done"
        done_dir.mkdir(parents=True, exist_ok=True)
        records: list[AlignmentRecord] = list(plan.errors)
        for record in plan.errors:
            _stop_on_error(settings, record)

        pending = []
        for index, paths in enumerate(plan.batches):
            committed = done_dir / f"{index:06d}.json"
            if committed.is_file():
                with open(committed, encoding="utf-8") as handle:
                    records.extend(AlignmentRecord(**r) for r in json.load(handle))
            else:
                pending.append((index, paths))
        if len(pending) < len(plan.batches):
            done = len(plan.batches) - len(pending)
            log.info("resuming: %d of %d batches already done in %s", done, len(plan.batches), work)

        loader = DataLoader(
            _BatchDecoder(root, pending),
            batch_size=None,
            collate_fn=_unbatched,
            num_workers=settings.workers,
            worker_init_fn=_worker_init if settings.workers else None,
            prefetch_factor=2 if settings.workers else None,
        )
        total = sum(len(p) for _, p in pending)
        bar = tqdm(total=total, unit="img", desc="align", disable=not progress, smoothing=0.1)
        # PNG encoding runs in threads and overlaps the next batch's detection: with Pillow 13, a Python loop kept
        # 82% of its speed while another thread encoded PNGs, so the compression runs outside the GIL.
        # A batch is committed only once all its files are written.
        unfinished: tuple[int, list[AlignmentRecord], list[Future]] | None = None

        def commit(index: int, batch_records: list[AlignmentRecord], writes: list[Future]) -> None:
            for write in writes:
                write.result()
            atomic.write_json(done_dir / f"{index:06d}.json", [asdict(r) for r in batch_records])
            records.extend(batch_records)
            bar.update(len(batch_records))

        with bar, ThreadPoolExecutor(max_workers=max(1, settings.workers)) as writer:
            for index, decoded, errors in loader:
                batch_records = [AlignmentRecord(path=rel, status=ERROR, message=msg) for rel, msg in errors]
                for record in batch_records:
                    _stop_on_error(settings, record)
                aligned, writes = self._align_decoded(decoded, work, writer)
                batch_records.extend(aligned)
                if unfinished is not None:
                    commit(*unfinished)
                unfinished = (index, batch_records, writes)
            if unfinished is not None:
                commit(*unfinished)
        records.sort(key=lambda r: r.path)
        return records

    def _align_decoded(
        self, decoded: list[tuple[str, np.ndarray]], work: Path, writer: ThreadPoolExecutor
    ) -> tuple[list[AlignmentRecord], list[Future]]:
        """Detect and align decoded images; return their records and the PNG writes submitted to `writer`."""
        settings = self.settings
        # A header can disagree with the decoded pixels (rare); such images form their own sub-batch.
        by_shape: dict[tuple[int, ...], list[tuple[str, np.ndarray]]] = {}
        for rel, pixels in decoded:
            by_shape.setdefault(pixels.shape, []).append((rel, pixels))
        records, writes = [], []
        for members in by_shape.values():
            paths = [rel for rel, _ in members]
            images = torch.from_numpy(np.stack([pixels for _, pixels in members]))
            detections = self.detector.detect(images)
            batch_records, crops = align_batch(
                images.to(self.detector.device),
                detections,
                paths,
                sizes=settings.sizes,
                select=settings.select,
                margin=settings.margin,
                fallback_fraction=settings.fallback_fraction,
                method=settings.method,
                frontal_options=self.frontal_options,
            )
            for size, arrays in crops.items():
                for rel, array in zip(paths, arrays, strict=True):
                    writes.append(writer.submit(_write_png, _crop_path(work / "crops", size, rel), array))
            records.extend(batch_records)
        return records, writes


def _write_png(target: Path, array: np.ndarray) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # zlib level 1 wrote 152 px LFW crops 3.7x faster than PIL's default 6, with files 10% larger.
    Image.fromarray(array, mode="RGB").save(target, format="PNG", compress_level=1)


def summarize(records: Sequence[AlignmentRecord]) -> dict[str, float]:
    """Return the counts and rates of the report."""
    total = len(records)
    statuses = (ALIGNED, FALLBACK, FALLBACK_2D, ERROR)
    counts = {status: sum(r.status == status for r in records) for status in statuses}
    multi = sum(r.faces > 1 for r in records)
    rate = (lambda n: n / total) if total else (lambda n: 0.0)
    return {
        "images": total,
        "aligned": counts[ALIGNED],
        "fallback": counts[FALLBACK],
        "fallback_2d": counts[FALLBACK_2D],
        "errors": counts[ERROR],
        "multiple_faces": multi,
        "aligned_rate": rate(counts[ALIGNED]),
        "fallback_rate": rate(counts[FALLBACK]),
        "fallback_2d_rate": rate(counts[FALLBACK_2D]),
        "error_rate": rate(counts[ERROR]),
    }


def _link_tree(source: Path, target: Path) -> None:
    """Mirror source into target with hard links (copies where the file system has none)."""
    for dirpath, _dirnames, filenames in os.walk(source):
        rel = Path(dirpath).relative_to(source)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames:
            try:
                os.link(Path(dirpath) / name, target / rel / name)
            except OSError:
                shutil.copy2(Path(dirpath) / name, target / rel / name)


def write_output(
    out: Path,
    work: Path,
    records: Sequence[AlignmentRecord],
    settings: AlignSettings,
    protocol_source: Path | None,
    extra: dict | None = None,
) -> dict[str, float]:
    """Assemble the final folder from the state folder: crops, report.csv, report.json, protocol/, manifest."""
    summary = summarize(records)
    with atomic.atomic_dir(out) as tmp:
        for size in settings.sizes:
            crops = work / "crops" / str(size)
            if crops.is_dir():
                _link_tree(crops, tmp / str(size))
            else:
                (tmp / str(size)).mkdir()
        with open(tmp / "report.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(_record_row(r) for r in records)
        atomic.write_json(tmp / "report.json", {**summary, "sizes": list(settings.sizes), **(extra or {})})
        if protocol_source is not None:
            (tmp / "protocol").mkdir()
            for name in LFW_PROTOCOL_FILES:
                src = protocol_source / name
                if not src.is_file():
                    raise InputError(f"{src} is missing: the LFW download must include the protocol file {name}")
                shutil.copyfile(src, tmp / "protocol" / name)
        manifest.write(tmp)
    return summary


def align_folder(
    raw: Path,
    out: Path,
    settings: AlignSettings,
    *,
    state: Path,
    input_digest: str,
    protocol: bool = False,
    progress: bool = True,
    detector: BatchMTCNN | None = None,
    landmarker: mesh.Landmarker | None = None,
    mesh_python: Path | None = None,
) -> dict[str, float]:
    """Align every image of `raw` into `out`; return the summary counts and rates.

    `state` is the parent of the resumable work folders; `input_digest` identifies the input data (its
    manifest digest). With `protocol`, the LFW protocol files at the top of `raw` are copied to `out/protocol`.
    For align.method 3d, `landmarker` provides the dense landmarks; without one, MediaPipe's face mesh is
    started under `mesh_python` (default: `mesh.frontalize_python` of the current folder) before any image
    is read, and an InputError names the install command when it cannot start.
    """
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        frontal_options = None
        if settings.method == "3d":
            frontal_options = _frontal_options(settings, landmarker, mesh_python, stack)
        root = image_root(raw)
        paths = list_images(root)
        if settings.subset == "pairs" and protocol:
            paths = pair_images(raw, paths)
        plan = plan_batches(root, paths, settings.batch_size)
        key = fingerprint(settings, input_digest, paths)
        work = state / f"{out.name}-{key[:16]}"
        work.mkdir(parents=True, exist_ok=True)
        log.info(
            "aligning %d images of %s with method %s in %d batches; work folder %s",
            plan.count, root, settings.method, len(plan.batches), work,
        )
        records = Aligner(settings, detector, frontal_options).process(root, work, plan, progress=progress)
    seconds = time.perf_counter() - started
    summary = write_output(out, work, records, settings, raw if protocol else None, extra={"method": settings.method})
    shutil.rmtree(work, ignore_errors=True)
    summary["seconds"] = seconds
    summary["images_per_second"] = plan.count / seconds if seconds > 0 else 0.0
    return summary


def _frontal_options(
    settings: AlignSettings,
    landmarker: mesh.Landmarker | None,
    mesh_python: Path | None,
    stack: contextlib.ExitStack,
) -> FrontalOptions:
    """Load the generic shape and start the face mesh unless a landmarker is given; `stack` closes the mesh."""
    try:
        shape = frontal.load_shape()
    except FileNotFoundError as err:
        raise InputError(str(err)) from err
    if landmarker is None:
        python = mesh_python or mesh.frontalize_python(Path.cwd())
        landmarker = stack.enter_context(mesh.MeshLandmarker(python, settings.mesh_confidence))
    return FrontalOptions(
        landmarker=landmarker,
        shape=shape,
        residuals=settings.residuals,
        mirror=settings.mirror,
        crop_scale=settings.crop_scale,
        mesh_size=settings.mesh_size,
    )
