"""Damaged model files, data files and params given to the train, evaluate and align stages.

Each case must end in an error that names the damaged file or value, with exit code 1 (input) or 2 (params), no
traceback and no stage output. One unreadable image among readable ones must instead become an error row of the
align report.
The stages run in forked children (see stage_killer), which keeps each case to about a second.
"""

from __future__ import annotations

import collections
import pickle
import sys
from pathlib import Path

import pytest
import yaml

from cnnrepro import manifest

sys.path.insert(0, str(Path(__file__).parent))
import stage_killer  # noqa: E402
from test_faults_kill import CASES, _project  # noqa: E402


def _truncate(path: Path, size: int) -> Path:
    path.write_bytes(path.read_bytes()[:size])
    return path


def _pickled_object(root: Path) -> Path:
    """A model file that contains a pickled Python class instead of tensors, which weights_only loading rejects."""
    path = root / "models/lenet5/model.pt"
    path.write_bytes(pickle.dumps(collections.OrderedDict(state_dict=collections.Counter)))
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _missing(path: Path) -> Path:
    path.unlink()
    return path


def _batch_size_zero(root: Path) -> str:
    tree = yaml.safe_load((root / "params.yaml").read_text())
    tree["evaluate"]["mnist"]["batch_size"] = 0
    (root / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    return "evaluate.mnist.batch_size = 0"


def _unreadable_face(root: Path) -> str:
    (root / "data/raw/faces/s1/notes.pgm").write_text("not an image")
    manifest.write(root / "data/raw/faces")
    return "s1/notes.pgm"


def _no_faces(root: Path) -> Path:
    for image in (root / "data/raw/faces").rglob("*.pgm"):
        image.unlink()
    manifest.write(root / "data/raw/faces")
    return root / "data/raw/faces"


# (case id, stage case, damage(root) -> the text the message must contain, expected exit code, slow). The
# default run keeps three cheap cases; the slow run adds the rest.
FAULTS = [
    ("model-truncated", "evaluate", lambda r: _truncate(r / "models/lenet5/model.pt", 1000), 1, False),
    ("model-empty", "evaluate", lambda r: _empty(r / "models/lenet5/model.pt"), 1, True),
    ("model-pickled-class", "evaluate", _pickled_object, 1, True),
    ("model-manifest-missing", "evaluate", lambda r: _missing(r / "models/lenet5/manifest.json"), 1, False),
    ("mnist-truncated-eval", "evaluate", lambda r: _truncate(r / "data/raw/mnist/t10k-images-idx3-ubyte.gz", 5000), 1,
     True),
    ("mnist-truncated-train", "train", lambda r: _truncate(r / "data/raw/mnist/t10k-images-idx3-ubyte.gz", 5000), 1,
     True),
    ("mnist-labels-missing", "train", lambda r: _missing(r / "data/raw/mnist/t10k-labels-idx1-ubyte.gz").parent, 1,
     True),
    ("params-batch-size-zero", "evaluate", _batch_size_zero, 2, False),
    ("faces-none", "align", _no_faces, 1, True),
    ("face-unreadable", "align", _unreadable_face, 0, True),
]
PARAMETERS = [
    pytest.param(name, damage, code, id=case_id, marks=[pytest.mark.slow] if slow else [])
    for case_id, name, damage, code, slow in FAULTS
]


@pytest.mark.parametrize(("name", "damage", "expected_exit"), PARAMETERS)
def test_damaged_input_clear_error(name, damage, expected_exit, tmp_path, shared_data, mlflow_template,
                                   fault_record):
    case = CASES[name]
    root, env = _project(tmp_path / "project", name, shared_data, mlflow_template)
    named = str(damage(root))
    output = tmp_path / "output.txt"
    code, _ = stage_killer.run(case.module, list(case.argv), root, env, output_file=output)
    text = output.read_text()
    left = [out for out in case.outputs if (root / out).exists()]
    report = root / "data/aligned/faces/report.csv"
    recorded = report.is_file() and any(
        line.startswith(named + ",") and ",error," in line for line in report.read_text().splitlines()
    )
    traceback = "Traceback (most recent call last)" in text
    fault_record(kind="input", exit=code, traceback=traceback, names_input=named in text or recorded,
                 recorded=recorded, left_outputs=[] if expected_exit == 0 else left)

    assert code == expected_exit, f"{case.stage} exited with {code}, expected {expected_exit}:\n{text[-2000:]}"
    assert not traceback, f"{case.stage} printed a traceback:\n{text[-3000:]}"
    if expected_exit == 0:
        assert recorded, f"the unreadable image {named} has no error row in {report}"
    else:
        assert named in text, f"the message does not name {named}:\n{text[-2000:]}"
        assert left == [], f"a failed {case.stage} left outputs: {left}"
