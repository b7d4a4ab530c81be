"""MediaPipe face-mesh landmark server, run as a script by the Python of the optional frontalization environment.

MediaPipe 0.10.14 needs protobuf < 5: its Python code calls `SymbolDatabase.GetPrototype` and
`FieldDescriptor.label`, which protobuf 7 (the version MLflow needs here) no longer has. So it runs in its own
virtual environment (`./setup.sh --with-frontalize`), and the align stage talks to this script over pipes.
The script imports only numpy, struct and MediaPipe, never cnnrepro, so that it runs in that environment.

Protocol on stdin/stdout, all integers little-endian int64:
- after loading the model the server writes one integer, the landmark count (468);
- a request is four integers (n, height, width, 3) followed by n * height * width * 3 bytes of RGB uint8;
  n = 0 ends the server;
- the reply is n bytes (1: a face was found) followed by n * 468 * 3 float32 values (x, y, z) in the
  pixel units of the request images, with z scaled like x. Rows without a face are zeros.
"""

from __future__ import annotations

import os
import struct
import sys

import numpy as np

LANDMARKS = 468


def read_exact(stream, count: int, source: str = "input") -> bytes:
    """Read exactly `count` bytes from `stream`; EOFError names `source` when it ends early."""
    data = bytearray()
    while len(data) < count:
        chunk = stream.read(count - len(data))
        if not chunk:
            raise EOFError(f"{source} ended after {len(data)} of {count} bytes")
        data.extend(chunk)
    return bytes(data)


def serve(detect, source, output) -> int:
    """Serve requests from `source` with replies on `output` until n = 0; detect(image) returns (468, 3) or None."""
    output.write(struct.pack("<q", LANDMARKS))
    output.flush()
    while True:
        count, height, width, channels = struct.unpack("<4q", read_exact(source, 32))
        if count == 0:
            return 0
        pixels = np.frombuffer(read_exact(source, count * height * width * channels), dtype=np.uint8)
        images = pixels.reshape(count, height, width, channels)
        found = np.zeros(count, dtype=np.uint8)
        points = np.zeros((count, LANDMARKS, 3), dtype=np.float32)
        for i in range(count):
            marks = detect(np.ascontiguousarray(images[i]))
            if marks is not None:
                points[i] = marks
                found[i] = 1
        output.write(found.tobytes())
        output.write(points.tobytes())
        output.flush()


def main(argv: list[str]) -> int:
    min_confidence = float(argv[0]) if argv else 0.5
    # Native libraries may print to file descriptor 1. Keep a private copy for the protocol and point 1 at
    # stderr, so that such output cannot corrupt a reply.
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    output = os.fdopen(protocol_fd, "wb")

    from mediapipe.python.solutions import face_mesh

    mesh = face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=min_confidence
    )

    def detect(image: np.ndarray) -> np.ndarray | None:
        result = mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        height, width = image.shape[:2]
        # MediaPipe returns x and z as fractions of the image width and y as a fraction of its height.
        return np.array([(p.x * width, p.y * height, p.z * width) for p in result.multi_face_landmarks[0].landmark])

    return serve(detect, sys.stdin.buffer, output)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
