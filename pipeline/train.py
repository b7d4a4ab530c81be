"""DVC stage `train@<key>`: train one model (lenet5, alexnet, deepface, googlenet-1 .. googlenet-7).

Run `python -m pipeline.train <key>` for one process, or `torchrun --nproc_per_node N -m pipeline.train <key>`
for data-parallel training; only rank 0 writes outputs and logs to MLflow.
"""

from __future__ import annotations

import argparse
import sys

from cnnrepro.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.train", description=__doc__.splitlines()[0])
    parser.add_argument("key", help="lenet5, alexnet, deepface or googlenet-1 .. googlenet-7")
    args = parser.parse_args(argv)

    from cnnrepro.errors import InputError
    from cnnrepro.training import distributed, recipes

    try:
        parsed = recipes.TrainKey.parse(args.key)
    except InputError as err:
        parser.error(str(err))
    dataset, folder = recipes.DATA_FOLDERS[parsed.family]
    info = distributed.setup()
    try:
        return run_stage(
            f"train@{args.key}",
            [parsed.section],
            lambda ctx: recipes.train_stage(ctx, args.key, info),
            inputs={dataset: folder},
            outputs=[f"models/{args.key}", f"metrics/train/{args.key}.json", f"plots/train/{args.key}.csv"],
            rank=info.rank,
        )
    finally:
        distributed.cleanup(info)


if __name__ == "__main__":
    sys.exit(main())
