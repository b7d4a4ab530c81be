"""The align stage on real LFW and ORL files: report counts, errors, resuming after SIGKILL, batch sizes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from cnnrepro import manifest, params
from cnnrepro.data import packed
from cnnrepro.errors import InputError
from cnnrepro.faces.runner import LFW_PROTOCOL_FILES, AlignSettings, align_folder
from cnnrepro.faces.store import AlignedCrops

REPO = Path(__file__).resolve().parents[1]
SETTINGS = AlignSettings(sizes=(64, 32), batch_size=4, workers=0, device="cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _lfw_subset(shared_data: Path, target: Path, count: int) -> Path:
    """Copy the first `count` LFW images (sorted by name) and the protocol files into an LFW raw layout."""
    source = shared_data / "lfw"
    for file in sorted((source / "lfw-deepfunneled").glob("*/*.jpg"))[:count]:
        folder = target / "images" / file.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, folder / file.name)
    for name in LFW_PROTOCOL_FILES:
        shutil.copyfile(source / name, target / name)
    manifest.write(target)
    return target


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _report(folder: Path) -> list[dict[str, str]]:
    with open(folder / "report.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_corrupt_and_greyscale_files(shared_data, tmp_path):
    raw = tmp_path / "raw"
    for person, number in (("s1", 1), ("s1", 2), ("s2", 1)):
        (raw / person).mkdir(parents=True, exist_ok=True)
        source = shared_data / "orl-faces" / "orl_faces" / person / f"{number}.pgm"
        shutil.copyfile(source, raw / person / f"{number}.pgm")
    (raw / "broken").mkdir()
    jpeg = next((shared_data / "lfw" / "lfw-deepfunneled" / "Aaron_Eckhart").glob("*.jpg")).read_bytes()
    (raw / "broken" / "truncated.jpg").write_bytes(jpeg[:3000])
    (raw / "broken" / "text.jpg").write_text("not an image\n")

    out = tmp_path / "aligned"
    summary = align_folder(raw, out, replace(SETTINGS, workers=1), state=tmp_path / "state", input_digest="x",
                           progress=False)
    rows = {row["path"]: row for row in _report(out)}
    crops = AlignedCrops(out, 64, "align")
    assert len(crops) == 3, f"the store holds {len(crops)} crops for 3 readable files"
    assert len(rows) == 5, f"report has {len(rows)} rows for 5 files: {sorted(rows)}"
    assert summary["errors"] == 2, f"summary counts {summary['errors']} errors, expected 2"
    for name in ("broken/truncated.jpg", "broken/text.jpg"):
        assert rows[name]["status"] == "error", f"{name}: status {rows[name]['status']}"
        assert name.split("/")[1] in rows[name]["message"], f"{name}: message {rows[name]['message']!r}"
        assert crops.row(name.rsplit(".", 1)[0]) is None, f"{name}: an unreadable file must not produce a crop"

    for name in ("s1/1.pgm", "s1/2.pgm", "s2/1.pgm"):
        status = rows[name]["status"]
        assert status in ("aligned", "fallback-center"), f"{name}: status {status}"
        row = crops.row(name.removesuffix(".pgm"))
        assert row is not None, f"{name}: no crop in the store"
        assert crops.rows[row].status == status, f"{name}: index status {crops.rows[row].status}, report {status}"
        assert crops.images[row].shape == (64, 64, 3), f"{name}: crop shape is {crops.images[row].shape}"
        assert crops.images[row].std() > 0, f"{name}: the crop is blank"

    with pytest.raises(InputError, match="truncated.jpg|text.jpg"):
        align_folder(raw, tmp_path / "stopped", replace(SETTINGS, on_error="stop"), state=tmp_path / "state",
                     input_digest="x", progress=False)
    assert not (tmp_path / "stopped").exists(), "a stopped run must leave no output folder"


def test_batch_sizes_give_equal_output(shared_data, tmp_path):
    raw = _lfw_subset(shared_data, tmp_path / "raw", 20)
    outputs = []
    for batch_size in (1, 16):
        out = tmp_path / f"out{batch_size}"
        align_folder(raw, out, replace(SETTINGS, batch_size=batch_size), state=tmp_path / "state",
                     input_digest="x", protocol=True, progress=False)
        outputs.append(_files(out))
    assert outputs[0].keys() == outputs[1].keys(), "batch sizes 1 and 16 wrote different file sets"
    differing = [name for name in outputs[0] if outputs[0][name] != outputs[1][name]]
    assert not differing, f"batch sizes 1 and 16 differ in {differing[:5]}"


def test_packed_tar_gives_folder_output(shared_data, tmp_path):
    raw = _lfw_subset(shared_data, tmp_path / "raw", 12)
    align_folder(raw, tmp_path / "from-folder", SETTINGS, state=tmp_path / "state", input_digest="x",
                 protocol=True, progress=False)
    packed.pack_folder(raw / "images", raw / packed.PACKED_IMAGES)
    shutil.rmtree(raw / "images")
    align_folder(raw, tmp_path / "from-tar", SETTINGS, state=tmp_path / "state", input_digest="x",
                 protocol=True, progress=False)
    from_folder, from_tar = _files(tmp_path / "from-folder"), _files(tmp_path / "from-tar")
    assert from_folder.keys() == from_tar.keys(), "the tar and the folder gave different file sets"
    differing = [name for name in from_folder if from_folder[name] != from_tar[name]]
    assert not differing, f"the tar and the folder gave different files: {differing}"


KILLING_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from dataclasses import replace
    from cnnrepro.faces import runner

    saves = 0
    original = runner.np.save

    def save_then_die(path, array):
        global saves
        saves += 1
        original(path, array)
        if saves == 5:
            # Two sizes a batch: the third batch has written one of its two crop arrays and is not committed.
            os.kill(os.getpid(), signal.SIGKILL)

    runner.np.save = save_then_die
    settings = runner.AlignSettings(sizes=(64, 32), batch_size=4, workers=0, device="cpu")
    runner.align_folder(Path(sys.argv[1]), Path(sys.argv[2]), settings, state=Path(sys.argv[3]),
                        input_digest="x", progress=False)
    """
)


def test_resume_after_sigkill(shared_data, tmp_path):
    raw = _lfw_subset(shared_data, tmp_path / "raw", 16)
    out, state = tmp_path / "out", tmp_path / "state"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLING_RUN, str(raw), str(out), str(state)],
                            capture_output=True, text=True, env=env)
    assert killed.returncode == -signal.SIGKILL, f"the run was not killed: {killed.returncode} {killed.stderr[-500:]}"
    assert not out.exists(), "a killed run must not leave the output folder"
    committed = sorted(p.name for p in state.glob("*/done/*.json"))
    assert committed == ["000000.json", "000001.json"], f"expected two batches committed before the kill: {committed}"

    summary = align_folder(raw, out, SETTINGS, state=state, input_digest="x", progress=False)
    fresh = tmp_path / "fresh"
    align_folder(raw, fresh, SETTINGS, state=tmp_path / "fresh-state", input_digest="x", progress=False)
    assert summary["images"] == 16, f"resumed run reports {summary['images']} images"
    assert _files(out) == _files(fresh), "resumed output differs from an uninterrupted run"
    assert not any(state.iterdir()), f"work folders left behind: {list(state.iterdir())}"


def _project(tmp_path: Path, overrides: dict) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copyfile(REPO / "dvc.yaml", project / "dvc.yaml")
    data = params.read_yaml(REPO / "params.yaml")
    data["align"].update(overrides)
    (project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return project


def test_stage_end_to_end_on_lfw(shared_data, tmp_path, mlflow_uri):
    project = _project(
        tmp_path, {"sizes": [152, 64], "batch_size": 16, "workers": 1, "device": "cpu", "subset": "all"}
    )
    raw = project / "data" / "raw" / "lfw"
    _lfw_subset(shared_data, raw, 49)
    # One unreadable file is reported, not dropped.
    (raw / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0002.jpg").write_bytes(b"\xff\xd8 truncated")
    manifest.write(raw)

    env = {**os.environ, "CNNREPRO_ROOT": str(project), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "pipeline.align", "lfw"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"stage failed ({result.returncode}): {result.stderr[-2000:]}"
    assert "img/s" in result.stderr, "no progress bar with images per second on stderr"

    out = project / "data" / "aligned" / "lfw"
    rows = _report(out)
    report = json.loads((out / "report.json").read_text())
    assert len(rows) == 50, f"report.csv has {len(rows)} rows for 50 images"
    assert report["images"] == 50, f"report.json counts {report['images']} images"
    assert report["errors"] == 1, f"report.json counts {report['errors']} errors"
    assert report["aligned"] + report["fallback"] == 49, f"report.json counts {report}"
    assert report["aligned"] >= 45, f"only {report['aligned']} of 49 LFW images aligned"
    for size in (152, 64):
        crops = AlignedCrops(out, size, "align@lfw")
        assert len(crops) == 49, f"{len(crops)} crops of size {size}, expected 49"
        assert crops.row("Aaron_Eckhart/Aaron_Eckhart_0002") is None, "the unreadable image has a crop"
    for name in LFW_PROTOCOL_FILES:
        assert (out / "protocol" / name).read_bytes() == (raw / name).read_bytes(), f"protocol/{name} differs"
    recorded = json.loads((out / "manifest.json").read_text())
    rebuilt = manifest.build(out)
    assert recorded["digest"] == rebuilt["digest"], "manifest.json does not match the folder's files"
    # One crop array per size, crops.csv, the protocol files, report.csv and report.json.
    expected_count = 2 + 1 + len(LFW_PROTOCOL_FILES) + 2
    assert recorded["count"] == expected_count, f"manifest lists {recorded['count']} files, expected {expected_count}"
    metrics = json.loads((project / "metrics" / "align" / "lfw.json").read_text())
    assert metrics["images"] == 50, f"metrics file: {metrics}"
    assert metrics["errors"] == 1, f"metrics file: {metrics}"
    assert metrics["images_per_second"] > 0, f"metrics file: {metrics}"


def test_invalid_select_is_named(tmp_path):
    data = params.read_yaml(REPO / "params.yaml")
    data["align"]["select"] = "biggest"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(params.ParamsError, match=r"align.select = 'biggest'.*central"):
        params.load(["align"], path)


def test_pairs_subset_keeps_named_images(tmp_path):
    from cnnrepro.faces.runner import pair_images

    raw = tmp_path / "lfw"
    raw.mkdir()
    (raw / "pairs.txt").write_text("1\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\n")
    (raw / "pairsDevTrain.txt").write_text("1\nCid\t1\t2\nCid\t1\tAnn\t3\n")
    (raw / "pairsDevTest.txt").write_text("1\nAnn\t1\t2\nAnn\t2\tBob\t1\n")
    listed = ["Ann/Ann_0001.jpg", "Ann/Ann_0002.jpg", "Ann/Ann_0003.jpg", "Ann/Ann_0004.jpg",
              "Bob/Bob_0001.jpg", "Cid/Cid_0001.jpg", "Cid/Cid_0002.jpg", "Dan/Dan_0001.jpg"]
    kept = pair_images(raw, listed)
    assert kept == listed[:3] + listed[4:7], f"only images named in the pairs files must stay: {kept}"
