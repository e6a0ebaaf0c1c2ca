"""``deploy`` (plain, blue-green or canary) and ``strategy resume|abort``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any, Callable, Optional

from marathon_bridge import output
from marathon_bridge.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Io,
    UsageError,
    load_and_validate,
    make_client,
    report_issues,
)
from marathon_bridge.errors import DeploymentError


def cmd_deploy(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge.deploy import DeployProgress, deploy_apps

    sources, issues = load_and_validate(args.paths)
    if issues:
        report_issues(io, issues, command="deploy")
        return EXIT_USAGE
    if args.strategy:
        if len(sources) != 1:
            raise UsageError(f"--strategy deploys exactly one app; the files hold {len(sources)}")
        return _run_strategy(args, io, environ, sources[0].app)
    client = make_client(args, environ)

    def show(progress: DeployProgress) -> None:
        io.error(str(progress))

    try:
        result = deploy_apps(
            client,
            [s.app for s in sources],
            wait=args.wait,
            timeout=args.wait_timeout,
            force=args.force,
            rollback_on_failure=args.rollback_on_failure,
            progress=show,
        )
    except DeploymentError as error:
        if io.json:
            io.result(output.to_json({"ok": False, "error": str(error), "apps": error.app_ids}))
        io.error(f"deploy failed: {error}")
        return EXIT_FAILED
    apps = [
        {
            "id": a.app_id,
            "action": a.action,
            "deployment_id": a.deployment_id,
            "version": a.version,
            "previous_version": a.previous_version,
        }
        for a in result.apps
    ]
    if io.json:
        io.result(output.to_json({"ok": True, "waited": result.waited, "apps": apps}))
    else:
        state = "finished" if result.waited else "started"
        for a in result.apps:
            ref = f" (deployment {a.deployment_id} {state})" if a.deployment_id else ""
            io.result(f"{a.app_id}: {a.action}{ref}\n")
    return EXIT_OK


def _run_strategy(
    args: argparse.Namespace, io: Io, environ: Mapping[str, str], app: Optional[Mapping[str, Any]]
) -> int:
    """``deploy --strategy`` (``app`` given) and ``strategy resume|abort`` (``app`` None)."""
    from marathon_bridge import strategies

    client = make_client(args, environ)
    common: dict[str, Any] = {
        "drain_delay": args.drain_delay,
        "timeout": args.wait_timeout,
        "progress": io.error,
    }
    group = args.group if app is None else strategies.group_of(app)
    try:
        if app is None:
            run = strategies.resume if args.action == "resume" else strategies.rollback
            report = run(client, group, **common)
        elif args.strategy == "blue-green":
            report = strategies.blue_green_deploy(
                client, app, min_healthy=args.min_healthy, **common
            )
        else:
            report = strategies.canary_deploy(
                client,
                app,
                steps=args.canary_steps,
                pause=args.pause,
                confirm=_ask_stdin(io) if args.confirm else None,
                min_healthy=args.min_healthy,
                **common,
            )
    except strategies.StrategyError as error:
        if io.json:
            io.result(output.to_json({"ok": False, "error": str(error), "group": group}))
        io.error(f"{args.command} failed: {error}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        io.error(
            f"interrupted; finish with `marathon-bridge strategy resume {group}` "
            f"or undo with `marathon-bridge strategy abort {group}`"
        )
        return 130
    if io.json:
        data = {
            "ok": True,
            "group": report.group,
            "outcome": report.outcome,
            "old_app": report.old_app,
            "new_app": report.new_app,
            "steps": report.steps,
            "serving": report.serving,
            "placement": report.placement,
        }
        io.result(output.to_json(data))
    else:
        io.result(f"{report}\n")
    return EXIT_OK


def _ask_stdin(io: Io) -> Callable[[int, int, int], bool]:
    def confirm(share: int, new: int, old: int) -> bool:
        io.error(f"{share}% reached ({new} new, {old} old). Next step? [y/N] ")
        return sys.stdin.readline().strip().lower() in ("y", "yes")

    return confirm


def cmd_strategy(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    return _run_strategy(args, io, environ, None)
