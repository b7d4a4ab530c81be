"""Claims: reading experiment commits from git, the queue status, the CLI and the report sections."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from cnnrepro import cli
from cnnrepro.claims import registry, runner, sweep
from cnnrepro.errors import InputError
from cnnrepro.report import build, render
from cnnrepro.report.claims import claim_sections

QUEUE_STATUS = """Task     Name                 Created    Status
66d2066  alexnet-base-s0      10:45 PM   Queued
342b974  alexnet-base-s0      10:45 PM   Success
7516bf0  alexnet-tanh-s0      10:45 PM   Running
9396c38  aux-heads-aux-s0     10:45 PM   Failed
1aadcdb  deepface-sub1-s0     10:46 PM   Failed
2bbdcdb  deepface-sub1-s0     10:47 PM   Success

Worker status: 1 active, 0 idle
"""


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@example.invalid", "PATH": "/usr/bin:/bin"})


def _repo(tmp_path, params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "baseline")
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()


def _experiment(root, baseline, name, params, files):
    """Commit `files` as DVC does for an experiment and point refs/exps/<baseline>/<name> at the commit."""
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", name)
    _git(root, "update-ref", f"refs/exps/{baseline[:2]}/{baseline[2:]}/{name}", "HEAD")
    _git(root, "reset", "-q", "--hard", baseline)


def test_queue_status_prefers_unfinished_task():
    states = sweep.parse_queue_status(QUEUE_STATUS)
    expected = {"alexnet-base-s0": "queued", "alexnet-tanh-s0": "running", "aux-heads-aux-s0": "failed",
                "deepface-sub1-s0": "success"}
    assert states == expected, f"states {states}"


def test_load_points_reads_experiment_files(tmp_path):
    claim = registry.get("aux-heads")
    # The workspace has a section the experiment's commit lacks (added later): the experiment still counts.
    params = {"profile": "quick", "train": {"googlenet": {"epochs": 10, "aux_heads": True, "seed": 0},
                                            "deepface": {"variant": "full"}}}
    baseline = _repo(tmp_path, params)
    run_params = {"profile": "quick", "train": {"googlenet": {"epochs": 5, "aux_heads": True, "seed": 0}}}
    metrics = {"top1_error_1crop": 0.5, "top5_error_1crop": 0.1}
    _experiment(tmp_path, baseline, "aux-heads-aux-s0", run_params,
                {"metrics/evaluate/googlenet-1.json": json.dumps(metrics)})
    wrong = {**run_params, "profile": "smoke"}
    _experiment(tmp_path, baseline, "aux-heads-no-aux-s0", wrong, {})

    points = {p.name: p for p in sweep.load_points(tmp_path, claim, (0,))}
    aux = points["aux-heads-aux-s0"]
    assert aux.rev is not None, "the experiment with matching params should be found"
    assert aux.files["metrics/evaluate/googlenet-1.json"] == metrics, f"files {aux.files}"
    assert points["aux-heads-no-aux-s0"].rev is None, "an experiment run with another profile must not count"


def test_read_file_parses_csv(tmp_path):
    baseline = _repo(tmp_path, {"profile": "quick"})
    _experiment(tmp_path, baseline, "x", {"profile": "quick"}, {"plots/train/a.csv": "epoch,train_error\n1,0.5\n"})
    rev = sweep.experiment_refs(tmp_path)["x"]
    rows = sweep.read_file(tmp_path, rev, "plots/train/a.csv")
    assert rows == [{"epoch": 1.0, "train_error": 0.5}], f"rows {rows}"
    assert sweep.read_file(tmp_path, rev, "metrics/missing.json") is None, "a missing file reads as None"


def test_untracked_lock_is_rejected(tmp_path):
    _repo(tmp_path, {"profile": "quick"})
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n", encoding="utf-8")
    with pytest.raises(InputError, match="git add dvc.lock"):
        sweep.check_workspace(tmp_path)


def test_missing_dvc_command_is_named(tmp_path, monkeypatch):
    _repo(tmp_path, {"profile": "quick"})
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(InputError, match="dvc not found on PATH"):
        sweep.check_workspace(tmp_path)


def test_collect_without_experiments_fails(tmp_path):
    _repo(tmp_path, {"profile": "quick"})
    with pytest.raises(InputError, match="cnnrepro claims run dropout"):
        runner.collect(tmp_path, "dropout")


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A folder where the weight-sharing claim ran once, logging to its own SQLite MLflow store."""
    root = tmp_path_factory.mktemp("claims")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    (root / "params.yaml").write_text(yaml.safe_dump({"profile": "quick", "tracking": {}}), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        record = runner.run(root, "weight-sharing")
    return root, uri, record


def test_direct_claim_writes_record(measured):
    root, _, record = measured
    stored = json.loads((root / "claims" / "weight-sharing.json").read_text(encoding="utf-8"))
    assert stored["verdict"] == record["verdict"] == "held", f"verdict {stored['verdict']}"
    assert stored["command"] == "cnnrepro claims run weight-sharing", f"command {stored['command']}"


def test_direct_claim_logs_mlflow_run(measured):
    from mlflow.tracking import MlflowClient

    _, uri, _ = measured
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.claim = 'weight-sharing'")
    assert len(runs) == 1, f"expected one MLflow run tagged claim=weight-sharing, found {len(runs)}"
    assert runs[0].data.metrics.get("convolution.weights") == 3.0, f"metrics {runs[0].data.metrics}"


def test_report_has_claim_sections(measured, tmp_path):
    root = measured[0]
    sections = claim_sections(root)
    titles = [s.title for s in sections]
    assert titles[0] == "Claim: Weight sharing: parameters against connections", f"titles {titles}"
    assert "Verdict: held." in " ".join(sections[0].paragraphs), "the verdict is stated"
    pending = sections[-1]
    assert pending.title == "Claims not measured yet", f"last section {pending.title}"
    commands = [row[2] for row in pending.tables[0].rows]
    assert "cnnrepro claims run dropout" in commands, f"pending commands {commands}"
    assert len(commands) == len(registry.all_claims()) - 1, "every claim without a record is listed"

    out = tmp_path / "out"
    out.mkdir()
    render.write(out, "t", build.build_sections(root, {"profile": "quick"}), [], "footer")
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| fully connected | 25 | 25 | 25 |" in markdown, "the counts table is rendered"


def test_cli_list(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    assert cli.main(["claims", "list"]) == 0, "claims list should succeed"
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(registry.all_claims()), f"one line per claim: {lines}"
    assert all("not run" in line for line in lines), "no claim has a record in an empty folder"


def test_cli_unknown_claim(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    assert cli.main(["claims", "collect", "nope"]) == 1, "an unknown claim is an error"
    assert "known claims" in capsys.readouterr().err, "the message lists the known claims"
