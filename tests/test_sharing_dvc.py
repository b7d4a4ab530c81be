"""Sharing data through a DVC remote: `dvc push` from one clone, `dvc pull` into a fresh `git clone`."""

from __future__ import annotations

import textwrap

from tests.flows_project import dvc, git, make_project

TWO_STAGES = textwrap.dedent(
    """
    stages:
      prepare:
        cmd: python stage.py prepare data/prepared.txt
        deps: [stage.py]
        outs: [data/prepared.txt]
      train:
        cmd: python stage.py train models/model.txt data/prepared.txt
        deps: [stage.py, data/prepared.txt]
        outs: [models/model.txt]
    """
)


def test_dvc_push_pull_round_trip(tmp_path):
    origin = make_project(tmp_path / "origin", TWO_STAGES)
    # The same layout as the project's .dvc/config: a remote folder beside .dvc, ignored by git.
    dvc(origin, "remote", "add", "-d", "local", "dvc-remote")
    assert "url = ../dvc-remote" in (origin / ".dvc" / "config").read_text(), "remote URL not stored as in the project"
    (origin / ".gitignore").write_text("/dvc-remote/\n")
    dvc(origin, "repro")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "run pipeline")
    pushed = dvc(origin, "push")
    assert "2 files pushed" in pushed.stdout, f"dvc push output: {pushed.stdout} {pushed.stderr}"

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    assert not (clone / "models" / "model.txt").exists(), "a git clone must not contain DVC outputs"
    # The remote URL in .dvc/config is relative to the checkout. So a second checkout on the same machine
    # points its local config at the first checkout's remote folder.
    dvc(clone, "remote", "modify", "--local", "local", "url", str(origin / "dvc-remote"))
    pulled = dvc(clone, "pull", check=False)
    assert pulled.returncode == 0, f"dvc pull failed: {pulled.stdout} {pulled.stderr}"

    for output in ("data/prepared.txt", "models/model.txt"):
        assert (clone / output).read_text() == (origin / output).read_text(), f"{output} differs after dvc pull"
    status = dvc(clone, "status", "--json").stdout.strip()
    assert status == "{}", f"pulled clone is not up to date: {status}"
