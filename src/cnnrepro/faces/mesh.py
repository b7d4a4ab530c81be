"""Dense face landmarks from MediaPipe's face mesh (468 points), computed in a separate Python process.

MediaPipe is an optional dependency with its own virtual environment (see `mesh_worker`), so this module
starts `mesh_worker.py` under that environment's Python and exchanges images and landmarks over pipes. This
is the only part of the 3D alignment that needs MediaPipe; `frontal` takes the landmarks from any callable
with the signature of `MeshLandmarker.__call__`.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cnnrepro.errors import InputError
from cnnrepro.faces.mesh_worker import read_exact

log = logging.getLogger(__name__)

LANDMARKS = 468
INSTALL_COMMAND = "./setup.sh --with-frontalize"
PYTHON_VARIABLE = "CNNREPRO_FRONTALIZE_PYTHON"
WORKER = Path(__file__).with_name("mesh_worker.py")

# A landmark function takes (n, h, w, 3) uint8 images. It returns a boolean "face found" array (n,) and the
# landmarks (n, 468, 3) in pixels of those images: x, y, and the depth z in units of x, growing away from the camera.
Landmarker = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def frontalize_python(root: Path) -> Path:
    """Return the Python of the frontalization environment: $CNNREPRO_FRONTALIZE_PYTHON, else .venv-frontalize."""
    configured = os.environ.get(PYTHON_VARIABLE)
    return Path(configured) if configured else root / ".venv-frontalize" / "bin" / "python"


class MeshLandmarker:
    """A running `mesh_worker.py` process; call it on batches of images and close it when done."""

    def __init__(self, python: Path, min_confidence: float = 0.5, worker: Path = WORKER) -> None:
        if not Path(python).is_file():
            raise InputError(
                f"align.method 3d needs MediaPipe in its own environment, and {python} does not exist. "
                f"Install it with `{INSTALL_COMMAND}`, or set {PYTHON_VARIABLE} to a Python that has "
                f"mediapipe 0.10.14 with protobuf < 5"
            )
        self.python = Path(python)
        # stderr goes to a file so that a full pipe cannot block the worker, and so that a start-up failure
        # can be quoted in the error.
        self._stderr = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                [str(self.python), str(worker), str(min_confidence)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
            )
        except OSError as err:
            self._stderr.close()
            raise InputError(
                f"failed to run {python} for MediaPipe's face mesh ({err}). Install the environment with "
                f"`{INSTALL_COMMAND}`, or set {PYTHON_VARIABLE} to a Python that has mediapipe 0.10.14"
            ) from err
        # NOTE: this read has no timeout, so a worker that hangs while loading MediaPipe blocks the stage.
        try:
            ready = self._read(8)
        except EOFError:
            self._process.wait()
            detail = self._stderr_tail()
            self.close()
            raise InputError(
                f"MediaPipe's face mesh failed to start under {python} (exit code {self._process.returncode}): "
                f"{detail}. Install the environment with `{INSTALL_COMMAND}`, or point {PYTHON_VARIABLE} at a "
                f"Python that has mediapipe 0.10.14 with protobuf < 5"
            ) from None
        (count,) = struct.unpack("<q", ready)
        if count != LANDMARKS:
            self.close()
            raise InputError(f"the face-mesh worker under {python} reported {count} landmarks, expected {LANDMARKS}")
        log.info("MediaPipe face mesh started under %s (pid %d)", python, self._process.pid)

    def _read(self, count: int) -> bytes:
        return read_exact(self._process.stdout, count, "the face-mesh worker's output")

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:]) if lines else "no error output"

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected RGB images shaped (n, h, w, 3), got {images.shape}")
        count = len(images)
        if count == 0:
            return np.zeros(0, dtype=bool), np.zeros((0, LANDMARKS, 3), dtype=np.float64)
        try:
            self._process.stdin.write(struct.pack("<4q", *images.shape))
            self._process.stdin.write(images.tobytes())
            self._process.stdin.flush()
            found = np.frombuffer(self._read(count), dtype=np.uint8).astype(bool)
            points = np.frombuffer(self._read(count * LANDMARKS * 3 * 4), dtype=np.float32)
        except (BrokenPipeError, EOFError) as err:
            raise RuntimeError(f"the face-mesh worker (pid {self._process.pid}) stopped: {self._stderr_tail()}") from err
        return found, points.reshape(count, LANDMARKS, 3).astype(np.float64)

    def close(self) -> None:
        """Ask the worker to exit, and end it if it does not within 10 s."""
        process = self._process
        if process.poll() is None:
            try:
                process.stdin.write(struct.pack("<4q", 0, 0, 0, 0))
                process.stdin.flush()
                process.stdin.close()
                process.wait(timeout=10)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> MeshLandmarker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
