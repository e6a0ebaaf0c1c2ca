"""The ``marathon-bridge`` command line: validate, diff, deploy and inspect Marathon apps.

Global options (``--marathon``, ``--user``/``--password``, ``--token``, ``--ca-bundle``,
``--insecure``, ``--timeout``, ``--output``, ``--verbose``) may stand before or after the command.
``--timeout`` is the HTTP timeout in seconds, except after ``deploy``, where it is the time to wait
for the deployment (``--wait-timeout`` there and in scale/restart/rollback/delete).

``deploy --strategy blue-green|canary`` and ``strategy resume|abort GROUP`` run the deploys of
:mod:`marathon_bridge.strategies` (docs/deploys.md).

Exit codes: 0 success; 1 a deployment failed or timed out, or ``diff`` found differences;
2 usage error or invalid input (nothing was sent to Marathon); 3 Marathon could not be reached or
refused the request (its own message is printed).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, TextIO, Union

from marathon_bridge import __version__, output
from marathon_bridge.errors import (
    Conflict,
    DefinitionError,
    DeploymentError,
    Invalid,
    Issue,
    MarathonError,
    NotFound,
    Unavailable,
)

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MARATHON = 3

DEFAULT_MARATHON = "http://127.0.0.1:8080"
DEFAULT_HTTP_TIMEOUT = 30.0
DEFAULT_WAIT_TIMEOUT = 600.0
CONNECT_TIMEOUT = 3.05
PATH_HELP = "definition file (.json, .yaml, .yml): one app, a list of apps, or a group"

ENV_URL = "MARATHON_URL"
ENV_USER = "MARATHON_USER"
ENV_PASSWORD = "MARATHON_PASSWORD"  # noqa: S105 -- the variable's name, not a password
ENV_TOKEN = "MARATHON_TOKEN"  # noqa: S105


class UsageError(Exception):
    """Bad command-line input: exit 2, nothing sent."""


@dataclass
class Io:
    """Where the command writes: ``out`` for results, ``err`` for errors and progress."""

    out: TextIO
    err: TextIO
    json: bool

    def result(self, text: str) -> None:
        self.out.write(text)

    def error(self, text: str) -> None:
        self.err.write(text.rstrip("\n") + "\n")


# --- argument parsing -----------------------------------------------------------------------------


def _global_options(*, with_timeout: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the command. Defaults are applied after parsing
    (``SUPPRESS`` here), so a value given in either place survives."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("global options")
    s = argparse.SUPPRESS
    g.add_argument(
        "--marathon",
        "-m",
        action="append",
        metavar="URL",
        default=s,
        help=f"Marathon base URL, repeatable (env {ENV_URL}, comma separated; "
        f"default {DEFAULT_MARATHON})",
    )
    g.add_argument("--user", default=s, help=f"basic auth user (env {ENV_USER})")
    g.add_argument("--password", default=s, help=f"basic auth password (prefer env {ENV_PASSWORD})")
    g.add_argument("--token", default=s, help=f"DC/OS auth token (prefer env {ENV_TOKEN})")
    g.add_argument("--ca-bundle", default=s, metavar="PATH", help="CA bundle to verify TLS with")
    g.add_argument(
        "--insecure",
        action="store_true",
        default=s,
        help="do not verify Marathon's TLS certificate",
    )
    if with_timeout:
        g.add_argument(
            "--timeout",
            dest="http_timeout",
            type=_http_timeout,
            default=s,
            metavar="S",
            help=f"HTTP timeout in seconds (default {DEFAULT_HTTP_TIMEOUT:g})",
        )
    g.add_argument(
        "--request-timeout",
        dest="http_timeout",
        type=_http_timeout,
        default=s,
        metavar="S",
        help="HTTP timeout in seconds (also valid after deploy)",
    )
    g.add_argument("--output", "-o", choices=("text", "json"), default=s, help="output format")
    g.add_argument("--verbose", "-v", action="store_true", default=s, help="log requests to stderr")
    return p


GLOBAL_DEFAULTS: Mapping[str, Any] = {
    "marathon": None,
    "user": None,
    "password": None,
    "token": None,
    "ca_bundle": None,
    "insecure": False,
    "http_timeout": DEFAULT_HTTP_TIMEOUT,
    "output": "text",
    "verbose": False,
}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _http_timeout(text: str) -> float:
    value = _positive_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _instances(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _port(text: str) -> int:
    value = _instances(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = _global_options(with_timeout=True)
    common_no_timeout = _global_options(with_timeout=False)
    parser = argparse.ArgumentParser(
        prog="marathon-bridge",
        parents=[common],
        description="Validate, diff, deploy and inspect Marathon apps.",
        epilog="exit codes: 0 ok, 1 deployment failed or diff found changes, "
        "2 usage or invalid input, 3 Marathon unreachable or refused",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, *, own_timeout: bool = False) -> argparse.ArgumentParser:
        parent = common_no_timeout if own_timeout else common
        return sub.add_parser(name, parents=[parent], help=help_text, description=help_text)

    p = command("validate", "check definition files offline (nothing is sent)")
    p.add_argument("paths", nargs="+", metavar="PATH", help=PATH_HELP)

    p = command("diff", "show what deploying the files would change")
    p.add_argument("paths", nargs="+", metavar="PATH", help=PATH_HELP)

    p = command("deploy", "create or update the apps and wait for the deployment", own_timeout=True)
    p.add_argument("paths", nargs="+", metavar="PATH", help=PATH_HELP)
    _wait_options(p, with_timeout=True)
    p.add_argument(
        "--rollback-on-failure",
        action="store_true",
        help="roll back to the previous version when the deployment fails or times out",
    )
    _strategy_options(p)
    p = command(
        "strategy",
        "finish (resume) or undo (abort) an interrupted blue-green/canary run of a group",
    )
    p.add_argument("action", choices=("resume", "abort"))
    p.add_argument("group", metavar="GROUP", help="the HAPROXY_DEPLOYMENT_GROUP of the apps")
    p.add_argument(
        "--drain-delay", type=_positive_float, default=5.0, metavar="S", help=DRAIN_DELAY_HELP
    )
    p.add_argument(
        "--wait-timeout",
        dest="wait_timeout",
        type=_positive_float,
        default=DEFAULT_WAIT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for each step (default {DEFAULT_WAIT_TIMEOUT:g})",
    )

    command("apps", "list apps with their task counts")
    p = command("tasks", "list tasks (of one app, or of all)")
    p.add_argument("app", nargs="?", metavar="APP")
    command("services", "list service ports and the endpoints behind them")

    p = command("scale", "set the number of instances")
    p.add_argument("app", metavar="APP")
    p.add_argument("instances", type=_instances, metavar="N")
    _wait_options(p)
    p = command("restart", "restart every task of an app (rolling)")
    p.add_argument("app", metavar="APP")
    _wait_options(p)
    p = command("rollback", "go back to an earlier version (default: the previous one)")
    p.add_argument("app", metavar="APP")
    p.add_argument("--version", dest="to_version", metavar="V", help="the version to go back to")
    _wait_options(p)
    p = command("delete", "delete an app")
    p.add_argument("app", metavar="APP")
    _wait_options(p, force=False)

    p = command("emulator", "run a local Marathon emulator (for experiments and demos)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0 = any)")
    p.add_argument(
        "--run-tasks",
        action="store_true",
        help="run each task's cmd as a local process with $PORT0...",
    )
    return parser


DRAIN_DELAY_HELP = (
    "seconds every sidecar gets to put new instances in rotation before old ones are killed, "
    "and before a scaled-down app is deleted (default 5)"
)


def _canary_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of percentages: {text!r}") from None
    if not steps or not all(1 <= step <= 100 for step in steps):
        raise argparse.ArgumentTypeError(f"percentages must be 1..100: {text!r}")
    return steps


def _strategy_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("blue-green / canary (docs/deploys.md)")
    g.add_argument(
        "--strategy",
        choices=("blue-green", "canary"),
        help="deploy the one app of PATH as a second app of its deployment group",
    )
    g.add_argument(
        "--canary-steps",
        type=_canary_steps,
        default=(5, 25, 50, 100),
        metavar="P,P,...",
        help="traffic shares in percent (default 5,25,50,100); counts round up",
    )
    g.add_argument(
        "--pause", type=_positive_float, default=0.0, metavar="S", help="seconds between steps"
    )
    g.add_argument(
        "--confirm", action="store_true", help="ask on stdin before each next canary step"
    )
    g.add_argument(
        "--drain-delay", type=_positive_float, default=5.0, metavar="S", help=DRAIN_DELAY_HELP
    )
    g.add_argument(
        "--min-healthy",
        type=_instances,
        default=1,
        metavar="N",
        help="never leave fewer healthy instances on the service port (default 1)",
    )


def _wait_options(
    p: argparse.ArgumentParser, *, with_timeout: bool = False, force: bool = True
) -> None:
    p.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="return once Marathon accepted the change",
    )
    names = ["--timeout", "--wait-timeout"] if with_timeout else ["--wait-timeout"]
    p.add_argument(
        *names,
        dest="wait_timeout",
        type=_positive_float,
        default=DEFAULT_WAIT_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for the deployment (default {DEFAULT_WAIT_TIMEOUT:g})",
    )
    if force:
        p.add_argument(
            "--force",
            action="store_true",
            help="override deployments that lock the app (Marathon's force=true)",
        )


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for key, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, default)
    return args


# --- client from options --------------------------------------------------------------------------


def marathon_urls(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    if args.marathon:
        urls = [u.strip() for value in args.marathon for u in value.split(",")]
    else:
        urls = [u.strip() for u in environ.get(ENV_URL, "").split(",")]
    urls = [u for u in urls if u]
    return urls or [DEFAULT_MARATHON]


def make_client(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    from marathon_bridge.client import BasicAuth, MarathonClient, TokenAuth

    user = args.user if args.user is not None else environ.get(ENV_USER)
    password = args.password if args.password is not None else environ.get(ENV_PASSWORD)
    token = args.token if args.token is not None else environ.get(ENV_TOKEN)
    auth: Union[BasicAuth, TokenAuth, None] = None
    if user and token:
        raise UsageError("give either --user/--password or --token, not both")
    if user:
        if password is None:
            raise UsageError(f"--user needs --password (or {ENV_PASSWORD})")
        auth = BasicAuth(user, password)
    elif password is not None and args.password is not None:
        raise UsageError(f"--password needs --user (or {ENV_USER})")
    elif token:
        auth = TokenAuth(token)
    if args.ca_bundle and args.insecure:
        raise UsageError("give either --ca-bundle or --insecure, not both")
    verify: Union[bool, str] = args.ca_bundle or not args.insecure
    timeout = (min(CONNECT_TIMEOUT, args.http_timeout), args.http_timeout)
    try:
        return MarathonClient(
            marathon_urls(args, environ), auth=auth, verify=verify, timeout=timeout
        )
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


# --- loading definitions --------------------------------------------------------------------------


def load_and_validate(paths: Sequence[str]) -> tuple[list[Any], list[Issue]]:
    """Every app of every file, and every problem found (file problems and rule violations)."""
    from marathon_bridge.definitions import load_definitions, validate_apps

    sources: list[Any] = []
    issues: list[Issue] = []
    for path in paths:
        try:
            sources.extend(load_definitions(path))
        except DefinitionError as error:
            issues.extend(_with_source(error.issues, path))
    issues.extend(validate_apps(sources))
    return sources, issues


def _with_source(issues: Sequence[Issue], path: str) -> list[Issue]:
    return [i if i.source else Issue(i.path, i.message, path, i.kind) for i in issues]


def report_issues(io: Io, issues: Sequence[Issue], *, command: str) -> None:
    if io.json:
        io.result(output.to_json({"valid": False, "issues": output.issues_json(issues)}))
    for issue in issues:
        io.error(output.issue_text(issue))
    io.error(f"{command}: {len(issues)} problem(s) found; nothing was sent to Marathon")


# --- commands -------------------------------------------------------------------------------------


Command = Callable[[argparse.Namespace, Io, Mapping[str, str]], int]


def cmd_validate(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    sources, issues = load_and_validate(args.paths)
    if issues:
        report_issues(io, issues, command="validate")
        return EXIT_USAGE
    ids = [str(s.app.get("id", "")) for s in sources]
    if io.json:
        io.result(output.to_json({"valid": True, "issues": [], "apps": ids}))
    else:
        io.result(f"ok: {len(ids)} app(s) in {len(args.paths)} file(s) are valid\n")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge.definitions import diff_apps

    sources, issues = load_and_validate(args.paths)
    if issues:
        report_issues(io, issues, command="diff")
        return EXIT_USAGE
    client = make_client(args, environ)
    reports = []
    for source in sources:
        app_id = _absolute(str(source.app.get("id", "")))
        live = _get_or_none(client, app_id)
        changes = diff_apps(source.app, live) if live is not None else []
        status = "new" if live is None else ("changed" if changes else "unchanged")
        reports.append((app_id, source.source, status, changes))
    differs = any(status != "unchanged" for _, _, status, _ in reports)
    if io.json:
        io.result(
            output.to_json(
                {
                    "differences": differs,
                    "apps": [
                        {
                            "id": app_id,
                            "source": where,
                            "status": status,
                            "changes": [_change_json(c) for c in changes],
                        }
                        for app_id, where, status, changes in reports
                    ],
                }
            )
        )
    else:
        for app_id, where, status, changes in reports:
            io.result(_diff_text(app_id, where, status, changes))
    return EXIT_FAILED if differs else EXIT_OK


def _diff_text(app_id: str, where: str, status: str, changes: Sequence[Any]) -> str:
    if status == "new":
        return f"{app_id} ({where}): new app, would be created\n"
    if status == "unchanged":
        return f"{app_id} ({where}): no changes\n"
    lines = [f"{app_id} ({where}): {len(changes)} change(s)"]
    for change in changes:
        lines.append(f"  {change.path}: {_change_value(change.old)} -> {_change_value(change.new)}")
    return "\n".join(lines) + "\n"


def _is_missing(value: Any) -> bool:
    from marathon_bridge.definitions import MISSING

    return value is MISSING


def _change_value(value: Any) -> str:
    return "(absent)" if _is_missing(value) else output.value_text(value)


def _change_json(change: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"path": change.path}
    if not _is_missing(change.old):
        item["old"] = change.old
    if not _is_missing(change.new):
        item["new"] = change.new
    return item


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


def cmd_apps(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    apps = make_client(args, environ).list_apps(embed=["apps.counts", "apps.deployments"])
    if io.json:
        io.result(output.to_json(output.apps_json(apps)))
    else:
        io.result(output.table(*output.apps_rows(apps)))
    return EXIT_OK


def cmd_tasks(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    client = make_client(args, environ)
    tasks = client.list_app_tasks(_absolute(args.app)) if args.app else client.list_tasks()
    if io.json:
        io.result(output.to_json(output.tasks_json(tasks)))
    else:
        io.result(output.table(*output.tasks_rows(tasks)))
    return EXIT_OK


def cmd_services(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge.services import services_from_apps

    apps = make_client(args, environ).list_apps(embed=["apps.tasks"])
    services = services_from_apps(apps)
    if io.json:
        io.result(output.to_json(output.services_json(services)))
    else:
        io.result(output.table(*output.services_rows(services)))
    return EXIT_OK


def cmd_scale(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge import deploy

    client = make_client(args, environ)
    ref = deploy.scale(client, args.app, args.instances, force=args.force)
    what = f"scaled {_absolute(args.app)} to {args.instances}"
    return _follow(client, args, io, ref, what, expect=deploy.EXPECT_RUNNING)


def cmd_restart(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge import deploy

    client = make_client(args, environ)
    ref = deploy.restart(client, args.app, force=args.force)
    return _follow(
        client, args, io, ref, f"restarted {_absolute(args.app)}", expect=deploy.EXPECT_RUNNING
    )


def cmd_rollback(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge import deploy

    client = make_client(args, environ)
    try:
        version, ref = deploy.rollback(client, args.app, args.to_version, force=args.force)
    except DeploymentError as error:
        io.error(f"rollback: {error}")
        return EXIT_FAILED
    what = f"rolled back {_absolute(args.app)} to version {version}"
    return _follow(client, args, io, ref, what, expect=deploy.EXPECT_RUNNING)


def cmd_delete(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    from marathon_bridge import deploy

    client = make_client(args, environ)
    ref = deploy.delete(client, args.app)
    return _follow(
        client, args, io, ref, f"deleted {_absolute(args.app)}", expect=deploy.EXPECT_GONE
    )


def _follow(
    client: Any, args: argparse.Namespace, io: Io, ref: Any, what: str, *, expect: str
) -> int:
    from marathon_bridge.deploy import WaitTarget, wait_for_deployments

    deployment_id = str(getattr(ref, "deployment_id", "") or "")
    if args.wait and deployment_id:
        try:
            wait_for_deployments(
                client,
                [WaitTarget(deployment_id, _absolute(args.app), expect)],
                timeout=args.wait_timeout,
                progress=lambda p: io.error(str(p)),
            )
        except DeploymentError as error:
            if io.json:
                io.result(
                    output.to_json(
                        {"ok": False, "error": str(error), "deployment_id": deployment_id}
                    )
                )
            io.error(f"{args.command} failed: {error}")
            return EXIT_FAILED
    if io.json:
        io.result(
            output.to_json(
                {
                    "ok": True,
                    "app_id": _absolute(args.app),
                    "deployment_id": deployment_id,
                    "waited": bool(args.wait and deployment_id),
                    "message": what,
                }
            )
        )
    else:
        io.result(f"{what} (deployment {deployment_id})\n" if deployment_id else f"{what}\n")
    return EXIT_OK


def cmd_emulator(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    """Serve an emulated Marathon until SIGINT/SIGTERM (the emulator's own runner)."""
    from marathon_bridge.testing import run_emulator

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        io.error(f"warning: the emulator listens on {args.host}, beyond this machine's loopback")
    return run_emulator(host=args.host, port=args.port, run_tasks=args.run_tasks)


COMMANDS: Mapping[str, Command] = {
    "validate": cmd_validate,
    "diff": cmd_diff,
    "deploy": cmd_deploy,
    "strategy": cmd_strategy,
    "apps": cmd_apps,
    "tasks": cmd_tasks,
    "services": cmd_services,
    "scale": cmd_scale,
    "restart": cmd_restart,
    "rollback": cmd_rollback,
    "delete": cmd_delete,
    "emulator": cmd_emulator,
}


# --- helpers --------------------------------------------------------------------------------------


def _absolute(app_id: str) -> str:
    return "/" + "/".join(p for p in app_id.split("/") if p)


def _get_or_none(client: Any, app_id: str) -> Optional[dict]:
    try:
        return dict(client.get_app(app_id))
    except NotFound:
        return None


def marathon_error_text(error: MarathonError) -> str:
    """Marathon's own message, its details, and what to do about a lock."""
    unreachable = isinstance(error, Unavailable) or not error.status
    lines = [f"Marathon unreachable: {error}" if unreachable else f"Marathon refused: {error}"]
    if isinstance(error, Invalid) and not error.issues and error.details:
        lines.append(f"  {error.details}")
    if isinstance(error, Conflict) and error.deployment_ids:
        lines.append(f"  locked by deployment(s): {', '.join(error.deployment_ids)}")
        lines.append("  use --force to override them")
    return "\n".join(lines)


def marathon_error_json(error: MarathonError) -> dict[str, Any]:
    """The error as data: Marathon's message, status, issues and locking deployments."""
    data: dict[str, Any] = {
        "type": type(error).__name__,
        "message": error.message,
        "status": error.status,
    }
    if isinstance(error, Invalid):
        data["issues"] = output.issues_json(error.issues)
    if isinstance(error, Conflict):
        data["deployment_ids"] = error.deployment_ids
    return data


STANDARD_RECORD_KEYS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _FieldsFormatter(logging.Formatter):
    """``level name: message key=value ...``: the structured ``extra=`` fields shown too."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {k: v for k, v in vars(record).items() if k not in STANDARD_RECORD_KEYS}
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
        return text


class _Logging:
    """Logs of the ``marathon_bridge`` package to the command's stderr while it runs: warnings
    (a Marathon URL that did not answer, TLS checks off), everything with ``--verbose``."""

    def __init__(self, verbose: bool, err: TextIO) -> None:
        self.logger = logging.getLogger("marathon_bridge")
        self.handler = logging.StreamHandler(err)
        self.handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
        self.handler.setFormatter(_FieldsFormatter("%(levelname)s %(name)s: %(message)s"))
        self.level = self.logger.level

    def __enter__(self) -> _Logging:
        self.logger.addHandler(self.handler)
        if self.handler.level == logging.DEBUG:
            self.logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    environ: Optional[Mapping[str, str]] = None,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
) -> int:
    """Run one command; return its exit code (never raises for expected failures)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    env = os.environ if environ is None else environ
    try:
        args = parse_args(argv)
    except SystemExit as exit_request:  # argparse: --help (0) or a usage error (2)
        code = exit_request.code
        return code if isinstance(code, int) else EXIT_USAGE
    io = Io(out=out, err=err, json=args.output == "json")
    with _Logging(args.verbose, err):
        return _run(args, io, env)


def _run(args: argparse.Namespace, io: Io, env: Mapping[str, str]) -> int:
    try:
        return COMMANDS[args.command](args, io, env)
    except UsageError as error:
        io.error(f"marathon-bridge {args.command}: {error}")
        return EXIT_USAGE
    except DefinitionError as error:
        for issue in error.issues:
            io.error(output.issue_text(issue))
        return EXIT_USAGE
    except MarathonError as error:
        if io.json:
            io.result(output.to_json({"ok": False, "error": marathon_error_json(error)}))
        io.error(marathon_error_text(error))
        return EXIT_MARATHON
    except DeploymentError as error:
        io.error(f"{args.command} failed: {error}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        io.error("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
