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
from typing import Any, Optional, TextIO

from marathon_bridge import output
from marathon_bridge.cli_parser import build_parser, parse_args
from marathon_bridge.commands import COMMANDS
from marathon_bridge.commands.common import (
    EXIT_FAILED,
    EXIT_MARATHON,
    EXIT_USAGE,
    Io,
    UsageError,
)
from marathon_bridge.errors import (
    Conflict,
    DefinitionError,
    DeploymentError,
    Invalid,
    MarathonError,
    Unavailable,
)

__all__ = ["build_parser", "main", "marathon_error_json", "marathon_error_text", "parse_args"]

log = logging.getLogger(__name__)


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
