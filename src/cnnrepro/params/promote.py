"""params.yaml `promote`: when a retrained model takes the MLflow registry alias `champion`.

After a pipeline run, each model's headline metric is compared with the version that has the alias `champion`.
The new version is always registered. It takes `champion` only when it beats the champion by more than
`margin` (in the metric's own unit, a fraction for accuracies and errors), and `challenger` otherwise.
"""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat

from cnnrepro.params.base import Section


class ModelRule(Section):
    # Name in the MLflow model registry.
    registered_model: str = Field(min_length=1)
    # DVC metrics file, relative to the repository root, and the key of the headline metric in it.
    metrics_file: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    higher_is_better: bool
    # DVC stage whose MLflow run logged the model. Its LoggedModel, or without one the run's artifacts,
    # becomes the registered version's source.
    source_stage: str = Field(min_length=1)
    # Overrides `promote.margin` for this model when set.
    margin: NonNegativeFloat | None = None


# One subclass per model carries that model's defaults, so a profile can change one field of one model.


class LeNet5Rule(ModelRule):
    registered_model: str = "cnnrepro-lenet5"
    metrics_file: str = "metrics/evaluate/lenet5.json"
    metric: str = "test_error"
    higher_is_better: bool = False
    source_stage: str = "train@lenet5"


class AlexNetRule(ModelRule):
    registered_model: str = "cnnrepro-alexnet"
    metrics_file: str = "metrics/evaluate/alexnet.json"
    # The key names the crop scheme, which must be among evaluate.ilsvrc.crops.
    metric: str = "top5_error_10crop"
    higher_is_better: bool = False
    source_stage: str = "train@alexnet"


class DeepFaceRule(ModelRule):
    registered_model: str = "cnnrepro-deepface"
    metrics_file: str = "metrics/evaluate/deepface.json"
    # The unsupervised protocol compares the network's features directly, with no classifier fitted on LFW.
    metric: str = "unsupervised.accuracy"
    higher_is_better: bool = True
    source_stage: str = "train@deepface"


class GoogLeNetRule(ModelRule):
    registered_model: str = "cnnrepro-googlenet-ensemble"
    metrics_file: str = "metrics/ensemble/googlenet.json"
    # The key names ensemble.members and the largest of ensemble.crops; profiles with fewer crops change it.
    metric: str = "top5_error_7model_144crop"
    higher_is_better: bool = False
    source_stage: str = "ensemble@googlenet"


class PromoteModels(Section):
    lenet5: LeNet5Rule = LeNet5Rule()
    alexnet: AlexNetRule = AlexNetRule()
    deepface: DeepFaceRule = DeepFaceRule()
    googlenet: GoogLeNetRule = GoogLeNetRule()


class PromoteParams(Section):
    enabled: bool = True
    # Minimum improvement of the headline metric over the champion's value, in the metric's unit.
    margin: NonNegativeFloat = 0.001
    models: PromoteModels = PromoteModels()

    def rules(self) -> dict[str, ModelRule]:
        """Return {model key: rule} for every model that promotion compares."""
        return {name: getattr(self.models, name) for name in PromoteModels.model_fields}
