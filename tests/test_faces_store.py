"""The aligned-crop store: round trip, size choice, invalid stores, and training data equal to decoded PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnrepro.errors import InputError
from cnnrepro.faces import store
from cnnrepro.training import data


def _rows(count: int) -> list[store.IndexRow]:
    return [store.IndexRow(f"id{i % 3}/img{i}", f"id{i % 3}", "aligned") for i in range(count)]


def _pixels(count: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)


def test_store_round_trip(tmp_path):
    rows = _rows(7)
    pixels = _pixels(7, 16)
    store.write(tmp_path, rows, {16: pixels, 8: pixels[:, ::2, ::2].copy()})
    crops = store.AlignedCrops(tmp_path, 16, "align@faces")
    assert crops.rows == rows, "index rows differ after the round trip"
    assert np.array_equal(crops.images, pixels), "crops differ after the round trip"
    assert crops.row("id1/img4") == 4, "row of a stored key"
    assert crops.row("id1/img5") is None, "a key not stored has no row"
    groups = dict(crops.by_identity())
    assert groups == {"id0": [0, 3, 6], "id1": [1, 4], "id2": [2, 5]}, f"identity groups {groups}"


def test_store_picks_size(tmp_path):
    rows = _rows(2)
    store.write(tmp_path, rows, {16: _pixels(2, 16), 32: _pixels(2, 32)})
    assert store.pick_size(tmp_path, 20, "align@lfw") == 32, "smallest stored size at least the input size"
    assert store.pick_size(tmp_path, 16, "align@lfw") == 16, "an exact size is picked"
    assert store.pick_size(tmp_path, 64, "align@lfw") == 32, "the largest size when none is large enough"
    with pytest.raises(InputError, match="align@lfw"):
        store.pick_size(tmp_path / "none", 16, "align@lfw")


def test_store_rejects_mismatched_array(tmp_path):
    store.write(tmp_path, _rows(3), {16: _pixels(3, 16)})
    np.save(tmp_path / store.crops_name(16), _pixels(2, 16))
    with pytest.raises(InputError, match=r"crops-16\.npy.*\(3, 16, 16, 3\)"):
        store.AlignedCrops(tmp_path, 16, "align@faces")
    (tmp_path / store.INDEX).unlink()
    with pytest.raises(InputError, match=r"crops\.csv not found.*align@faces"):
        store.AlignedCrops(tmp_path, 16, "align@faces")


def test_faces_store_equals_decoded_pngs(tmp_path):
    # The training data built from the array store must equal what decoding one PNG per crop gave.
    rows = _rows(6)
    pixels = _pixels(6, 40, seed=3)
    store.write(tmp_path / "aligned", rows, {40: pixels})
    built = data.faces_store(tmp_path / "aligned", 28, tmp_path / "cache", "digest")

    for i, row in enumerate(rows):
        Image.fromarray(pixels[i]).save(tmp_path / f"{i}.png")
    order = [i for _, members in store.AlignedCrops(tmp_path / "aligned", 40, "align").by_identity() for i in members]
    for position, i in enumerate(order):
        expected = data._decode(tmp_path / f"{i}.png", 28).numpy()
        assert np.array_equal(built.images[position], expected), f"crop {rows[i].key} differs from its decoded PNG"
        assert built.classes[built.labels[position]] == rows[i].identity, f"label of {rows[i].key}"
