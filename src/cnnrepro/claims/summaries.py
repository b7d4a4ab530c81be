"""Summarisers: turn a claim's experiments into measured values per variant, a verdict and the rule behind it.

Every summariser returns a dict with `values` ({variant: {metric: spread}}), `table` (columns and formatted
rows for the report), `findings` (sentences with the measured comparison), `verdict` and `rule`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cnnrepro.claims import stats
from cnnrepro.claims.stats import NOT_MEASURED, fmt, fmt_spread, mean_of


def collect(points: Sequence[Any], metrics: Mapping[str, Callable[[Mapping[str, Any]], float | None]]) -> dict:
    """Apply each metric function to each measured point's files; return {variant: {metric: spread}}."""
    per_variant: dict[str, dict[str, dict[int, float | None]]] = {}
    for point in points:
        if point.rev is None:
            continue
        slot = per_variant.setdefault(point.variant.name, {name: {} for name in metrics})
        for name, function in metrics.items():
            slot[name][point.seed] = function(point.files)
    return {variant: {name: stats.spread(values) for name, values in slots.items()} for variant, slots in per_variant.items()}


def table(claim, values: Mapping[str, Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> dict:
    """Build the report table: one row per variant, one column per (metric, header, unit)."""
    rows = []
    for variant in claim.variants:
        measured = values.get(variant.name)
        cells = [fmt_spread(measured.get(metric), unit) if measured else "not run" for metric, _, unit in columns]
        rows.append([variant.label or variant.name, *cells])
    return {"columns": ["variant", *(header for _, header, _ in columns)], "rows": rows}


def get(files: Mapping[str, Any], path: str, key: str) -> float | None:
    data = files.get(path)
    return None if not data or key not in data else float(data[key])


def last(files: Mapping[str, Any], path: str, key: str) -> float | None:
    """Return column `key` of the last row of the CSV at `path`."""
    rows = files.get(path)
    return float(rows[-1][key]) if rows else None


def _unmeasured(result: dict) -> dict:
    return {**result, "verdict": NOT_MEASURED, "findings": ["No experiment of this claim has finished yet."]}


# -- activation ------------------------------------------------------------------------------------------------


def activation(claim, points, *, history: str, target: float, fast: str, slow: str) -> dict:
    """Epochs to reach `target` training error for a non-saturating (`fast`) and a saturating (`slow`) variant."""
    values = collect(points, {
        "epochs_to_target": lambda f: stats.epochs_to_target(f.get(history), "train_error", target),
        "final_train_error": lambda f: last(f, history, "train_error"),
        "final_val_error": lambda f: last(f, history, "val_error"),
    })

    result = {
        "values": values,
        "table": table(claim, values, [("epochs_to_target", f"epochs to {target:.0%} training error", ""),
                                       ("final_train_error", "final training error", "%"),
                                       ("final_val_error", "final validation error", "%")]),
        "rule": f"held: the saturating activation needs at least 2x the epochs of ReLU to reach {target:.0%} training "
                f"error; partly: 1.2x to 2x; did not hold: below 1.2x",
    }

    fast_epochs = mean_of(values.get(fast, {}).get("epochs_to_target"))
    slow_summary = values.get(slow, {}).get("epochs_to_target")
    if fast_epochs is None or slow_summary is None:
        return _unmeasured(result)

    epochs = max(len(p.files.get(history) or []) for p in points if p.rev)
    slow_epochs = mean_of(slow_summary)
    lower_bound = slow_summary["n"] < len(slow_summary["per_seed"])
    if slow_epochs is None or lower_bound:
        # The saturating net did not reach the target in some seeds: the ratio is at least epochs / fast.
        slow_epochs = float(epochs)
        lower_bound = True

    ratio = slow_epochs / fast_epochs
    bound = "at least " if lower_bound else ""
    result["ratio"] = ratio
    result["findings"] = [
        f"ReLU reached {target:.0%} training error after {fast_epochs:.2f} epochs, the saturating activation after "
        f"{bound}{slow_epochs:.2f}: {bound}{ratio:.1f}x as many (the paper: about 6x).",
    ]
    result["verdict"] = stats.verdict(ratio >= 2, ratio >= 1.2)
    return result


# -- dropout ---------------------------------------------------------------------------------------------------


def dropout(claim, points, *, train: str, history: str, evaluate: str, target: float, without: str, with_: str) -> dict:
    values = collect(points, {
        "gap": lambda f: _gap(f.get(history)),
        "final_train_error": lambda f: last(f, history, "train_error"),
        "final_val_error": lambda f: last(f, history, "val_error"),
        "epochs_to_target": lambda f: stats.epochs_to_target(f.get(history), "train_error", target),
        "best_epoch": lambda f: get(f, train, "best_epoch"),
        "top1_error": lambda f: get(f, evaluate, "top1_error_1crop"),
    })

    result = {
        "values": values,
        "table": table(claim, values, [("final_train_error", "final training error", "%"),
                                       ("final_val_error", "final validation error", "%"),
                                       ("gap", "validation - training error", "%"),
                                       ("epochs_to_target", f"epochs to {target:.0%} training error", ""),
                                       ("best_epoch", "epoch of best validation error", ""),
                                       ("top1_error", "test top-1 error, 1 crop", "%")]),
        "rule": "held: the gap between validation and training error is larger without dropout AND dropout needs at "
                f"least 1.5x the epochs to reach {target:.0%} training error; partly: one of the two; did not hold: "
                "neither",
    }

    gap_without = mean_of(values.get(without, {}).get("gap"))
    gap_with = mean_of(values.get(with_, {}).get("gap"))
    slow = mean_of(values.get(with_, {}).get("epochs_to_target"))
    fast = mean_of(values.get(without, {}).get("epochs_to_target"))
    if gap_without is None or gap_with is None:
        return _unmeasured(result)

    overfits = gap_without > gap_with
    ratio = slow / fast if slow is not None and fast else None
    slower = ratio is not None and ratio >= 1.5
    result["findings"] = [
        f"Validation minus training error at the last epoch: {fmt(gap_without, '%')} without dropout, "
        f"{fmt(gap_with, '%')} with it.",
        f"Epochs to {target:.0%} training error: {fmt(fast)} without dropout, {fmt(slow)} with it"
        + (f" ({ratio:.2f}x; the paper: about 2x)." if ratio else " (a run that never reached it has no ratio)."),
    ]
    result["verdict"] = stats.verdict(overfits and slower, overfits or slower)
    return result


def _gap(history) -> float | None:
    if not history:
        return None
    return float(history[-1]["val_error"]) - float(history[-1]["train_error"])


# -- ablations (LRN, overlapping pooling; auxiliary heads) -----------------------------------------------------


def ablation(claim, points, *, evaluate: str, base: str, ablated: Sequence[str], paper: Mapping[str, str],
             small: float | None = None) -> dict:
    """Compare each ablated variant's test errors with the base variant's.

    Without `small`: the claim is that each component lowers the error. With `small`: the claim is that the
    component's effect on top-5 error is at most `small` (absolute).
    """
    values = collect(points, {
        "top1_error": lambda f: get(f, evaluate, "top1_error_1crop"),
        "top5_error": lambda f: get(f, evaluate, "top5_error_1crop"),
        "top1_error_10crop": lambda f: get(f, evaluate, "top1_error_10crop"),
        "top5_error_10crop": lambda f: get(f, evaluate, "top5_error_10crop"),
    })
    result = {
        "values": values,
        "table": table(claim, values, [("top1_error", "top-1, 1 crop", "%"), ("top5_error", "top-5, 1 crop", "%"),
                                       ("top1_error_10crop", "top-1, 10 crops", "%"),
                                       ("top5_error_10crop", "top-5, 10 crops", "%")]),
    }
    if small is None:
        result["rule"] = ("held: removing each component raises the mean 10-crop top-1 error by more than the "
                          "standard deviation over seeds of the two variants combined; partly: it raises the mean "
                          "error for at least one component, but not beyond that spread for all (always the case "
                          "with one seed, which has no spread); did not hold: no component's removal raises the "
                          "mean error")
    else:
        result["rule"] = (f"held: the 1-crop top-5 error with and without the component differs by at most "
                          f"{small:.1%} (absolute); partly: by at most {3 * small:.1%}; did not hold: by more")
    base_values = values.get(base)
    if not base_values:
        return _unmeasured(result)
    findings, raised, clear = [], 0, 0
    metric = "top1_error_10crop" if small is None else "top5_error"
    for name in ablated:
        measured = values.get(name)
        if not measured:
            continue
        delta = mean_of(measured[metric]) - mean_of(base_values[metric])
        noise = _combined_std(measured[metric], base_values[metric])
        raised += delta > 0
        chance_runs, runs = _at_chance(points, name, evaluate)
        at_chance = chance_runs > 0
        # Without a spread (one seed) a gain cannot be distinguished from seed noise, so it never counts as clear. A run
        # that stayed at chance measures a failed training, not the component's gain, so it does not count either.
        clear += noise is not None and delta > noise and not at_chance
        label = next((v.label or v.name for v in claim.variants if v.name == name), name)
        findings.append(
            f"{label}: {metric.replace('_', ' ')} changes by {100 * delta:+.2f} points against the base"
            + (f" (spread over seeds {100 * noise:.2f} points)" if noise is not None else " (one seed, no spread)")
            + f"; the paper: {paper.get(name, '-')}."
        )
        if at_chance:
            findings.append(f"{label}: {chance_runs} of {runs} run(s) stayed at chance-level top-1 error, so the "
                            f"network did not train there; the difference measures that failure, not the component.")
        result.setdefault("deltas", {})[name] = delta
    if not findings:
        return _unmeasured(result)
    result["findings"] = findings
    if small is None:
        result["verdict"] = stats.verdict(clear == len(findings), raised > 0)
    else:
        largest = max(abs(d) for d in result["deltas"].values())
        result["verdict"] = stats.verdict(largest <= small, largest <= 3 * small)
    return result


def _at_chance(points, variant: str, evaluate: str, margin: float = 0.02) -> tuple[int, int]:
    """Count the measured runs of `variant` whose 1-crop top-1 error is within `margin` of chance; return
    (runs at chance, runs measured).
    """
    flags = []
    for point in points:
        data = point.files.get(evaluate) if point.rev and point.variant.name == variant else None
        if data and data.get("classes"):
            flags.append(data["top1_error_1crop"] >= 1 - 1 / data["classes"] - margin)
    return sum(flags), len(flags)


def _combined_std(a: Mapping[str, Any], b: Mapping[str, Any]) -> float | None:
    if a.get("std") is None or b.get("std") is None:
        return None
    return (a["std"] ** 2 + b["std"] ** 2) ** 0.5


# -- DeepFace scale and depth ----------------------------------------------------------------------------------


def deepface(claim, points, *, train: str, groups: Mapping[str, Sequence[str]], paper: Mapping[str, float]) -> dict:
    """Check three orderings of held-out classification error: more identities, fewer images, shallower nets.

    `groups` maps a trend name to variant names in the order in which DeepFace's Table 1 error rises.
    """
    values = collect(points, {"val_error": lambda f: get(f, train, "best_val_error")})
    result = {
        "values": values,
        "table": table(claim, values, [("val_error", "held-out classification error (best epoch)", "%")]),
        "rule": "held: the mean error rises along all three orderings of the paper's Table 1 (more identities; "
                "fewer images per identity; removing layers, each sub-network above the full one); partly: one "
                "or two orderings; did not hold: none",
    }
    for row, variant in zip(result["table"]["rows"], claim.variants):
        row.append(fmt(paper.get(variant.name), "%", 1) if variant.name in paper else "-")
    result["table"]["columns"].append("paper (SFC)")
    findings, held = [], 0
    for trend, order in groups.items():
        means = [mean_of(values.get(name, {}).get("val_error")) for name in order]
        if any(m is None for m in means):
            findings.append(f"{trend}: not every variant ran yet.")
            continue
        if trend == "depth":
            ok = all(m > means[0] for m in means[1:])
        else:
            ok = all(b >= a for a, b in zip(means, means[1:]))
        held += ok
        shown = ", ".join(f"{name} {fmt(m, '%', 1)}" for name, m in zip(order, means))
        findings.append(f"{trend}: {shown} -> {'the paper ordering' if ok else 'not the paper ordering'}.")
    result["findings"] = findings
    measured = sum(not f.endswith("not every variant ran yet.") for f in findings)
    if not measured:
        return _unmeasured(result)
    result["verdict"] = stats.verdict(held == len(groups), held > 0)
    return result


# -- GoogLeNet crops and models --------------------------------------------------------------------------------


def crops_models(claim, points, *, members: int, crops: Sequence[int], paper: Mapping[tuple[int, int], float]) -> dict:
    """Table 3's grid: single members (mean over the members and training seeds) and the full ensemble."""
    metrics: dict[str, Callable] = {}
    for scheme in crops:
        metrics[f"ensemble_top5_{scheme}crop"] = lambda f, s=scheme: get(
            f, "metrics/ensemble/googlenet.json", f"top5_error_{members}model_{s}crop")
        metrics[f"ensemble_top1_{scheme}crop"] = lambda f, s=scheme: get(
            f, "metrics/ensemble/googlenet.json", f"top1_error_{members}model_{s}crop")
    values = collect(points, metrics)
    single: dict[int, dict[int, float | None]] = {scheme: {} for scheme in crops}
    for point in points:
        if point.rev is None:
            continue
        for k in range(1, members + 1):
            for scheme in crops:
                # Members are keyed seed * 100 + k so that each (training seed, member) is one sample.
                single[scheme][point.seed * 100 + k] = get(
                    point.files, f"metrics/evaluate/googlenet-{k}.json", f"top5_error_{scheme}crop")
    result = {"values": values, "rule": (
        "held: at every crop scheme the ensemble's top-5 error is below the members' mean, and at both model "
        "counts more crops give a lower error; partly: some of these comparisons hold; did not hold: none")}
    single_spread = {scheme: stats.spread(single[scheme]) for scheme in crops}
    result["single_members"] = single_spread
    rows = []
    for scheme in crops:
        rows.append(["1", str(scheme), fmt(paper.get((1, scheme)), "%"), fmt_spread(single_spread[scheme], "%")])
    for scheme in crops:
        cell = fmt_spread(values[claim.variants[0].name][f"ensemble_top5_{scheme}crop"], "%") if values else "not run"
        rows.append([str(members), str(scheme), fmt(paper.get((members, scheme)), "%"), cell])
    result["table"] = {"columns": ["models", "crops", "paper top-5", "reproduced top-5 (mean ± std over seeds/members)"],
                       "rows": rows}
    if not values:
        return _unmeasured(result)
    ensemble = {s: mean_of(values[claim.variants[0].name][f"ensemble_top5_{s}crop"]) for s in crops}
    one = {s: mean_of(single_spread[s]) for s in crops}
    checks = [ensemble[s] < one[s] for s in crops]
    checks += [ensemble[crops[-1]] < ensemble[crops[0]], one[crops[-1]] < one[crops[0]]]
    result["findings"] = [
        "Top-5 error, 1 model -> " + ", ".join(f"{s} crop(s) {fmt(one[s], '%')}" for s in crops) + "; "
        f"{members} models -> " + ", ".join(f"{s} crop(s) {fmt(ensemble[s], '%')}" for s in crops) + ".",
        f"{sum(checks)} of {len(checks)} comparisons go the paper's way.",
    ]
    result["verdict"] = stats.verdict(all(checks), any(checks))
    return result
