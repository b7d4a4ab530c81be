"""The `cnnrepro` command: profiles, params checks, model anatomy and tracking maintenance."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cnnrepro import logs, params, paths


def _cmd_profile(args: argparse.Namespace) -> int:
    from cnnrepro.params import profiles

    root = paths.repo_root()
    if args.check:
        expected = profiles.render(args.name, root)
        target = root / params.PARAMS_FILE
        actual = target.read_text(encoding="utf-8") if target.is_file() else ""
        if actual != expected:
            print(f"{target} differs from profile {args.name!r}; run `cnnrepro profile {args.name}`", file=sys.stderr)
            return 1
        print(f"{target} matches profile {args.name!r}")
        return 0
    target = profiles.write(args.name, root)
    print(f"wrote {target} for profile {args.name!r}; run `dvc repro` to use it")
    return 0


def _cmd_params_check(args: argparse.Namespace) -> int:
    root = paths.repo_root()
    data = params.read_yaml(root / params.PARAMS_FILE)
    params.load(list(data), root / params.PARAMS_FILE)
    print(f"{root / params.PARAMS_FILE} is valid (profile {data.get('profile')!r})")
    return 0


def _cmd_tracking_sync(args: argparse.Namespace) -> int:
    from cnnrepro import tracking

    logged, failed = tracking.sync(paths.state_dir(), uri=args.uri)
    print(f"logged {logged} spooled stage run(s); {failed} still pending")
    return 1 if failed else 0


def _cmd_tracking_close_stale(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from cnnrepro import tracking
    from cnnrepro.tracking import stale
    from cnnrepro.tracking.run import redact

    try:
        older_than_s = stale.parse_duration(args.older_than)
    except ValueError as err:
        print(f"cnnrepro tracking close-stale: --older-than: {err}", file=sys.stderr)
        return 2
    uri = args.uri or tracking.tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        print(f"cnnrepro tracking close-stale: experiment {args.experiment!r} not found at "
              f"{redact(uri)}; pass --experiment with an existing name", file=sys.stderr)
        return 1
    closed = stale.close_stale(client, [experiment.experiment_id], stale_after_s=older_than_s,
                               closed_by="cnnrepro tracking close-stale", dry_run=args.dry_run)
    verb = "would mark" if args.dry_run else "marked"
    for run_id, reason in closed:
        print(f"{verb} run {run_id} KILLED: {reason}")
    print(f"{verb} {len(closed)} orphaned RUNNING run(s) KILLED in experiment {args.experiment!r}")
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from cnnrepro.models import describe

    return describe.main(args)


def _cmd_claims(args: argparse.Namespace) -> int:
    from cnnrepro import claims
    from cnnrepro.errors import InputError

    root = paths.repo_root()
    if args.claims_command == "list":
        for claim in claims.all_claims():
            record = claims.record_path(root, claim.name)
            state = "not run"
            if record.is_file():
                import json

                state = json.loads(record.read_text(encoding="utf-8")).get("verdict") or "not measured"
            print(f"{claim.name:16} ~{claim.minutes:>4g} min  {state:14} {claim.title}")
        return 0
    try:
        if args.claims_command == "run":
            record = claims.run(root, args.name, args.seeds, rerun=args.rerun, jobs=args.jobs)
        else:
            record = claims.collect(root, args.name, args.seeds)
    except KeyError as err:
        # str() of a KeyError adds quotes around the message; args[0] is the message itself.
        print(f"cnnrepro claims: {err.args[0]}", file=sys.stderr)
        return 1
    except InputError as err:
        print(f"cnnrepro claims: {err}", file=sys.stderr)
        return 1
    for finding in record["result"].get("findings", []):
        print(finding)
    print(f"{args.name}: {record['verdict']}; wrote {claims.record_path(root, args.name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnrepro", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    profile = commands.add_parser("profile", help="write params.yaml for a profile (smoke, quick or paper)")
    profile.add_argument("name", help="profile name: " + ", ".join(params.PROFILES))
    profile.add_argument("--check", action="store_true", help="only check that params.yaml matches the profile")
    profile.set_defaults(func=_cmd_profile)

    check = commands.add_parser("check-params", help="validate every section of params.yaml")
    check.set_defaults(func=_cmd_params_check)

    describe = commands.add_parser("describe", help="print a model's layers: shapes, parameters, connections, time")
    describe.add_argument("model", help="model name, such as lenet5, alexnet, deepface or googlenet")
    describe.add_argument("--json", action="store_true", help="print JSON with per-layer rows and totals")
    describe.add_argument("--image-size", type=int, default=None, help="input side length in pixels")
    describe.add_argument("--width", type=float, default=1.0, help="channel-width multiplier")
    describe.add_argument(
        "--variant", default=None, help="DeepFace depth ablation: full, sub1, sub2 or sub3 (default full)"
    )
    describe.add_argument("--repeats", type=int, default=5, help="forward passes timed per layer")
    describe.set_defaults(func=_cmd_describe)

    claims = commands.add_parser("claims", help="check the chapter's claims with DVC experiments")
    claims_commands = claims.add_subparsers(dest="claims_command", required=True)
    claims_commands.add_parser("list", help="list the claims, their cost and their last verdict")
    run = claims_commands.add_parser("run", help="queue a claim's missing experiments, wait, and summarise them")
    collect = claims_commands.add_parser("collect", help="summarise a claim's finished experiments again")
    for sub in (run, collect):
        sub.add_argument("name", help="claim name, as `cnnrepro claims list` prints it")
        sub.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds to run (default: the claim's)")
    run.add_argument("--rerun", action="store_true", help="queue every experiment again, even finished ones")
    run.add_argument("--jobs", type=int, default=1, help="experiments run at once by the DVC queue")
    claims.set_defaults(func=_cmd_claims)

    tracking = commands.add_parser("tracking", help="MLflow tracking maintenance")
    tracking_commands = tracking.add_subparsers(dest="tracking_command", required=True)
    sync = tracking_commands.add_parser("sync", help="log the records that stages kept while MLflow was down")
    sync.add_argument("--uri", default=None, help="tracking URI to log to (default: MLFLOW_TRACKING_URI or mlflow.db)")
    sync.set_defaults(func=_cmd_tracking_sync)
    close = tracking_commands.add_parser(
        "close-stale",
        help="mark KILLED the RUNNING runs whose process has died: on this host by pid, elsewhere by heartbeat age",
    )
    close.add_argument("--older-than", default="1h",
                       help="heartbeat age after which a run of another host counts as orphaned: 90s, 30m, 6h, 2d "
                            "(default 1h)")
    close.add_argument("--experiment", default="cnnrepro", help="MLflow experiment name (default cnnrepro)")
    close.add_argument("--dry-run", action="store_true", help="only list the runs that would be closed")
    close.add_argument("--uri", default=None, help="tracking URI (default: MLFLOW_TRACKING_URI or mlflow.db)")
    close.set_defaults(func=_cmd_tracking_close_stale)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logs.setup()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except params.ParamsError as err:
        print(f"cnnrepro: {err}", file=sys.stderr)
        return 2
