"""How a command fails: one exception, one exit code per kind, one JSON shape for every command.

With ``--output json`` every failure prints one document on stdout (stderr still gets the text)::

    {"ok": false,
     "error": {"kind": "usage" | "invalid" | "marathon" | "deployment" | "interrupted",
               "message": "one line", "exit_code": 2, ...what the kind adds}}

``usage`` (exit 2): bad options or arguments, nothing sent. ``invalid`` (exit 2): the definition
files have problems (``issues``; ``warnings`` too, for ``--strict``), nothing sent.
``marathon`` (exit 3): Marathon could not be reached or refused (``status``, ``marathon_error``,
and ``issues`` or ``deployment_ids`` when Marathon gave them). ``deployment`` (exit 1): a
deployment failed, timed out or was rolled back (``deployment_id``, ``app_ids``; ``group`` for
blue/green and canary runs). ``interrupted`` (exit 130): Ctrl-C.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from marathon_bridge import output
from marathon_bridge.errors import (
    Conflict,
    DefinitionError,
    DeploymentError,
    Invalid,
    Issue,
    MarathonBridgeError,
    MarathonError,
    Unavailable,
)

EXIT_CODES = {"usage": 2, "invalid": 2, "marathon": 3, "deployment": 1, "interrupted": 130}


class UsageError(Exception):
    """Bad command-line input: exit 2, nothing sent."""


class CommandError(Exception):
    """A command failed: its kind, a one-line message, the lines for stderr, details for JSON."""

    def __init__(
        self, kind: str, message: str, *, text: Sequence[str] = (), **details: Any
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.exit_code = EXIT_CODES[kind]
        self.text = list(text) or [message]
        self.details = details

    def json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "message": self.message,
            "exit_code": self.exit_code,
            **self.details,
        }


def invalid_input(
    issues: Sequence[Issue], warnings: Sequence[Issue], *, command: str, strict: bool = False
) -> CommandError:
    """The definition files have problems (unknown fields count with ``--strict``): nothing
    was sent. Every issue and warning is listed."""
    counted = len(issues) + (len(warnings) if strict else 0)
    summary = f"{command}: {counted} problem(s) found"
    if strict and warnings:
        summary += f" ({len(warnings)} unknown field(s), refused by --strict)"
    return CommandError(
        "invalid",
        f"{summary}; nothing was sent to Marathon",
        text=[output.issue_text(i) for i in [*issues, *warnings]]
        + [f"{summary}; nothing was sent to Marathon"],
        issues=output.issues_json(issues),
        warnings=output.issues_json(warnings),
    )


def failure_of(error: BaseException, command: str) -> CommandError:
    """The :class:`CommandError` for whatever a command raised."""
    if isinstance(error, CommandError):
        return error
    if isinstance(error, UsageError):
        return CommandError("usage", f"marathon-bridge {command}: {error}")
    if isinstance(error, DefinitionError):
        return invalid_input(error.issues, [], command=command)
    if isinstance(error, MarathonError):
        data = marathon_error_json(error)
        return CommandError("marathon", error.message, text=[marathon_error_text(error)], **data)
    if isinstance(error, DeploymentError):
        return CommandError(
            "deployment",
            f"{command} failed: {error}",
            deployment_id=error.deployment_id,
            app_ids=error.app_ids,
        )
    if isinstance(error, MarathonBridgeError):
        return CommandError("deployment", f"{command} failed: {error}")
    if isinstance(error, KeyboardInterrupt):
        return CommandError("interrupted", "interrupted")
    raise error


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
    """Marathon's side of an error: status, the error class, issues and locking deployments."""
    data: dict[str, Any] = {"marathon_error": type(error).__name__, "status": error.status}
    if isinstance(error, Invalid):
        data["issues"] = output.issues_json(error.issues)
    if isinstance(error, Conflict):
        data["deployment_ids"] = error.deployment_ids
    return data
