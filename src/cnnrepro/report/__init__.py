"""The report stage: reproduced numbers beside the papers' as an HTML page and a Markdown twin."""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

from cnnrepro import atomic, params as params_module
from cnnrepro.report import build, render

log = logging.getLogger(__name__)


def write_report(root: Path, params: dict[str, Any], title: str, out: Path | None = None) -> Path:
    """Build the report from the outputs under `root` into `out` (default root/reports); return the folder."""
    target = out or root / "reports"
    sections = build.build_sections(root, params)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    footer = f"Built {stamp} from metrics/, plots/ and params.yaml (profile {params.get('profile', '?')})."
    with atomic.atomic_dir(target) as tmp:
        figures = build.training_figures(root, tmp)
        render.write(tmp, title, sections, figures, footer)
    return target


def report_stage(ctx) -> dict[str, float]:
    """Write reports/ and log it to MLflow; the body of the `report` DVC stage."""
    tree = params_module.read_yaml(ctx.root / params_module.PARAMS_FILE)
    folder = write_report(ctx.root, tree, ctx.params["report"].title)
    ctx.run.log_artifact(folder, "report")
    sections = build.build_sections(ctx.root, tree)
    cells = [cell for s in sections for t in s.tables for row in t.rows for cell in row]
    return {"not_run_cells": float(sum(cell == build.NOT_RUN for cell in cells))}
