"""DVC stage `ensemble@googlenet`: GoogLeNet's models x crops table from the members' saved softmax outputs.

Run `python -m pipeline.ensemble googlenet` after the evaluate stages of googlenet-1 .. googlenet-7.
"""

from __future__ import annotations

import argparse
import sys

from cnnrepro.stage import run_stage


def main(argv: list[str] | None = None) -> int:
    from cnnrepro.evaluation import ensemble

    parser = argparse.ArgumentParser(prog="python -m pipeline.ensemble", description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=["googlenet"], help="the model family whose members are averaged")
    args = parser.parse_args(argv)
    family = args.family
    return run_stage(
        f"ensemble@{family}",
        ["ensemble"],
        lambda ctx: ensemble.ensemble_stage(ctx, family),
        outputs=[f"results/ensemble-{family}", f"metrics/ensemble/{family}.json"],
    )


if __name__ == "__main__":
    sys.exit(main())
