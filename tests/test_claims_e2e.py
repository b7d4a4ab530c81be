"""A claim end to end: real `dvc exp run --queue` and `dvc queue start` in a copy of the checkout (smoke profile).

The claim here is a two-variant LeNet-5 sweep with one seed, registered only inside this test, so it runs in a
few minutes. The catalog's claims use the same code with the quick profile.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial

import pytest

from cnnrepro.claims import registry, runner, summaries
from cnnrepro.claims.registry import Claim, Variant
from tests.test_pipeline_e2e import _copy_checkout, _offline_env, _run

pytestmark = pytest.mark.slow

TINY = Claim(
    name="tiny-activation",
    title="tiny",
    text="ReLU against scaled tanh on the smoke profile",
    source="test",
    method="test",
    seeds=(0,),
    seed_keys=("train.lenet5.seed",),
    targets=("train@lenet5",),
    overrides={"train.lenet5.epochs": 2},
    variants=(Variant("relu", {"train.lenet5.activation": "relu"}),
              Variant("scaled_tanh", {"train.lenet5.activation": "scaled_tanh"})),
    files=("metrics/train/lenet5.json", "plots/train/lenet5.csv"),
    summarise=partial(summaries.activation, history="plots/train/lenet5.csv", target=0.5, fast="relu",
                      slow="scaled_tanh"),
)


@pytest.fixture(scope="module")
def queued_repo(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("claims-e2e")
    _copy_checkout(root)
    env = _offline_env(shared_data)
    for command in ([sys.executable, "-m", "cnnrepro", "profile", "smoke"],
                    [sys.executable, "-m", "dvc", "repro", "download@mnist"]):
        done = _run(command, root, env, 600)
        assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for command in (["git", "add", "-A"], ["git", "commit", "-qm", "upstream"]):
        subprocess.run(command, cwd=root, env=env, check=True, capture_output=True)
    return root, env


def test_tiny_claim_through_dvc_queue(queued_repo, monkeypatch):
    root, env = queued_repo
    for key in ("CNNREPRO_DATA_MIRROR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setitem(registry.CLAIMS, TINY.name, TINY)
    monkeypatch.setattr(registry, "get", lambda name: TINY if name == TINY.name else registry.CLAIMS[name])

    record = runner.run(root, TINY.name, poll_s=3)

    names = [e["name"] for e in record["experiments"]]
    assert names == ["tiny-activation-relu-s0", "tiny-activation-scaled_tanh-s0"], f"experiments {names}"
    assert all(e["rev"] for e in record["experiments"]), f"every experiment has a commit: {record['experiments']}"
    epochs = record["result"]["values"]["scaled_tanh"]["final_train_error"]["n"]
    assert epochs == 1, f"one seed measured for scaled tanh, got n={epochs}"
    stored = json.loads((root / "claims" / "tiny-activation.json").read_text(encoding="utf-8"))
    assert stored["verdict"] == record["verdict"], "the record on disk is the returned one"

    shown = _run([sys.executable, "-m", "dvc", "exp", "show", "--json"], root, env, 300)
    assert "tiny-activation-relu-s0" in shown.stdout, "dvc exp show lists the named experiment"

    again = runner.run(root, TINY.name, poll_s=3)
    assert [e["rev"] for e in again["experiments"]] == [e["rev"] for e in record["experiments"]], (
        "a second run reuses the finished experiments instead of queueing them again"
    )
