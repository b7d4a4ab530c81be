"""DVC stage `report`: reproduced numbers beside the papers' in reports/index.html and reports/report.md.

Run `python -m pipeline.report`; stages that have not run yet appear as "not run".
"""

from __future__ import annotations

import argparse
import sys

from cnnrepro.stage import run_stage

# The report describes what was run, so it reads the training, download and evaluation settings too.
KEYS = ["report", "train", "download", "evaluate", "ensemble"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    from cnnrepro.report import report_stage

    return run_stage("report", KEYS, report_stage, outputs=["reports"])


if __name__ == "__main__":
    sys.exit(main())
