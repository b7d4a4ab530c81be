"""params.yaml `promote`: when a retrained model takes the MLflow registry alias `champion`.

After a pipeline run, each model's headline metric is compared with the version that holds `champion`. The new
version is always registered; it takes `champion` only when it beats the champion by more than `margin`
(in the metric's own unit, a fraction for accuracies and errors), and `challenger` otherwise.
"""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat

from cnnrepro.params.base import Section


class ModelRule(Section):
    # Name in the MLflow model registry.
    registered_model: str = Field(min_length=1)
    # DVC metrics file, relative to the repository root, and the (dotted) key of the headline metric in it.
    metrics_file: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    higher_is_better: bool
    # DVC stage whose MLflow run logged the model; its LoggedModel (or, without one, the run's artifacts)
    # becomes the registered version's source.
    source_stage: str = Field(min_length=1)
    # Overrides `promote.margin` for this model when set.
    margin: NonNegativeFloat | None = None


def _default_models() -> dict[str, ModelRule]:
    return {
        "lenet5": ModelRule(
            registered_model="cnnrepro-lenet5",
            metrics_file="metrics/evaluate/lenet5.json",
            metric="error",
            higher_is_better=False,
            source_stage="train@lenet5",
        ),
        "alexnet": ModelRule(
            registered_model="cnnrepro-alexnet",
            metrics_file="metrics/evaluate/alexnet.json",
            metric="top5_error",
            higher_is_better=False,
            source_stage="train@alexnet",
        ),
        "deepface": ModelRule(
            registered_model="cnnrepro-deepface",
            metrics_file="metrics/evaluate/deepface.json",
            metric="accuracy",
            higher_is_better=True,
            source_stage="train@deepface",
        ),
        "googlenet": ModelRule(
            registered_model="cnnrepro-googlenet-ensemble",
            metrics_file="metrics/ensemble/googlenet.json",
            metric="top5_error",
            higher_is_better=False,
            source_stage="ensemble@googlenet",
        ),
    }


class PromoteParams(Section):
    enabled: bool = True
    # Minimum improvement of the headline metric over the champion's value, in the metric's unit.
    margin: NonNegativeFloat = 0.001
    models: dict[str, ModelRule] = Field(default_factory=_default_models)
