"""DVC stage `download@<dataset>`: write data/raw/<dataset> with a manifest, verified, all or nothing.

    python -m pipeline.download {mnist,lfw,imagenet,faces}

CNNREPRO_DATA_MIRROR=<folder> reads every dataset from a local mirror instead of the network.
"""

from __future__ import annotations

import os
import sys

from cnnrepro import atomic, manifest, paths
from cnnrepro.data import download
from cnnrepro.data.mirror import Mirror, mirror_from_env
from cnnrepro.stage import StageContext, run_stage


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in download.DATASETS:
        print(f"usage: python -m pipeline.download {{{','.join(download.DATASETS)}}}", file=sys.stderr)
        return 2
    dataset = argv[0]
    output = f"data/raw/{dataset}"
    metrics_file = f"metrics/download/{dataset}.json"

    def body(ctx: StageContext) -> dict[str, float]:
        mirror = mirror_from_env()
        fetcher = download.Fetcher(
            cache=paths.state_dir(ctx.root) / "downloads" / dataset,
            mirror=Mirror.open(mirror) if mirror else None,
            timeout=ctx.params["download.timeout_s"],
            retries=ctx.params["download.retries"],
        )
        with atomic.atomic_dir(ctx.root / output) as tmp:
            # mkdtemp creates the folder as 0700; give the dataset the usual permissions.
            umask = os.umask(0)
            os.umask(umask)
            tmp.chmod(0o777 & ~umask)
            prepared = download.PREPARE[dataset](tmp, ctx.params[f"download.{dataset}"], fetcher)
            written = manifest.write(tmp, known=prepared.known, dataset=dataset, **prepared.info)
        size = sum((ctx.root / output / rel).stat().st_size for rel in written["files"])
        metrics = {"files": float(written["count"]), "megabytes": round(size / 1e6, 3)}
        ctx.run.set_tags({"cnnrepro.data.digest": written["digest"], "cnnrepro.data.source": str(
            prepared.info.get("origin") or prepared.info.get("source"))})
        atomic.write_json(ctx.root / metrics_file, metrics)
        return metrics

    return run_stage(
        f"download@{dataset}",
        ["download.timeout_s", "download.retries", f"download.{dataset}"],
        body,
        outputs=[output, metrics_file],
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
