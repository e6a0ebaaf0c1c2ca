"""``deploy`` (plain, blue-green or canary) and ``strategy resume|abort``.

A failed deployment raises (``DeploymentError``) and is reported by the CLI with what Marathon
says about it (:mod:`.failures`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

from marathon_bridge import output
from marathon_bridge.commands.common import (
    EXIT_OK,
    Io,
    UsageError,
    absolute,
    checked_definitions,
    get_or_none,
    make_client,
)
from marathon_bridge.commands.failures import CommandError
from marathon_bridge.commands.groups import live_members
from marathon_bridge.definitions.load import AppSource
from marathon_bridge.deployment_groups import group_of, what_to_run


def cmd_deploy(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge.deploy import DeployProgress, deploy_apps

    sources, _ = checked_definitions(args.paths, io, command="deploy", strict=args.strict)
    if args.strategy:
        if len(sources) != 1:
            raise UsageError(f"--strategy deploys exactly one app; the files hold {len(sources)}")
        return _run_strategy(args, io, environ, sources[0].app)
    client = make_client(args, environ)
    _refuse_group_members(client, sources)

    def show(progress: DeployProgress) -> None:
        io.error(str(progress))

    result = deploy_apps(
        client,
        [s.app for s in sources],
        wait=args.wait,
        timeout=args.wait_timeout,
        force=args.force,
        rollback_on_failure=args.rollback_on_failure,
        progress=show,
    )
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


def _refuse_group_members(client: Any, sources: Sequence[AppSource]) -> None:
    """A plain deploy of an app that runs as a deployment group would start a third app on the
    group's port: refuse, and say what to run instead."""
    for source in sources:
        app_id = absolute(str(source.app.get("id", "")))
        if get_or_none(client, app_id) is not None:
            continue
        members = live_members(client, source.app)
        if members:
            group = group_of(source.app)
            serving = ", ".join(str(m["id"]) for m in members)
            advice = what_to_run(group, source.source.split("#", 1)[0], members)
            raise UsageError(
                f"{app_id} runs as deployment group {group} ({serving}); a plain deploy would "
                f"start a third app on its port: {advice}"
            )


def _run_strategy(
    args: argparse.Namespace, io: Io, environ: Mapping[str, str], app: Optional[Mapping[str, Any]]
) -> int:
    """``deploy --strategy`` (``app`` given) and ``strategy resume|abort`` (``app`` None)."""
    from marathon_bridge import strategies

    client = make_client(args, environ)
    group = args.group if app is None else strategies.group_of(app)
    try:
        report = _strategy_report(args, io, client, app, group)
    except strategies.StrategyError as error:
        raise CommandError("deployment", f"{args.command} failed: {error}", group=group) from None
    except KeyboardInterrupt:
        raise CommandError(
            "interrupted",
            f"interrupted; finish with `marathon-bridge strategy resume {group}` "
            f"or undo with `marathon-bridge strategy abort {group}`",
            group=group,
        ) from None
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


def _strategy_report(
    args: argparse.Namespace, io: Io, client: Any, app: Optional[Mapping[str, Any]], group: str
) -> Any:
    from marathon_bridge import strategies

    common: dict[str, Any] = {
        "drain_delay": args.drain_delay,
        "timeout": args.wait_timeout,
        "progress": io.error,
    }
    if app is None:
        run = strategies.resume if args.action == "resume" else strategies.rollback
        return run(client, group, **common)
    if args.strategy == "blue-green":
        return strategies.blue_green_deploy(client, app, min_healthy=args.min_healthy, **common)
    return strategies.canary_deploy(
        client,
        app,
        steps=args.canary_steps,
        pause=args.pause,
        confirm=_ask_stdin(io) if args.confirm else None,
        min_healthy=args.min_healthy,
        **common,
    )


def _ask_stdin(io: Io) -> Callable[[int, int, int], bool]:
    def confirm(share: int, new: int, old: int) -> bool:
        io.error(f"{share}% reached ({new} new, {old} old). Next step? [y/N] ")
        return sys.stdin.readline().strip().lower() in ("y", "yes")

    return confirm


def cmd_strategy(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    return _run_strategy(args, io, environ, None)
