"""load_rgb on real images and on the awkward files real collections contain."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnrepro.data.images import MAX_PIXELS, load_rgb
from cnnrepro.errors import InputError


def _greyscale_jpeg(shared_data):
    for path in sorted((shared_data / "imagenette" / "val").rglob("*.JPEG")):
        with Image.open(path) as image:
            if image.mode == "L":
                return path
    raise AssertionError("Imagenette holds greyscale JPEGs")


def test_load_rgb_greyscale_jpeg(shared_data):
    path = _greyscale_jpeg(shared_data)
    image = load_rgb(path)
    assert image.mode == "RGB", f"{path} decoded as {image.mode}"
    pixels = np.asarray(image)
    assert np.array_equal(pixels[..., 0], pixels[..., 2]), "grey becomes equal channels"


def test_load_rgb_pgm(shared_data):
    image = load_rgb(shared_data / "orl-faces" / "orl_faces" / "s1" / "1.pgm")
    assert image.mode == "RGB", image.mode
    assert image.size == (92, 112), image.size


def test_load_rgb_cmyk(shared_data, tmp_path):
    source = next((shared_data / "imagenette" / "val" / "n01440764").glob("*.JPEG"))
    path = tmp_path / "cmyk.JPEG"
    with Image.open(source) as image:
        image.convert("CMYK").save(path, "JPEG")
    with Image.open(path) as check:
        assert check.mode == "CMYK", "the test file is CMYK"
    rgb = load_rgb(path)
    assert rgb.mode == "RGB", rgb.mode
    reference = np.asarray(load_rgb(source), dtype=np.float64)
    assert np.abs(np.asarray(rgb, dtype=np.float64) - reference).mean() < 20, "colours survive CMYK"


def test_load_rgb_png_named_jpeg(shared_data, tmp_path):
    source = next((shared_data / "imagenette" / "val" / "n01440764").glob("*.JPEG"))
    path = tmp_path / "really_png.JPEG"
    with Image.open(source) as image:
        image.save(path, "PNG")
    assert np.array_equal(np.asarray(load_rgb(path)), np.asarray(load_rgb(source))), "PNG content decodes"


def test_load_rgb_16bit_png(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    pixels = np.asarray(load_rgb(path))
    assert pixels.max() == 255, f"full 16-bit range maps to 255, max {pixels.max()}"
    assert pixels[32, 0, 0] == values[32, 0] // 257, "values are scaled, not clipped"


def test_load_rgb_decompression_bomb(tmp_path):
    # A valid PNG header claiming 20000x20000 pixels, followed by a tiny compressed body.
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    body = chunk(b"IDAT", zlib.compress(b"\0" * 100))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    assert 20000 * 20000 > MAX_PIXELS, "the test image exceeds the limit"
    with pytest.raises(InputError, match="bomb.png") as info:
        load_rgb(path)
    assert "decompression bomb" in str(info.value), str(info.value)


@pytest.mark.parametrize("case", ["truncated", "empty", "text"])
def test_load_rgb_broken_files(shared_data, tmp_path, case):
    source = next((shared_data / "imagenette" / "val" / "n01440764").glob("*.JPEG"))
    path = tmp_path / f"{case}.JPEG"
    if case == "truncated":
        data = source.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif case == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("not an image\n")
    with pytest.raises(InputError, match=f"{case}.JPEG"):
        load_rgb(path)
