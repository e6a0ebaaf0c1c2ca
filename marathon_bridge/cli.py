"""The ``marathon-bridge`` command line: validate, diff, deploy and inspect Marathon apps.

Global options (``--marathon``, ``--user``/``--password``, ``--token``, ``--ca-bundle``,
``--insecure``, ``--timeout``, ``--request-timeout``, ``--output``, ``--verbose``) may stand before
or after the command. ``--timeout`` is how long to wait for the deployment, in every command that
waits for one (deploy, strategy, scale, restart, rollback, delete); ``--request-timeout`` is how
long one HTTP request may take.

``deploy --strategy blue-green|canary`` and ``strategy resume|abort GROUP`` run the deploys of
:mod:`marathon_bridge.strategies` (docs/deploys.md).

Exit codes: 0 success; 1 a deployment failed or timed out, or ``diff`` found differences;
2 usage error or invalid input (nothing was sent to Marathon); 3 Marathon could not be reached or
refused the request (its own message is printed); 130 interrupted. With ``--output json`` every
failure is one document of one shape (:mod:`marathon_bridge.commands.failures`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Optional, TextIO

from marathon_bridge import output
from marathon_bridge.cli_parser import ArgumentsError, build_parser, parse_args, wants_json
from marathon_bridge.commands.change import (
    cmd_delete,
    cmd_restart,
    cmd_rollback,
    cmd_scale,
)
from marathon_bridge.commands.common import EXIT_USAGE, Command, Io
from marathon_bridge.commands.definitions import cmd_diff, cmd_validate
from marathon_bridge.commands.deploy import cmd_deploy, cmd_strategy
from marathon_bridge.commands.emulator import cmd_emulator
from marathon_bridge.commands.failures import CommandError, UsageError, failure_of
from marathon_bridge.commands.inspect import cmd_apps, cmd_services, cmd_tasks
from marathon_bridge.errors import MarathonBridgeError
from marathon_bridge.logs import SHORT_FORMAT, FieldsFormatter

__all__ = ["COMMANDS", "build_parser", "main", "parse_args"]

log = logging.getLogger(__name__)

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


class _Logging:
    """Logs of the ``marathon_bridge`` package to the command's stderr while it runs: warnings
    (a Marathon URL that did not answer, TLS checks off), everything with ``--verbose``."""

    def __init__(self, verbose: bool, err: TextIO) -> None:
        self.logger = logging.getLogger("marathon_bridge")
        self.handler = logging.StreamHandler(err)
        self.handler.setLevel(logging.DEBUG if verbose else logging.WARNING)
        self.handler.setFormatter(FieldsFormatter(SHORT_FORMAT))
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
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(arguments)
    except UsageError as error:  # argparse (ArgumentsError) or a check after it
        io = Io(out=out, err=err, json=wants_json(arguments))
        if isinstance(error, ArgumentsError):
            io.error(error.usage.rstrip())
        prog = error.prog if isinstance(error, ArgumentsError) else "marathon-bridge"
        _report(io, CommandError("usage", f"{prog}: {error}"))
        return EXIT_USAGE
    except SystemExit as exit_request:  # --help or --version
        code = exit_request.code
        return code if isinstance(code, int) else EXIT_USAGE
    io = Io(out=out, err=err, json=args.output == "json")
    with _Logging(args.verbose, err):
        return _run(args, io, env)


def _run(args: argparse.Namespace, io: Io, env: Mapping[str, str]) -> int:
    try:
        return COMMANDS[args.command](args, io, env)
    except (MarathonBridgeError, UsageError, CommandError, KeyboardInterrupt) as error:
        failure = failure_of(error, args.command)
    _report(io, failure)
    return failure.exit_code


def _report(io: Io, failure: CommandError) -> None:
    """The failure's text on stderr and, with ``--output json``, its document on stdout."""
    if io.json:
        io.result(output.to_json({"ok": False, "error": failure.json()}))
    for line in failure.text:
        io.error(line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
