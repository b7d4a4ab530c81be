"""DVC stage `align@<dataset>`: MTCNN detection and alignment (align.method none, 2d or 3d) of data/raw/<dataset>.

Writes data/aligned/<dataset>/ (crops per size, report.csv, report.json, LFW protocol files, manifest.json)
and metrics/align/<dataset>.json. Run from the repository root: `python -m pipeline.align lfw`.
"""

from __future__ import annotations

import os
import sys

from cnnrepro import atomic, paths
from cnnrepro.stage import StageContext, run_stage

DATASETS = ("lfw", "faces")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in DATASETS:
        got = " ".join(args) or "nothing"
        print(f"usage: python -m pipeline.align {{{','.join(DATASETS)}}} (got {got})", file=sys.stderr)
        return 2
    dataset = args[0]
    raw = f"data/raw/{dataset}"
    out = f"data/aligned/{dataset}"

    def body(ctx: StageContext) -> dict[str, float]:
        import torch

        from cnnrepro.faces.mesh import frontalize_python
        from cnnrepro.faces.runner import AlignSettings, align_folder

        settings = AlignSettings.from_params(ctx.params["align"])
        # The decoder processes and the detector share the cores. More torch threads than free cores made
        # detection several times slower on a busy 2-core machine, because OpenMP threads wait on each other.
        threads = max(1, (os.cpu_count() or 1) - settings.workers)
        torch.set_num_threads(min(threads, torch.get_num_threads()))
        summary = align_folder(
            ctx.root / raw,
            ctx.root / out,
            settings,
            state=paths.state_dir(ctx.root) / "align",
            input_digest=ctx.data_digests[dataset],
            protocol=dataset == "lfw",
            mesh_python=frontalize_python(ctx.root),
        )
        atomic.write_json(ctx.root / "metrics" / "align" / f"{dataset}.json", summary)
        ctx.run.log_artifact(ctx.root / out / "report.csv", f"align/{dataset}")
        ctx.run.log_artifact(ctx.root / out / "report.json", f"align/{dataset}")
        ctx.run.set_tags({"align_method": settings.method})
        return {f"align_{key}": float(value) for key, value in summary.items()}

    return run_stage(f"align@{dataset}", ["align"], body, inputs={dataset: raw}, outputs=[out])


if __name__ == "__main__":
    sys.exit(main())
