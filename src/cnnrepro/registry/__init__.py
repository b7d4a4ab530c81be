"""MLflow model registry: register each retrained model and decide whether it takes the `champion` alias."""

from cnnrepro.registry.promote import (
    CHALLENGER,
    CHAMPION,
    Decision,
    Outcome,
    decide,
    promote_pipeline,
    register_and_promote,
)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "Decision",
    "Outcome",
    "decide",
    "promote_pipeline",
    "register_and_promote",
]
