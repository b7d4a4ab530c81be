"""The DVC pipeline graph as the flows see it: stage names in run order, and whether a stage is up to date.

Both questions go to DVC's Python API, so the order and the staleness rules are exactly those of `dvc repro`.
"""

from __future__ import annotations

import os
from pathlib import Path

import networkx as nx


def stage_order(root: Path, targets: list[str] | None = None) -> list[str]:
    """Return the stage names (`train@lenet5` style) of the DVC project at `root` in an order that runs every
    stage after the stages it depends on.

    Stages without a dependency between them keep the order in which `dvc.yaml` declares them. With `targets`,
    only those stages and everything upstream of them are returned.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        position = {stage: index for index, stage in enumerate(graph.nodes)}
        by_name = {_name(root, stage): stage for stage in graph.nodes}
        if targets:
            unknown = [name for name in targets if name not in by_name]
            if unknown:
                raise ValueError(
                    f"unknown DVC stage(s) {', '.join(unknown)}; stages in {root / 'dvc.yaml'}: "
                    f"{', '.join(by_name)}"
                )
            keep: set = set()
            for name in targets:
                # DVC's graph points from a stage to the stages it depends on.
                keep |= {by_name[name], *nx.descendants(graph, by_name[name])}
            graph = graph.subgraph(keep)
        # Reverse the edges so that a dependency comes before the stage that needs it.
        ordered = nx.lexicographical_topological_sort(graph.reverse(copy=True), key=position.__getitem__)
        return [_name(root, stage) for stage in ordered]


def _name(root: Path, stage) -> str:
    """Return the stage name as `dvc repro` takes it from `root`: `train@lenet5`, or `sub/dvc.yaml:name`."""
    relative = Path(os.path.relpath(stage.path, root)).as_posix()
    return stage.name if relative == "dvc.yaml" else f"{relative}:{stage.name}"


def stage_changes(root: Path, stage: str) -> list:
    """Return what DVC reports as changed for one stage (as `dvc status STAGE` does); empty when up to date."""
    from dvc.repo import Repo

    # DVC resolves a target relative to the working directory, so the stage file is given as an absolute path.
    file, _, name = stage.rpartition(":")
    target = f"{(root / (file or 'dvc.yaml')).resolve()}:{name}"
    with Repo(str(root)) as repo:
        status = repo.status(targets=[target])
    return [change for changes in status.values() for change in changes]
