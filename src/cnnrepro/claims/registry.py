"""The chapter's claims, each as a sweep of DVC experiments (or a direct measurement) with a summariser.

A claim names the stages its experiments run, the variants (params overrides) it compares, the seeds it
repeats them over and the overrides shared by every point. `cnnrepro claims run NAME` queues one DVC
experiment per variant and seed, named `<variant experiment>-s<seed>`. Variants of different claims that set
the same values share an experiment name, so a point measured for one claim is reused by the other.
Claims without training (weight sharing, convolution speed) are measured directly by the same command.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Variant:
    """One point of a claim's grid: a label, its params overrides and the experiment name prefix."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # Prefix of the DVC experiment name; variants of two claims with the same prefix share experiments.
    experiment: str = ""
    label: str = ""


@dataclass(frozen=True)
class Claim:
    name: str
    title: str
    # The claim as the chapter states it.
    text: str
    # Source of the claim's numbers: paper, section, figure or table.
    source: str
    # Method: what the sweep measures and the reasons for its settings, shown in the report beside the result.
    method: str
    seeds: tuple[int, ...] = (0, 1)
    # params keys set to the seed of each point.
    seed_keys: tuple[str, ...] = ()
    # DVC stages each experiment reproduces (with their upstream stages).
    targets: tuple[str, ...] = ()
    variants: tuple[Variant, ...] = ()
    # Overrides shared by every point, on top of params.yaml (the default profile).
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # Files read from each experiment's commit (metrics/ and plots/ are committed with it).
    files: tuple[str, ...] = ()
    # Estimated minutes for the default seeds with the quick profile: experiments measured on 2 CPU cores shared
    # with other jobs, times their count. Shown by `claims list` and in the report.
    minutes: float = 0.0
    # Direct claims: a function(root, claim, seeds) returning the summary; sweep claims leave it None.
    measure: Callable[..., dict[str, Any]] | None = None
    # Sweep claims: a function(claim, points) returning the summary.
    summarise: Callable[..., dict[str, Any]] | None = None

    def experiment_name(self, variant: Variant, seed: int) -> str:
        return f"{variant.experiment or f'{self.name}-{variant.name}'}-s{seed}"

    def point_overrides(self, variant: Variant, seed: int) -> dict[str, Any]:
        """Return the full set of `-S` overrides of one point: shared, then the variant's, then the seed."""
        values = {**self.overrides, **variant.overrides}
        values.update({key: seed for key in self.seed_keys})
        return values


CLAIMS: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    if claim.name in CLAIMS:
        raise ValueError(f"claim {claim.name!r} is registered twice")
    if claim.measure is None and (claim.summarise is None or not claim.variants or not claim.targets):
        raise ValueError(f"claim {claim.name!r} needs either `measure` or `summarise`, variants and targets")
    CLAIMS[claim.name] = claim
    return claim


def get(name: str) -> Claim:
    """Return the registered claim `name`; raise KeyError listing the known names otherwise."""
    from cnnrepro.claims import catalog  # noqa: F401  (registers the claims)

    if name not in CLAIMS:
        raise KeyError(f"unknown claim {name!r}; known claims: {', '.join(CLAIMS)}")
    return CLAIMS[name]


def all_claims() -> list[Claim]:
    from cnnrepro.claims import catalog  # noqa: F401

    return list(CLAIMS.values())
