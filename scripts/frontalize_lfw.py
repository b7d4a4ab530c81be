"""Run the align stage's code with align.method none, 2d and 3d on LFW images and compare them.

The script copies the first image of each of the first `--people` LFW people into a temporary raw folder.
It aligns that folder with every method through `align_folder` (MTCNN, then the method). Per method it prints
the counts of the report, the seconds per image and, for 3d, the median camera-fit residual. With `--sheet`,
it also writes a PNG with one row of crops per method. It needs the frontalization environment
(./setup.sh --with-frontalize).

    PYTHONPATH=src python scripts/frontalize_lfw.py /path/to/lfw-deepfunneled --people 100 --sheet sheet.png
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnrepro import manifest
from cnnrepro.faces.mesh import frontalize_python
from cnnrepro.faces.runner import AlignSettings, align_folder

METHODS = ("none", "2d", "3d")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lfw", type=Path, help="folder of <Name>/<Name>_NNNN.jpg")
    parser.add_argument("--people", type=int, default=100, help="people to take, one image each (default 100)")
    parser.add_argument("--size", type=int, default=152, help="crop side in pixels (default 152)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--sheet", type=Path, help="write a PNG of the first 12 crops per method here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as temp:
        raw = Path(temp) / "raw"
        people = sorted(p for p in args.lfw.iterdir() if p.is_dir())[: args.people]
        for person in people:
            first = sorted(person.glob("*.jpg"))[0]
            (raw / person.name).mkdir(parents=True)
            shutil.copyfile(first, raw / person.name / first.name)
        manifest.write(raw)

        base = AlignSettings(sizes=(args.size,), workers=0, device="cpu")
        rows = []
        for method in METHODS:
            out = Path(temp) / method
            started = time.perf_counter()
            summary = align_folder(raw, out, replace(base, method=method), state=Path(temp) / "state",
                                   input_digest=method, progress=False, mesh_python=frontalize_python(Path.cwd()))
            seconds = time.perf_counter() - started
            with open(out / "report.csv", newline="", encoding="utf-8") as handle:
                report = list(csv.DictReader(handle))
            rms = [float(m.group(1)) for r in report if (m := re.search(r"rms ([0-9.]+) px", r["message"]))]
            print(
                f"{method:>4}: {int(summary['images'])} images, {int(summary['aligned'])} aligned, "
                f"{int(summary['fallback_2d'])} fell back to 2d, {int(summary['fallback'])} without a face, "
                f"{seconds / summary['images'] * 1000:.0f} ms per image"
                + (f", median camera-fit rms {statistics.median(rms):.2f} px" if rms else "")
            )
            crops = sorted((out / str(args.size)).rglob("*.png"))[:12]
            rows.append(np.concatenate([np.asarray(Image.open(c)) for c in crops], axis=1))
        if args.sheet:
            Image.fromarray(np.concatenate(rows, axis=0)).save(args.sheet)
            print(f"wrote {args.sheet}: rows {', '.join(METHODS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
