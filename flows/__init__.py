"""Prefect flows that drive the DVC pipeline graph: scheduled retraining, notifications and promotion.

The flows read stages and their order from `dvc.yaml` and let DVC decide what is up to date; they never
declare a second copy of the graph.
"""
