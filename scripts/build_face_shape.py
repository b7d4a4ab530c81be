"""Build the generic 3D face shape for align.method 3d: the mean MediaPipe face mesh of LFW images.

MediaPipe 0.10.14's wheel ships the face-mesh model but not its canonical face model (the `face_geometry`
module and its canonical_face_model.obj are absent), so the generic shape is the mean of the landmarks that
the mesh fits to real faces:

1. run the face mesh on the first image of each of the first `--count` LFW people (sorted by name);
2. put every mesh into the frontal frame (`frontal.frontal_frame`: eye axis, forehead-chin axis, unit
   inter-ocular distance), then refine the mean by generalised Procrustes analysis: align each mesh to the
   mean with a 3D similarity and average again;
3. make the mean mirror-symmetric: pair each point with the nearest point of the mirrored mean and average
   the two, so that x = 0 is the mirror plane.

Run from the repository root with the frontalization environment installed (./setup.sh --with-frontalize):

    python scripts/build_face_shape.py /path/to/lfw-deepfunneled --count 500

It rewrites src/cnnrepro/faces/face_shape.csv.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from cnnrepro.faces import frontal
from cnnrepro.faces.imageio import load_rgb
from cnnrepro.faces.mesh import MeshLandmarker, frontalize_python

log = logging.getLogger("build_face_shape")


def first_images(folder: Path, count: int) -> list[Path]:
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    chosen = []
    for person in people:
        images = sorted(person.glob("*.jpg"))
        if images:
            chosen.append(images[0])
        if len(chosen) == count:
            break
    return chosen


def procrustes_mean(meshes: np.ndarray, rounds: int = 5) -> np.ndarray:
    """Return the mean of meshes (k, n, 3) after aligning each to the mean with a 3D similarity, repeatedly."""
    framed = np.stack([frontal.frontal_frame(m) for m in meshes])
    mean = framed.mean(axis=0)
    for _ in range(rounds):
        aligned = []
        for mesh in framed:
            scale, rotation, shift = frontal.similarity_3d(mesh, mean)
            aligned.append(scale * mesh @ rotation.T + shift)
        mean = frontal.frontal_frame(np.mean(aligned, axis=0))
    return mean


def symmetrize(mean: np.ndarray) -> np.ndarray:
    """Average each point with the mirror image of its mirror partner; fail if the pairing is not one-to-one."""
    mirrored = mean * np.array([-1.0, 1.0, 1.0])
    distances = np.linalg.norm(mean[:, None, :] - mirrored[None, :, :], axis=2)
    partner = distances.argmin(axis=1)
    if not np.array_equal(partner[partner], np.arange(len(mean))):
        raise SystemExit("the mirror pairing of the mean shape is not one-to-one; use more images")
    symmetric = (mean + mirrored[partner]) / 2
    symmetric[partner == np.arange(len(mean)), 0] = 0.0
    log.info("%d mirror pairs, %d points on the mirror plane", int((partner != np.arange(len(mean))).sum() // 2),
             int((partner == np.arange(len(mean))).sum()))
    return frontal.frontal_frame(symmetric)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lfw", type=Path, help="the lfw-deepfunneled (or lfw) folder of <Name>/<Name>_NNNN.jpg")
    parser.add_argument("--count", type=int, default=500, help="number of people, one image each (default 500)")
    parser.add_argument("--out", type=Path, default=frontal.SHAPE_FILE, help="CSV to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    paths = first_images(args.lfw, args.count)
    meshes = []
    with MeshLandmarker(frontalize_python(Path.cwd())) as landmarker:
        for path in paths:
            found, points = landmarker(load_rgb(path)[None])
            if found[0]:
                meshes.append(points[0])
    log.info("face mesh found in %d of %d images", len(meshes), len(paths))
    if len(meshes) < 10:
        raise SystemExit(f"only {len(meshes)} meshes found in {args.lfw}; check the folder")
    shape = symmetrize(procrustes_mean(np.stack(meshes)))
    frontal.save_shape(shape, args.out)
    log.info("wrote %s (%d points)", args.out, len(shape))
    return 0


if __name__ == "__main__":
    sys.exit(main())
