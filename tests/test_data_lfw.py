"""LFW protocol readers on the real files, and their errors on damaged copies."""

from __future__ import annotations

import logging

import pytest

from cnnrepro.data import identity, lfw
from cnnrepro.errors import InputError


def test_pairs_view2_real(shared_data):
    folds = lfw.read_pairs(shared_data / "lfw" / "pairs.txt")
    assert len(folds) == 10, f"{len(folds)} folds"
    for index, fold in enumerate(folds):
        assert len(fold) == 600, f"fold {index} has {len(fold)} pairs"
        assert [p.same for p in fold] == [True] * 300 + [False] * 300, f"fold {index}: matched then mismatched"
        assert {p.fold for p in fold} == {index}, f"fold {index} numbering"
    first = folds[0][0]
    assert (first.name1, first.n1, first.n2) == ("Abel_Pacheco", 1, 4), f"first pair {first}"


def test_pairs_images_exist(shared_data):
    images = shared_data / "lfw" / "lfw-deepfunneled"
    for name in lfw.PAIRS_FILES:
        for fold in lfw.read_pairs(shared_data / "lfw" / name):
            for pair in fold:
                for person, number in ((pair.name1, pair.n1), (pair.name2, pair.n2)):
                    path = images / lfw.image_relpath(person, number)
                    assert path.is_file(), f"{name}: {path} is missing"


@pytest.mark.parametrize(("name", "count"), [("pairsDevTrain.txt", 2200), ("pairsDevTest.txt", 1000)])
def test_pairs_view1_real(shared_data, name, count):
    folds = lfw.read_pairs(shared_data / "lfw" / name)
    assert len(folds) == 1, f"{name}: {len(folds)} folds"
    assert len(folds[0]) == count, f"{name}: {len(folds[0])} pairs"
    assert sum(p.same for p in folds[0]) == count // 2, f"{name}: half the pairs are matched"


def test_people_real(shared_data):
    sets = lfw.read_people(shared_data / "lfw" / "people.txt")
    assert len(sets) == 10, f"{len(sets)} sets"
    pair_names = [
        {name for pair in fold for name in (pair.name1, pair.name2)}
        for fold in lfw.read_pairs(shared_data / "lfw" / "pairs.txt")
    ]
    for index, people in enumerate(sets):
        names = {name for name, _ in people}
        assert pair_names[index] <= names, f"fold {index} pairs use only people of set {index}"
    dev_train = lfw.read_people(shared_data / "lfw" / "peopleDevTrain.txt")
    assert len(dev_train) == 1, "peopleDevTrain.txt is one set"
    assert len(dev_train[0]) == 4038, f"{len(dev_train[0])} people"


def test_people_counts_match_images(shared_data):
    images = shared_data / "lfw" / "lfw-deepfunneled"
    for name, count in lfw.read_people(shared_data / "lfw" / "peopleDevTest.txt")[0][:200]:
        found = len(list((images / name).glob("*.jpg")))
        assert found == count, f"{name}: people file says {count} images, folder has {found}"


def test_image_relpath_padding():
    assert lfw.image_relpath("Zico", 3) == "Zico/Zico_0003.jpg", "four-digit padding"
    assert lfw.image_relpath("Zico", 12, ".png") == "Zico/Zico_0012.png", "extension"


def _damaged(shared_data, tmp_path, edit, name="pairs.txt"):
    lines = (shared_data / "lfw" / name).read_text().splitlines()
    edit(lines)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pairs_windows_line_endings(shared_data, tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_bytes((shared_data / "lfw" / "pairs.txt").read_bytes().replace(b"\n", b"\r\n"))
    assert lfw.read_pairs(path) == lfw.read_pairs(shared_data / "lfw" / "pairs.txt"), "CRLF reads the same"


def test_pairs_wrong_header_count(shared_data, tmp_path):
    path = _damaged(shared_data, tmp_path, lambda lines: lines.__setitem__(0, "10\t301"))
    with pytest.raises(InputError, match=r"line 1: .*\(6020 lines\).* 6000 pair lines"):
        lfw.read_pairs(path)


def test_pairs_five_fields(shared_data, tmp_path):
    path = _damaged(shared_data, tmp_path, lambda lines: lines.__setitem__(400, lines[400] + "\t7"))
    with pytest.raises(InputError, match="line 401: .* found 5 fields"):
        lfw.read_pairs(path)


def test_pairs_matched_line_in_mismatched_block(shared_data, tmp_path):
    path = _damaged(shared_data, tmp_path, lambda lines: lines.__setitem__(350, lines[5]))
    with pytest.raises(InputError, match="line 351: expected a mismatched pair"):
        lfw.read_pairs(path)


def test_pairs_non_integer_number(shared_data, tmp_path):
    path = _damaged(shared_data, tmp_path, lambda lines: lines.__setitem__(2, "Akhmed_Zakayev\t1\tthree"))
    with pytest.raises(InputError, match="line 3: image number 'three' is not an integer"):
        lfw.read_pairs(path)


def test_pairs_duplicates_reported(shared_data, tmp_path, caplog):
    path = _damaged(shared_data, tmp_path, lambda lines: lines.__setitem__(3, lines[2]))
    with caplog.at_level(logging.WARNING, logger="cnnrepro.data.lfw"):
        folds = lfw.read_pairs(path)
    assert len(folds) == 10, "duplicates do not stop the reader"
    assert "more than once" in caplog.text, caplog.text
    assert "[3, 4]" in caplog.text, caplog.text


def test_people_wrong_count(shared_data, tmp_path):
    path = _damaged(shared_data, tmp_path, lambda lines: lines.__setitem__(1, "602"), name="people.txt")
    with pytest.raises(InputError, match=r"people.txt, line 604: .* set of 602 people .*line 2"):
        lfw.read_people(path)


def test_identity_scan_orl(shared_data):
    items, names = identity.scan(shared_data / "orl-faces" / "orl_faces")
    assert len(names) == 40, f"{len(names)} identities"
    assert names == sorted(names), "identities sorted"
    assert len(items) == 400, f"{len(items)} images"
    for item in items:
        assert names[item.label] == item.path.parent.name, f"{item.path} labelled {names[item.label]}"


def test_identity_scan_skips_empty(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "1.jpg").write_bytes(b"x")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("no images")
    (tmp_path / "manifest.json").write_text("{}")
    items, names = identity.scan(tmp_path)
    assert names == ["b"], f"identities {names}"
    assert [i.label for i in items] == [0], "labels index the kept identities"


def test_identity_scan_nothing(tmp_path):
    with pytest.raises(InputError, match="no <identity>/<image> folders"):
        identity.scan(tmp_path)


def test_pairs_subset_keeps_fold_structure(shared_data, tmp_path):
    import shutil

    from cnnrepro.data import lfw as lfw_reader

    path = tmp_path / "pairs.txt"
    shutil.copy(shared_data / "lfw" / "pairs.txt", path)
    full = lfw_reader.read_pairs(path)
    assert lfw_reader.write_pairs_subset(path, 20) == 400, "10 folds x (20 matched + 20 mismatched) expected"
    cut = lfw_reader.read_pairs(path)
    assert len(cut) == 10, f"the subset must keep 10 folds, found {len(cut)}"
    for fold, (kept, original) in enumerate(zip(cut, full, strict=True)):
        assert kept[:20] == original[:20], f"fold {fold}: matched pairs must be the first 20 of the fold"
        assert kept[20:] == original[300:320], f"fold {fold}: mismatched pairs must be the first 20 of the fold"
