"""What every ``marathon-bridge`` command shares: where it writes, exit codes, the client built
from the options, definition files loaded and checked, and small id helpers."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, TextIO, Union

from marathon_bridge import output
from marathon_bridge.cli_parser import (
    CONNECT_TIMEOUT,
    DEFAULT_MARATHON,
    ENV_PASSWORD,
    ENV_TOKEN,
    ENV_URL,
    ENV_USER,
)
from marathon_bridge.commands.failures import UsageError, invalid_input
from marathon_bridge.definitions.load import AppSource
from marathon_bridge.errors import DefinitionError, Issue, NotFound

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MARATHON = 3


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


def load_and_validate(paths: Sequence[str]) -> tuple[list[AppSource], list[Issue], list[Issue]]:
    """Every app of every file, every problem found (file problems and rule violations), and
    every field Marathon would ignore (warnings)."""
    from marathon_bridge.definitions import field_warnings, load_definitions, validate_apps

    sources: list[AppSource] = []
    issues: list[Issue] = []
    for path in paths:
        try:
            sources.extend(load_definitions(path))
        except DefinitionError as error:
            issues.extend(i if i.source else replace(i, source=path) for i in error.issues)
    issues.extend(validate_apps(sources))
    return sources, issues, field_warnings(sources)


def checked_definitions(
    paths: Sequence[str], io: Io, *, command: str, strict: bool = False
) -> tuple[list[AppSource], list[Issue]]:
    """The apps of the files and the fields Marathon would ignore in them, once the apps are
    valid: otherwise (or, with ``strict``, when a field is unknown to Marathon) a
    :class:`CommandError` that lists every problem. The warnings go to stderr too."""
    sources, issues, warnings = load_and_validate(paths)
    if issues or (strict and warnings):
        raise invalid_input(issues, warnings, command=command, strict=strict)
    for warning in warnings:
        io.error(output.issue_text(warning))
    return sources, warnings


Command = Callable[[argparse.Namespace, Io, Mapping[str, str]], int]


def absolute(app_id: str) -> str:
    return "/" + "/".join(p for p in app_id.split("/") if p)


def get_or_none(client: Any, app_id: str) -> Optional[dict]:
    try:
        return dict(client.get_app(app_id))
    except NotFound:
        return None
