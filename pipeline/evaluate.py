"""DVC stage `evaluate@<key>`: a trained model on its paper's test protocol (MNIST, LFW or ImageNet).

Run `python -m pipeline.evaluate <key>` with key lenet5, deepface, alexnet or googlenet-1 .. googlenet-7.
"""

from __future__ import annotations

import argparse
import sys

from cnnrepro.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    from cnnrepro.evaluation import stage

    parser = argparse.ArgumentParser(prog="python -m pipeline.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("key", choices=stage.KEYS, help="the trained model to evaluate")
    args = parser.parse_args(argv)
    dataset, folder = stage.data_of(args.key)
    return run_stage(
        f"evaluate@{args.key}",
        [stage.section_of(args.key)],
        lambda ctx: stage.evaluate_stage(ctx, args.key),
        inputs={dataset: folder, "model": f"models/{args.key}"},
        outputs=stage.outputs_of(args.key),
    )


if __name__ == "__main__":
    sys.exit(main())
