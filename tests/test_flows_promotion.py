"""Champion/challenger promotion against a real SQLite MLflow store: first model, better, worse, equal."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from cnnrepro.params.promote import ModelRule, PromoteParams
from cnnrepro.registry import CHALLENGER, CHAMPION, decide, promote_pipeline, register_and_promote


@pytest.fixture
def client(mlflow_uri):
    return MlflowClient(tracking_uri=mlflow_uri)


def _register(client, value: float, *, higher_is_better: bool = False, margin: float = 0.01):
    experiment = client.get_experiment_by_name("promo") or client.get_experiment(client.create_experiment("promo"))
    run = client.create_run(experiment.experiment_id)
    client.log_metric(run.info.run_id, "error", value)
    client.set_terminated(run.info.run_id)
    return register_and_promote(
        client,
        key="lenet5",
        registered_model="test-lenet5",
        source=run.info.artifact_uri,
        metric="error",
        value=value,
        higher_is_better=higher_is_better,
        margin=margin,
        run_id=run.info.run_id,
    )


def _alias_version(client, alias: str) -> str:
    return str(client.get_model_version_by_alias("test-lenet5", alias).version)


def test_promotion_first_model_becomes_champion(client):
    outcome = _register(client, 0.05)
    assert outcome.alias == CHAMPION, f"first version should be champion: {outcome}"
    assert _alias_version(client, CHAMPION) == outcome.version, "alias champion does not point at the new version"
    tags = client.get_model_version("test-lenet5", outcome.version).tags
    assert tags["cnnrepro.promotion.decision"] == CHAMPION, f"decision tag wrong: {tags}"
    assert tags["cnnrepro.promotion.champion_value"] == "none", f"first version has no champion to compare: {tags}"
    assert float(tags["cnnrepro.promotion.value"]) == 0.05, f"value tag wrong: {tags}"


def test_promotion_better_model_takes_champion(client):
    first = _register(client, 0.05)
    second = _register(client, 0.03)
    assert second.alias == CHAMPION, f"lower error by more than the margin should promote: {second}"
    assert _alias_version(client, CHAMPION) == second.version, "champion alias did not move to the better version"
    tags = client.get_model_version("test-lenet5", second.version).tags
    assert float(tags["cnnrepro.promotion.champion_value"]) == 0.05, f"champion value tag wrong: {tags}"
    assert tags["cnnrepro.promotion.champion_version"] == first.version, f"champion version tag wrong: {tags}"


def test_promotion_worse_model_is_challenger(client):
    first = _register(client, 0.03)
    second = _register(client, 0.05)
    assert second.alias == CHALLENGER, f"higher error must not promote: {second}"
    assert _alias_version(client, CHAMPION) == first.version, "champion moved away from the better version"
    assert _alias_version(client, CHALLENGER) == second.version, "challenger alias not on the worse version"
    tags = client.get_model_version("test-lenet5", second.version).tags
    assert tags["cnnrepro.promotion.decision"] == CHALLENGER, f"decision tag wrong: {tags}"


def test_promotion_equal_model_is_challenger(client):
    first = _register(client, 0.04, margin=0.0)
    second = _register(client, 0.04, margin=0.0)
    assert second.alias == CHALLENGER, f"an equal metric must not promote, even with margin 0: {second}"
    assert _alias_version(client, CHAMPION) == first.version, "champion moved on an equal metric"


def test_promotion_within_margin_is_challenger(client):
    _register(client, 0.050)
    second = _register(client, 0.045, margin=0.01)
    assert second.alias == CHALLENGER, f"an improvement below the margin must not promote: {second}"


@pytest.mark.parametrize(
    ("value", "champion", "higher", "margin", "expected"),
    [
        (0.97, 0.95, True, 0.01, True),
        (0.955, 0.95, True, 0.01, False),
        (0.95, 0.97, True, 0.0, False),
        (0.10, 0.12, False, 0.01, True),
        (0.12, 0.12, False, 0.0, False),
        (float("nan"), None, False, 0.0, False),
        (0.5, None, True, 0.3, True),
    ],
)
def test_decide_table(value, champion, higher, margin, expected):
    decision = decide(value, champion, higher_is_better=higher, margin=margin)
    assert decision.promote is expected, f"decide({value}, {champion}, higher={higher}, margin={margin}): {decision}"


def test_promote_pipeline_uses_stage_run_and_logged_model(tmp_path, client, mlflow_uri):
    experiment_id = client.create_experiment("cnnrepro")
    run = client.create_run(experiment_id, tags={"cnnrepro.stage": "train@lenet5", "cnnrepro.pipeline_id": "p-1"})
    model = client.create_logged_model(experiment_id, name="lenet5", source_run_id=run.info.run_id)
    client.set_terminated(run.info.run_id)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "lenet5.json").write_text(json.dumps({"error": 0.02}))
    (tmp_path / "metrics" / "deepface.json").write_text(json.dumps({"accuracy": 0.9}))
    rules = {
        "lenet5": ModelRule(
            registered_model="pipe-lenet5",
            metrics_file="metrics/lenet5.json",
            metric="error",
            higher_is_better=False,
            source_stage="train@lenet5",
        ),
        "deepface": ModelRule(
            registered_model="pipe-deepface",
            metrics_file="metrics/deepface.json",
            metric="accuracy",
            higher_is_better=True,
            source_stage="train@deepface",
        ),
        "alexnet": ModelRule(
            registered_model="pipe-alexnet",
            metrics_file="metrics/alexnet.json",
            metric="error",
            higher_is_better=False,
            source_stage="train@alexnet",
        ),
    }
    outcomes = {o.key: o for o in promote_pipeline(tmp_path, "p-1", PromoteParams(models=rules), tracking_uri=mlflow_uri)}

    assert outcomes["lenet5"].alias == CHAMPION, f"lenet5 should be registered as champion: {outcomes['lenet5']}"
    version = client.get_model_version("pipe-lenet5", outcomes["lenet5"].version)
    assert version.run_id == run.info.run_id, f"version not linked to the stage run: {version}"
    assert model.model_id in version.source, f"version source {version.source} is not the LoggedModel {model.model_id}"
    assert outcomes["deepface"].version is None, f"deepface did not run in p-1 and must be skipped: {outcomes['deepface']}"
    assert "did not run" in outcomes["deepface"].reason, f"skip reason unclear: {outcomes['deepface'].reason}"
    assert outcomes["alexnet"].version is None, f"alexnet has no metrics file and must be skipped: {outcomes['alexnet']}"
