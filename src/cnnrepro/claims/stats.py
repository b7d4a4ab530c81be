"""Small statistics for claim summaries: mean and spread over seeds, epochs to a target, verdict words."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

HELD, PARTLY, NOT_HELD, NOT_MEASURED = "held", "partly held", "did not hold", "not measured"


def spread(per_seed: Mapping[int, float | None]) -> dict[str, Any]:
    """Summarise one value over seeds: per-seed values, mean, sample standard deviation (None below 2 seeds), n.

    Seeds whose value is None (a target never reached, a file missing) are listed but left out of mean and std.
    """
    values = [float(v) for v in per_seed.values() if v is not None and not math.isnan(float(v))]
    return {
        "per_seed": {str(seed): value for seed, value in per_seed.items()},
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def epochs_to_target(history: Sequence[Mapping[str, Any]] | None, column: str, target: float) -> float | None:
    """Return the fractional epoch at which `column` first falls to `target` or below; None if it never does.

    Between two epochs the value is interpolated linearly. A run already at the target after its first epoch
    returns that epoch, since nothing was recorded before it.
    """
    previous_epoch, previous = None, None
    for row in history or []:
        epoch, value = float(row["epoch"]), float(row[column])
        if value <= target:
            if previous is None:
                return epoch
            return previous_epoch + (previous - target) / (previous - value) * (epoch - previous_epoch)
        previous_epoch, previous = epoch, value
    return None


def verdict(held: bool, partly: bool) -> str:
    """Return the verdict word: held when the full rule passes, partly held when only part of it does."""
    if held:
        return HELD
    if partly:
        return PARTLY
    return NOT_HELD


def mean_of(summary: Mapping[str, Any] | None) -> float | None:
    return None if summary is None else summary.get("mean")


def fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{100 * value:.{digits}f}%"
    return f"{value:.{digits}f}{unit}"


def fmt_spread(summary: Mapping[str, Any] | None, unit: str = "", digits: int = 2) -> str:
    """Format `mean ± std (n=...)` for a `spread` result."""
    if not summary or summary.get("mean") is None:
        return "n/a"
    text = fmt(summary["mean"], unit, digits)
    if summary.get("std") is not None:
        text += f" ± {fmt(summary['std'], unit, digits)}"
    return f"{text} (n={summary['n']})"
