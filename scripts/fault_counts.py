"""Count the outcomes of the fault tests: damaged inputs and SIGKILLs, measured by the tests themselves.

    python scripts/fault_counts.py            # the fault cases of the default test run
    python scripts/fault_counts.py --slow     # also the slow ones: more kill seeds, more inputs, `dvc repro`

Every fault test appends the facts it measured to the file named by CNNREPRO_FAULT_LOG (the `fault_record`
fixture). This script runs those tests with the variable set and classifies each case:

- An input case is one of four outcomes. A clear error exits 1 or 2 with a message that names the file or
  value and no traceback. A recorded skip exits 0 with an error row in the stage's report. A crash shows a
  traceback or any other exit code. Anything else is unclear.
- A kill case is recovered (the rerun exits 0 with outputs equal to an uninterrupted run), a crash (the rerun
  fails) or data lost (a partial output was visible after the kill, or the rerun's outputs differ or are missing).
- Any output left by a failed input case counts as data lost too, because a later stage could read it.

It exits 1 when a case crashed or lost data, or when a fault test failed without recording its case.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAULT_TESTS = [
    "tests/test_faults_corpus.py",
    "tests/test_faults_inputs.py",
    "tests/test_faults_kill.py",
    "tests/test_faults_dvc_kill.py",
]


def classify(case: dict) -> tuple[str, bool]:
    """Return (outcome, data lost) for one recorded case."""
    if case["kind"] == "kill":
        lost = bool(case["partial_visible"] or case["rerun_differences"])
        if case["rerun_exit"] != 0:
            return "crash", lost
        return ("data lost" if lost else "recovered"), lost
    lost = bool(case["left_outputs"])
    if case["traceback"] or case["exit"] not in (0, 1, 2):
        return "crash", lost
    if case["exit"] in (1, 2) and case["names_input"]:
        return "clear error", lost
    if case["exit"] == 0 and case["recorded"]:
        return "recorded skip", lost
    return "unclear", lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="include the slow fault tests (several minutes more)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        log_file = Path(tmp) / "faults.jsonl"
        report = Path(tmp) / "junit.xml"
        marker = "slow or not slow" if args.slow else "not slow"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker,
                   f"--junitxml={report}", *FAULT_TESTS, *args.pytest_args]
        env = {**os.environ, "CNNREPRO_FAULT_LOG": str(log_file)}
        result = subprocess.run(command, cwd=REPO, env=env)
        cases = [json.loads(line) for line in log_file.read_text().splitlines()] if log_file.is_file() else []
        failed = _failed_tests(report)

    counts: collections.Counter[str] = collections.Counter()
    lost_cases = []
    for case in cases:
        outcome, lost = classify(case)
        counts[outcome] += 1
        counts[case["kind"]] += 1
        if lost:
            lost_cases.append(case["test"])
        if outcome in ("crash", "unclear", "data lost"):
            print(f"{outcome}: {case['test']}: {json.dumps(case)}", file=sys.stderr)
    unrecorded = sorted(failed - {case["test"] for case in cases})

    print()
    print(f"fault cases tried:        {len(cases)} ({counts['input']} damaged inputs, {counts['kill']} kills)")
    print(f"clear errors:             {counts['clear error']}")
    print(f"recorded skips:           {counts['recorded skip']}")
    print(f"recovered after SIGKILL:  {counts['recovered']}")
    print(f"unclear errors:           {counts['unclear']}")
    print(f"crashes:                  {counts['crash']}")
    print(f"data lost:                {len(lost_cases)}")
    print(f"failed tests:             {len(failed)} ({len(unrecorded)} without a recorded case)")
    for name in unrecorded:
        print(f"  no case recorded: {name}")
    bad = counts["crash"] or lost_cases or unrecorded or (result.returncode not in (0, 5) and not failed)
    return 1 if bad else 0


def _failed_tests(report: Path) -> set[str]:
    """Return the node ids of the failed or erroring tests in a JUnit XML report."""
    import xml.etree.ElementTree as ElementTree

    if not report.is_file():
        return set()
    failed = set()
    for case in ElementTree.parse(report).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            module = case.get("classname", "").replace(".", "/") + ".py"
            failed.add(f"{module}::{case.get('name')}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
