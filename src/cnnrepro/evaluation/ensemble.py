"""GoogLeNet's ensemble table: softmax averaged over crops and over independently trained members.

Each member's evaluate stage saved its per-image softmax, already averaged over the crops of each scheme, in
results/googlenet-k/probs.npz. Averaging those over members gives the ensemble's prediction, so no forward pass
is needed here. The grid mirrors GoogLeNet's Table 3: {1, 10, 144 crops} x {1, 7 models}, with the cost
column (models x crops), and the single-model rows use the member with the lowest top-1 error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnrepro.errors import InputError
from cnnrepro.evaluation.classification import topk_errors
from cnnrepro.report.paper import GOOGLENET_TABLE3

log = logging.getLogger(__name__)



@dataclass
class Member:
    name: str
    labels: np.ndarray
    paths: np.ndarray
    probs: dict[int, np.ndarray]  # crop scheme -> (N, classes)


def load_member(folder: Path) -> Member:
    path = Path(folder) / "probs.npz"
    if not path.is_file():
        raise InputError(f"{path} not found: run `dvc repro evaluate@{Path(folder).name}` first")
    with np.load(path) as data:
        probs = {int(k.split("_")[1]): data[k].astype(np.float32) for k in data.files if k.startswith("crops_")}
        return Member(Path(folder).name, data["labels"], data["paths"], probs)


def check_members(members: list[Member]) -> None:
    """Raise InputError unless every member scored the same images in the same order with the same labels."""
    first = members[0]
    for member in members[1:]:
        if len(member.paths) != len(first.paths) or np.any(member.paths != first.paths):
            raise InputError(
                f"{member.name} and {first.name} were evaluated on different images: rerun their evaluate stages "
                f"with the same evaluate.ilsvrc settings"
            )
        if np.any(member.labels != first.labels):
            raise InputError(f"{member.name} and {first.name} disagree on the labels: retrain them on one dataset")


def common_schemes(members: list[Member], requested: tuple[int, ...]) -> list[int]:
    """Return the requested crop schemes that every member saved; log the ones that are missing."""
    available = set.intersection(*(set(m.probs) for m in members))
    missing = [s for s in requested if s not in available]
    if missing:
        log.warning(
            "crop scheme(s) %s are not in every member's probs.npz; add them to evaluate.ilsvrc.crops to fill "
            "those rows", missing,
        )
    return [s for s in requested if s in available]


def grid(members: list[Member], schemes: list[int]) -> tuple[list[dict], Member]:
    """Return the Table 3 rows for 1 and all members at each crop scheme, and the best single member."""
    labels = members[0].labels
    # The single-model rows use the member with the lowest top-1 error at the smallest crop scheme.
    smallest = min(schemes)
    best = min(members, key=lambda m: topk_errors(m.probs[smallest], labels, (1,))["top1_error"])
    groups = [(1, [best])] + ([(len(members), members)] if len(members) > 1 else [])
    rows = []
    for count, chosen in groups:
        for scheme in schemes:
            mean = np.mean([m.probs[scheme] for m in chosen], axis=0)
            errors = topk_errors(mean, labels)
            paper = GOOGLENET_TABLE3.get((count, scheme))
            rows.append(
                {
                    "models": count,
                    "crops": scheme,
                    "cost": count * scheme,
                    "top1_error": errors["top1_error"],
                    "top5_error": errors["top5_error"],
                    "paper_top5_error": paper,
                    "members": " ".join(m.name for m in chosen),
                }
            )
    return rows, best


def members_curve(members: list[Member], scheme: int) -> list[dict]:
    """Return top-1/top-5 error of the average of the first n members, n = 1 .. len(members).

    Members are added from the lowest single-model top-1 error upwards, so n = 1 matches the single-model row.
    """
    labels = members[0].labels
    order = sorted(members, key=lambda m: topk_errors(m.probs[scheme], labels, (1,))["top1_error"])
    total = np.zeros_like(order[0].probs[scheme])
    curve = []
    for n, member in enumerate(order, start=1):
        total += member.probs[scheme]
        errors = topk_errors(total / n, labels)
        curve.append({"members": n, "crops": scheme, **errors, "added": member.name})
    return curve


def ensemble_stage(ctx, family: str) -> dict[str, float]:
    """Build the models x crops grid and the members curve from the members' saved softmax outputs."""
    from cnnrepro import atomic, manifest
    from cnnrepro.evaluation import plots

    if family != "googlenet":
        raise InputError(f"no ensemble is defined for {family!r}; the only one is googlenet")
    section = ctx.params["ensemble"]
    members = [load_member(ctx.root / "results" / f"{family}-{k}") for k in range(1, section.members + 1)]
    check_members(members)
    schemes = common_schemes(members, section.crops)
    if not schemes:
        raise InputError(
            f"no crop scheme of ensemble.crops {list(section.crops)} is in every member's probs.npz; "
            f"add them to evaluate.ilsvrc.crops and rerun the evaluate stages"
        )
    rows, best = grid(members, schemes)
    curve = members_curve(members, max(schemes))

    metrics: dict[str, float] = {"images": float(len(members[0].labels)), "members": float(len(members))}
    for row in rows:
        tag = f"{row['models']}model_{row['crops']}crop"
        metrics[f"top5_error_{tag}"] = row["top5_error"]
        metrics[f"top1_error_{tag}"] = row["top1_error"]

    columns = ["models", "crops", "cost", "top1_error", "top5_error", "paper_top5_error", "members"]
    curve_columns = ["members", "crops", "top1_error", "top5_error", "added"]
    plot_dir = ctx.root / "plots" / "ensemble"
    with atomic.atomic_dir(ctx.root / "results" / f"ensemble-{family}") as out:
        plots.write_csv(out / "grid.csv", columns, ([r[c] for c in columns] for r in rows))
        plots.write_csv(out / "members.csv", curve_columns, ([r[c] for c in curve_columns] for r in curve))
        atomic.write_json(out / "grid.json", {"best_single": best.name, "rows": rows, "members_curve": curve})
        manifest.write(out)
    plots.write_csv(plot_dir / f"{family}-grid.csv", columns[:6], ([r[c] for c in columns[:6]] for r in rows))
    plots.write_csv(plot_dir / f"{family}-members.csv", curve_columns[:4], ([r[c] for c in curve_columns[:4]] for r in curve))
    series = {
        f"{count} model(s)": [r["top5_error"] for r in rows if r["models"] == count]
        for count in sorted({r["models"] for r in rows})
    }
    plots.lines_png(schemes, series, plot_dir / f"{family}-grid.png",
                    f"GoogLeNet ensemble: top-5 error vs crops ({len(members[0].labels)} images)",
                    "crops per image", "top-5 error")
    plots.lines_png([r["members"] for r in curve], {"top-5": [r["top5_error"] for r in curve],
                    "top-1": [r["top1_error"] for r in curve]}, plot_dir / f"{family}-members.png",
                    f"GoogLeNet ensemble, {max(schemes)} crop(s): error vs members", "members", "error")
    atomic.write_json(ctx.root / "metrics" / "ensemble" / f"{family}.json", metrics)
    ctx.run.log_artifact(ctx.root / "results" / f"ensemble-{family}", "results")
    for path in sorted(plot_dir.glob(f"{family}-*")):
        ctx.run.log_artifact(path, "plots")
    return metrics
