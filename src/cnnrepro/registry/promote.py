"""Champion/challenger promotion in the MLflow model registry, with aliases only (no registry stages).

Every model a pipeline run produced is registered as a new version. The version takes the alias `champion`
when its headline metric beats the current champion's by more than the margin, or when there is no champion
yet; otherwise it takes `challenger`. Tags on the version record the decision and both metric values, so the
registry itself keeps the promotion history.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnrepro.params.promote import ModelRule, PromoteParams

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG = "cnnrepro.promotion."


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str

    @property
    def alias(self) -> str:
        return CHAMPION if self.promote else CHALLENGER


@dataclass(frozen=True)
class Outcome:
    """What happened to one model: the registered version, its alias, and both metric values."""

    key: str
    registered_model: str
    version: str | None
    alias: str | None
    metric: str
    value: float | None
    champion_value: float | None
    champion_version: str | None
    reason: str


def decide(value: float, champion_value: float | None, *, higher_is_better: bool, margin: float) -> Decision:
    """Decide whether `value` replaces the champion's `champion_value` (None: no champion yet).

    The new value must improve on the champion by strictly more than `margin`, so an equal value never
    promotes, whatever the margin.
    """
    if not math.isfinite(value):
        return Decision(False, f"new value {value} is not a finite number")
    if champion_value is None:
        return Decision(True, "no champion yet")
    improvement = value - champion_value if higher_is_better else champion_value - value
    direction = "higher" if higher_is_better else "lower"
    if improvement > margin:
        return Decision(True, f"{value:g} beats champion {champion_value:g} by {improvement:g} > margin {margin:g}")
    return Decision(
        False,
        f"{value:g} does not beat champion {champion_value:g} by more than margin {margin:g} ({direction} is better)",
    )


def _champion(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _champion_value(client, version, metric: str) -> float | None:
    """Return the champion's metric: from its version tag, else from the metric of its source run."""
    tagged = version.tags.get(TAG + "value")
    if tagged is not None:
        return float(tagged)
    if version.run_id:
        run_metrics = client.get_run(version.run_id).data.metrics
        if metric in run_metrics:
            return float(run_metrics[metric])
    log.warning("champion %s v%s has no value for %s; treating it as absent", version.name, version.version, metric)
    return None


def _ensure_registered_model(client, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            client.create_registered_model(name, description="Registered by cnnrepro's retraining flow")
        except MlflowException as create_err:
            # Another process created it in the meantime.
            if create_err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def register_and_promote(
    client,
    *,
    key: str,
    registered_model: str,
    source: str,
    metric: str,
    value: float,
    higher_is_better: bool,
    margin: float,
    run_id: str | None = None,
    model_id: str | None = None,
) -> Outcome:
    """Register `source` as a new version of `registered_model` and give it `champion` or `challenger`."""
    _ensure_registered_model(client, registered_model)
    champion = _champion(client, registered_model)
    champion_value = _champion_value(client, champion, metric) if champion is not None else None
    decision = decide(value, champion_value, higher_is_better=higher_is_better, margin=margin)
    tags = {
        TAG + "decision": decision.alias,
        TAG + "metric": metric,
        TAG + "value": repr(float(value)),
        TAG + "champion_value": "none" if champion_value is None else repr(champion_value),
        TAG + "champion_version": "none" if champion is None else str(champion.version),
        TAG + "margin": repr(float(margin)),
        TAG + "reason": decision.reason,
    }
    version = client.create_model_version(registered_model, source, run_id=run_id, tags=tags, model_id=model_id)
    client.set_registered_model_alias(registered_model, decision.alias, version.version)
    log.info(
        "%s: registered %s v%s as %s (%s = %g; %s)",
        key,
        registered_model,
        version.version,
        decision.alias,
        metric,
        value,
        decision.reason,
    )
    return Outcome(
        key=key,
        registered_model=registered_model,
        version=str(version.version),
        alias=decision.alias,
        metric=metric,
        value=float(value),
        champion_value=champion_value,
        champion_version=None if champion is None else str(champion.version),
        reason=decision.reason,
    )


def read_metric(path: Path, metric: str) -> float:
    """Return the value of dotted key `metric` in the JSON metrics file `path`."""
    with open(path, encoding="utf-8") as handle:
        node: Any = json.load(handle)
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{path} has no metric '{metric}' (keys: {', '.join(node) if isinstance(node, dict) else '-'})")
        node = node[part]
    return float(node)


def _stage_run(client, experiment_id: str, stage: str, pipeline_id: str):
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`cnnrepro.stage` = '{stage}' and tags.`cnnrepro.pipeline_id` = '{pipeline_id}' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def _model_source(client, run) -> tuple[str, str | None]:
    """Return (source URI, model id) of the newest LoggedModel of `run`, or the run's artifacts without one."""
    models = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1,
    )
    if models:
        return models[0].model_uri, models[0].model_id
    return run.info.artifact_uri, None


def promote_pipeline(
    root: Path,
    pipeline_id: str,
    settings: PromoteParams,
    *,
    experiment: str = "cnnrepro",
    tracking_uri: str | None = None,
) -> list[Outcome]:
    """Register and promote every model whose source stage ran in pipeline run `pipeline_id`.

    A model is skipped (version None in its Outcome) when its metrics file is missing or its source stage did
    not run in this pipeline run, because DVC found it up to date: that model is registered already.
    """
    from mlflow import MlflowClient

    from cnnrepro.tracking import tracking_uri as default_uri

    client = MlflowClient(tracking_uri=tracking_uri or default_uri(root))
    found = client.get_experiment_by_name(experiment)
    outcomes = []
    for key, rule in settings.models.items():
        outcomes.append(_promote_one(client, root, key, rule, settings, found, pipeline_id))
    return outcomes


def _skipped(key: str, rule: ModelRule, reason: str, value: float | None = None) -> Outcome:
    log.info("%s: not registered: %s", key, reason)
    return Outcome(key, rule.registered_model, None, None, rule.metric, value, None, None, reason)


def _promote_one(client, root: Path, key: str, rule: ModelRule, settings: PromoteParams, experiment, pipeline_id: str):
    metrics_path = root / rule.metrics_file
    if not metrics_path.is_file():
        return _skipped(key, rule, f"metrics file {metrics_path} not found")
    value = read_metric(metrics_path, rule.metric)
    if experiment is None:
        return _skipped(key, rule, "the MLflow experiment does not exist", value)
    run = _stage_run(client, experiment.experiment_id, rule.source_stage, pipeline_id)
    if run is None:
        return _skipped(key, rule, f"stage {rule.source_stage} did not run in pipeline {pipeline_id}", value)
    source, model_id = _model_source(client, run)
    return register_and_promote(
        client,
        key=key,
        registered_model=rule.registered_model,
        source=source,
        metric=rule.metric,
        value=value,
        higher_is_better=rule.higher_is_better,
        margin=settings.margin if rule.margin is None else rule.margin,
        run_id=run.info.run_id,
        model_id=model_id,
    )
