"""The retraining flow: run every out-of-date DVC stage as a Prefect task, then promote better models.

The stages and their order come from the DVC project (`flows.graph`); DVC decides which stages are out of date,
so a second run with nothing changed runs no stage. Each out-of-date stage is one task that runs
`dvc repro --single-item STAGE` in its own process group, streams the output into Prefect's log, retries with
exponential backoff and is killed with its whole process tree on timeout or cancellation. DVC locks the
workspace, so the stages run one at a time.

One MLflow run per flow run is the parent of every stage's run: the stage processes get its id in
CNNREPRO_PARENT_RUN_ID and a shared CNNREPRO_PIPELINE_ID.

Commands (from the repository root):

    python -m flows.retrain run --profile smoke -S train.lenet5.epochs=1
    python -m flows.retrain serve --cron "0 3 * * 0"
    python -m flows.retrain deploy --pool cnnrepro-process --cron "0 3 * * 0"
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from cnnrepro import params, paths
from flows import graph, notify, overrides, process
from flows import tracking as flow_tracking

FLOW_NAME = "cnnrepro-retrain"
DEFAULT_DEPLOYMENT = "weekly-retrain"
DEFAULT_CRON = "0 3 * * 0"
DEFAULT_STAGE_TIMEOUT_S = 24 * 3600.0


class StageFailed(RuntimeError):
    """A `dvc repro` or `dvc push/pull` command exited with a non-zero status."""


def _dvc(*args: str) -> list[str]:
    # The same interpreter runs dvc, so the flow and its stages use one environment.
    return [sys.executable, "-m", "dvc", *args]


def _run_command(command: list[str], root: Path, env: dict[str, str], timeout_s: float | None, grace_s: float) -> float:
    """Run `command` with streamed logs; return its duration in seconds or raise StageFailed."""
    logger = get_run_logger()
    started = time.monotonic()
    logger.info("running %s in %s", " ".join(command[2:]), root)
    code = process.run_streaming(command, cwd=root, env=env, timeout_s=timeout_s, on_line=logger.info, grace_s=grace_s)
    seconds = time.monotonic() - started
    if code != 0:
        raise StageFailed(f"`{' '.join(command[2:])}` exited with status {code} after {seconds:.1f} s; see the log above")
    logger.info("%s finished in %.1f s", " ".join(command[2:]), seconds)
    return seconds


def _retry_unless_timeout(task, task_run, state) -> bool:
    # A stage that ran out of time would run out of time again; other failures (a lost data loader worker,
    # a full disk that was cleaned up, a flaky download) are worth another try.
    error = state.result(raise_on_failure=False)
    return not isinstance(error, process.CommandTimeout)


@task(name="dvc-stage", cache_policy=NO_CACHE, retry_condition_fn=_retry_unless_timeout)
def run_stage(root: str, stage: str, env: dict[str, str], timeout_s: float | None, grace_s: float = 10.0) -> float:
    """Run one DVC stage with `dvc repro --single-item`; return its duration in seconds."""
    return _run_command(_dvc("repro", "--single-item", stage), Path(root), env, timeout_s, grace_s)


@task(name="dvc-transfer", cache_policy=NO_CACHE)
def transfer(root: str, action: str, env: dict[str, str], timeout_s: float | None, remote: str | None = None) -> float:
    """Run `dvc pull` or `dvc push` against `remote` (default: the project's default remote)."""
    args = [action] + (["--remote", remote] if remote else [])
    if action == "pull":
        # Outputs that were never pushed (a stage added since) are rebuilt by the stages instead.
        args.append("--allow-missing")
    return _run_command(_dvc(*args), Path(root), env, timeout_s, 10.0)


@task(name="apply-params", cache_policy=NO_CACHE)
def apply_params(root: str, profile: str | None, params_overrides: dict[str, Any]) -> dict[str, Any]:
    """Write params.yaml from `profile` and apply the overrides, as `dvc exp run -S` would."""
    return overrides.apply(Path(root), profile, params_overrides)


@task(name="promote-models", cache_policy=NO_CACHE)
def promote_models(root: str, pipeline_id: str, experiment: str) -> list[dict[str, Any]]:
    """Register the models this pipeline run produced and move `champion` to those that beat it."""
    from dataclasses import asdict

    from cnnrepro.params.promote import PromoteParams
    from cnnrepro.registry import promote_pipeline

    logger = get_run_logger()
    raw = params.read_yaml(Path(root) / params.PARAMS_FILE)
    # NOTE: until `promote` is a section of cnnrepro.params.Params, a params.yaml without it means defaults.
    settings = PromoteParams.model_validate(raw.get("promote", {}))
    if not settings.enabled:
        logger.info("promotion is off (promote.enabled: false)")
        return []
    outcomes = promote_pipeline(Path(root), pipeline_id, settings, experiment=experiment)
    for outcome in outcomes:
        if outcome.version is None:
            logger.info("%s: not registered: %s", outcome.key, outcome.reason)
        else:
            logger.info(
                "%s: %s v%s is %s (%s = %g; %s)",
                outcome.key,
                outcome.registered_model,
                outcome.version,
                outcome.alias,
                outcome.metric,
                outcome.value,
                outcome.reason,
            )
    return [asdict(outcome) for outcome in outcomes]


def _kill_stages(flow, flow_run, state) -> None:
    from prefect.logging.loggers import flow_run_logger

    killed = process.kill_running()
    if killed:
        flow_run_logger(flow_run, flow).warning("flow run %s: killed stage process groups %s", state.name, killed)


def _resolve_root(root: str | None) -> Path:
    return Path(root).resolve() if root else paths.repo_root()


@flow(
    name=FLOW_NAME,
    on_completion=[notify.on_completion],
    on_failure=[notify.on_failure],
    on_crashed=[_kill_stages, notify.on_failure],
    on_cancellation=[_kill_stages, notify.on_failure],
)
def retrain(
    profile: str | None = None,
    params_overrides: dict[str, Any] | None = None,
    targets: list[str] | None = None,
    root: str | None = None,
    pull: bool = False,
    push: bool = False,
    remote: str | None = None,
    promote: bool = True,
    stage_timeout_s: float | None = DEFAULT_STAGE_TIMEOUT_S,
    kill_grace_s: float = 10.0,
    retries: int = 2,
    retry_backoff_s: float = 60.0,
    webhook_url: str | None = None,
) -> dict[str, Any]:
    """Bring the DVC pipeline up to date and promote the models that beat their champions.

    Args:
        profile: smoke, quick or paper: regenerate params.yaml from that profile first (None keeps params.yaml).
        params_overrides: dotted params keys and values applied to params.yaml, as `dvc exp run -S key=value`.
        targets: DVC stages to bring up to date, with everything upstream of them (None: the whole graph).
        root: the DVC project (default: CNNREPRO_ROOT or the folder above the working directory with dvc.yaml).
        pull: `dvc pull` from the remote before the stages; push: `dvc push` after them.
        remote: DVC remote name for pull and push (None: the default remote in .dvc/config).
        promote: register the new models in MLflow and move the `champion` alias to better ones.
        stage_timeout_s: time limit of one stage in seconds (None: no limit).
        kill_grace_s: seconds between SIGTERM and SIGKILL when a stage is killed.
        retries: extra attempts of a failed stage; retry_backoff_s: delay before the first retry, doubling after.
        webhook_url: URL that receives a JSON POST when the flow completes or fails (default: CNNREPRO_WEBHOOK_URL).
    """
    from prefect.runtime import flow_run

    logger = get_run_logger()
    project = _resolve_root(root)
    if profile is not None or params_overrides:
        changed = apply_params(str(project), profile, params_overrides or {})
        logger.info("params.yaml: profile %s, overrides %s", profile or "unchanged", changed or "none")
    tracking_params = params.load(["profile", "tracking"], project / params.PARAMS_FILE)
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", tracking_params["tracking"].experiment)

    pipeline_id = f"prefect-{flow_run.get_id()}"
    parent = flow_tracking.ParentRun.start(
        project, pipeline_id, experiment=experiment, profile=tracking_params["profile"], flow_run_id=flow_run.get_id()
    )
    env = {**os.environ, **parent.environment(), "PYTHONUNBUFFERED": "1"}
    stage_task = run_stage.with_options(retries=retries, retry_delay_seconds=exponential_backoff(retry_backoff_s))
    ran: list[str] = []
    up_to_date: list[str] = []
    promotions: list[dict[str, Any]] = []
    try:
        if pull:
            transfer(str(project), "pull", env, stage_timeout_s, remote)
        for stage in graph.stage_order(project, targets):
            changes = graph.stage_changes(project, stage)
            if not changes:
                up_to_date.append(stage)
                continue
            logger.info("stage %s is out of date: %s", stage, changes)
            stage_task.with_options(task_run_name=f"dvc-repro-{stage}")(
                str(project), stage, env, stage_timeout_s, kill_grace_s
            )
            ran.append(stage)
        if up_to_date:
            logger.info("up to date, not run: %s", ", ".join(up_to_date))
        if push:
            transfer(str(project), "push", env, stage_timeout_s, remote)
        if promote and ran:
            promotions = promote_models(str(project), pipeline_id, experiment)
    except BaseException:
        parent.end("FAILED")
        raise
    parent.end("FINISHED", ran=ran, promotions=promotions)
    return {
        "pipeline_id": pipeline_id,
        "parent_run_id": parent.run_id,
        "ran": ran,
        "up_to_date": up_to_date,
        "promotions": promotions,
    }


# -- command line --------------------------------------------------------------------------------------------


def _flow_parameters(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {
        "profile": args.profile,
        "params_overrides": dict(overrides.parse_override(item) for item in args.set_param) or None,
        "targets": args.targets or None,
        "root": str(Path(args.root).resolve()) if args.root else None,
        "pull": args.pull,
        "push": args.push,
        "remote": args.remote,
        "promote": not args.no_promote,
        "stage_timeout_s": args.stage_timeout_s,
        "retries": args.retries,
        "retry_backoff_s": args.retry_backoff_s,
        "webhook_url": args.webhook_url,
    }
    return {key: value for key, value in values.items() if value is not None}


def build_deployment(name: str, cron: str, parameters: dict[str, Any], timezone: str | None = None):
    """Return the RunnerDeployment that `serve` runs: this flow on `cron` with fixed parameters."""
    from prefect.schedules import Cron

    return retrain.to_deployment(
        name=name, schedule=Cron(cron, timezone=timezone), parameters=parameters, tags=["cnnrepro"]
    )


def deploy_to_pool(
    name: str, pool: str, cron: str | None, parameters: dict[str, Any], root: Path, timezone: str | None = None
):
    """Create or update a deployment of this flow for the process work pool `pool`; return its id.

    The worker imports `flows.retrain` from `root`, so the deployment needs no image or remote code storage.
    """
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    pythonpath = os.pathsep.join([str(root / "src"), str(root)])
    return retrain.deploy(
        name=name,
        work_pool_name=pool,
        schedule=Cron(cron, timezone=timezone) if cron else None,
        parameters=parameters,
        job_variables={"working_dir": str(root), "env": {"PYTHONPATH": pythonpath, paths.ROOT_ENV: str(root)}},
        entrypoint_type=EntrypointType.MODULE_PATH,
        build=False,
        push=False,
        tags=["cnnrepro"],
        print_next_steps=False,
        ignore_warnings=True,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.retrain", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the flow once, now")
    serve = commands.add_parser("serve", help="serve the flow on a cron schedule from this process")
    deploy = commands.add_parser("deploy", help="create or update a deployment for a process work pool")
    for sub in (run, serve, deploy):
        sub.add_argument("--profile", choices=params.PROFILES, help="regenerate params.yaml from this profile first")
        sub.add_argument(
            "-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
            help="override a params.yaml value, as `dvc exp run -S` does (repeatable)",
        )
        sub.add_argument("--targets", nargs="*", help="DVC stages to bring up to date (default: all)")
        sub.add_argument("--root", help="DVC project folder (default: the folder above the working directory with dvc.yaml)")
        sub.add_argument("--pull", action="store_true", help="dvc pull from the remote before the stages")
        sub.add_argument("--push", action="store_true", help="dvc push to the remote after the stages")
        sub.add_argument("--remote", help="DVC remote name (default: the default remote)")
        sub.add_argument("--no-promote", action="store_true", help="do not register or promote models")
        sub.add_argument("--stage-timeout-s", type=float, help=f"time limit per stage in seconds (default {DEFAULT_STAGE_TIMEOUT_S:g})")
        sub.add_argument("--retries", type=int, help="extra attempts of a failed stage (default 2)")
        sub.add_argument("--retry-backoff-s", type=float, help="seconds before the first retry, doubling after (default 60)")
        sub.add_argument("--webhook-url", help="URL for a JSON POST when the flow completes or fails")
    for sub in (serve, deploy):
        sub.add_argument("--name", default=DEFAULT_DEPLOYMENT, help=f"deployment name (default {DEFAULT_DEPLOYMENT})")
        sub.add_argument("--cron", default=DEFAULT_CRON, help=f"cron schedule (default '{DEFAULT_CRON}': Sundays 03:00)")
        sub.add_argument("--timezone", help="IANA time zone of the cron schedule (default UTC)")
    deploy.add_argument("--pool", required=True, help="name of an existing process work pool")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    parameters = _flow_parameters(args)
    if args.command == "run":
        summary = retrain(**parameters)
        print(f"ran {len(summary['ran'])} stage(s), {len(summary['up_to_date'])} up to date; pipeline {summary['pipeline_id']}")
        return 0
    if args.command == "serve":
        from prefect import serve

        serve(build_deployment(args.name, args.cron, parameters, args.timezone))
        return 0
    root = Path(args.root).resolve() if args.root else paths.repo_root()
    deployment_id = deploy_to_pool(args.name, args.pool, args.cron, parameters, root, args.timezone)
    print(
        f"deployment {FLOW_NAME}/{args.name} ({deployment_id}) on pool {args.pool!r}; "
        f"start a worker with: prefect worker start --pool {args.pool}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
