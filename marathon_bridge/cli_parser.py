"""The ``marathon-bridge`` command line's options: global ones (before or after the command) and
each command's own. A declarative table; what the commands do is in :mod:`marathon_bridge.commands`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any, Callable, NoReturn, Optional

from marathon_bridge import __version__
from marathon_bridge.commands.failures import UsageError

DEFAULT_MARATHON = "http://127.0.0.1:8080"
DEFAULT_HTTP_TIMEOUT = 30.0
DEFAULT_WAIT_TIMEOUT = 600.0
CONNECT_TIMEOUT = 3.05
PATH_HELP = "definition file (.json, .yaml, .yml): one app, a list of apps, or a group"

# the commands that wait for a deployment: --timeout is how long
WAITING = ("deploy", "strategy", "scale", "restart", "rollback", "delete")
WAITING_LIST = ", ".join(WAITING)

ENV_URL = "MARATHON_URL"
ENV_USER = "MARATHON_USER"
ENV_PASSWORD = "MARATHON_PASSWORD"  # noqa: S105 -- the variable's name, not a password
ENV_TOKEN = "MARATHON_TOKEN"  # noqa: S105


# --- argument parsing -----------------------------------------------------------------------------


class ArgumentsError(UsageError):
    """argparse refused the command line (``prog`` is the (sub)command's, ``usage`` its usage)."""

    def __init__(self, message: str, prog: str, usage: str) -> None:
        super().__init__(message)
        self.prog = prog
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`ArgumentsError` instead of exiting, so that a usage error
    can be reported like every other failure (as JSON with ``--output json``)."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentsError(message, self.prog, self.format_usage())


def wants_json(argv: Sequence[str]) -> bool:
    """Whether a command line asks for JSON output (read before it is known to parse)."""
    for index, arg in enumerate(argv):
        if arg in ("--output=json", "-ojson"):
            return True
        if arg in ("--output", "-o") and argv[index + 1 : index + 2] == ["json"]:
            return True
    return False


def _global_options() -> _Parser:
    """Options accepted before and after the command. Defaults are applied after parsing
    (``SUPPRESS`` here), so a value given in either place survives."""
    p = _Parser(add_help=False)
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
    g.add_argument(
        "--timeout",
        "--wait-timeout",
        dest="wait_timeout",
        type=_positive_float,
        default=s,
        metavar="S",
        help=f"seconds to wait for the deployment, in the commands that wait ({WAITING_LIST}; "
        f"strategy: for each step); default {DEFAULT_WAIT_TIMEOUT:g}",
    )
    g.add_argument(
        "--request-timeout",
        dest="http_timeout",
        type=_http_timeout,
        default=s,
        metavar="S",
        help=f"seconds one HTTP request to Marathon may take (default {DEFAULT_HTTP_TIMEOUT:g})",
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


def _canary_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of percentages: {text!r}") from None
    if not steps or not all(1 <= step <= 100 for step in steps):
        raise argparse.ArgumentTypeError(f"percentages must be 1..100: {text!r}")
    return steps


STRICT_HELP = "treat fields Marathon does not know (typos) as errors: exit 2, nothing sent"
DRAIN_DELAY_HELP = (
    "seconds every sidecar gets to put new instances in rotation before old ones are killed, "
    "and before a scaled-down app is deleted (default 5)"
)

AddCommand = Callable[..., argparse.ArgumentParser]


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = _Parser(
        prog="marathon-bridge",
        parents=[common],
        description="Validate, diff, deploy and inspect Marathon apps.",
        epilog="exit codes: 0 ok, 1 deployment failed or diff found changes, "
        "2 usage or invalid input, 3 Marathon unreachable or refused",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    _definition_commands(command)
    _inspect_commands(command)
    _change_commands(command)
    p = command("emulator", "run a local Marathon emulator (for experiments and demos)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port (default 8080; 0 = any)")
    p.add_argument(
        "--run-tasks",
        action="store_true",
        help="run each task's cmd as a local process with $PORT0...",
    )
    return parser


def _definition_commands(command: AddCommand) -> None:
    """validate, diff, deploy and strategy: the commands that read definition files."""
    p = command("validate", "check definition files offline (nothing is sent)")
    p.add_argument("paths", nargs="+", metavar="PATH", help=PATH_HELP)
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)

    p = command("diff", "show what deploying the files would change")
    p.add_argument("paths", nargs="+", metavar="PATH", help=PATH_HELP)

    p = command("deploy", "create or update the apps and wait for the deployment")
    p.add_argument("paths", nargs="+", metavar="PATH", help=PATH_HELP)
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)
    _wait_options(p)
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


def _inspect_commands(command: AddCommand) -> None:
    """apps, tasks, services: what runs."""
    command("apps", "list apps with their task counts")
    p = command("tasks", "list tasks (of one app, or of all)")
    p.add_argument("app", nargs="?", metavar="APP")
    command("services", "list service ports and the endpoints behind them")


def _change_commands(command: AddCommand) -> None:
    """scale, restart, rollback, delete: one change to one app."""
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


def _wait_options(p: argparse.ArgumentParser, *, force: bool = True) -> None:
    p.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="return once Marathon accepted the change",
    )
    if force:
        p.add_argument(
            "--force",
            action="store_true",
            help="override deployments that lock the app (Marathon's force=true)",
        )


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The options, defaults filled in. Raises :class:`ArgumentsError` (argparse's complaints)
    or :class:`UsageError` (``--timeout`` on a command that waits for nothing)."""
    args = build_parser().parse_args(argv)
    if args.command not in WAITING:
        if hasattr(args, "wait_timeout"):
            raise UsageError(
                f"--timeout is how long to wait for a deployment, and `{args.command}` starts "
                "none; the time one HTTP request may take is --request-timeout"
            )
    elif not hasattr(args, "wait_timeout"):
        args.wait_timeout = DEFAULT_WAIT_TIMEOUT
    for key, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, default)
    return args
