"""Validate app definitions offline, the way Marathon 1.10 does, reporting every problem at once.

:func:`validate_app` returns a list of :class:`~marathon_bridge.errors.Issue`, each with the
JSON path Marathon uses in its 422 ``details`` (``/id``, ``/container/portMappings(0)/hostPort``,
``/healthChecks(0)/protocol``, ``/`` for rules about the whole object) and Marathon's own message.

Two kinds of issues, as Marathon has two kinds of 422:
- ``kind="type"``: the JSON does not have the shape Marathon reads (wrong type, missing required
  field, RAML minimum/maximum/length/pattern, unknown enum literal). Messages are play-json keys
  (``error.expected.jsnumber``, ``error.path.missing``, ``error.max``, ...). Marathon answers
  these with ``{"message": "Invalid JSON", "details": [...]}`` and stops there.
- ``kind="semantic"``: rule violations found on a well-typed app (cmd/args/container, networks,
  ports, checks, constraints, ...), answered with ``{"message": "Object is not valid", ...}``.

This module reports both kinds together, so a user fixes everything in one go. Whoever imitates
Marathon (the emulator) should answer with the ``type`` issues alone when there are any, and
with the ``semantic`` ones otherwise. Semantic rules skip values of the wrong type (those already
have a ``type`` issue). Both functions are pure and never raise, whatever JSON they get.

:func:`human_message` turns an issue's play-json key into text for people, keeping the key:
``"expected a number (error.expected.jsnumber)"``.

Where this is stricter than Marathon, on purpose: a health check ``path`` on a non-HTTP check,
a ``COMMAND`` check without ``command`` and a ``MAX_PER``/``IS`` constraint without a value are
reported. Not checked (they depend on Marathon's flags): enabled features (secrets, GPUs,
external volumes) and the accepted role names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Optional

from marathon_bridge.definitions.load import AppSource, resolve_id
from marathon_bridge.definitions.messages import human_message
from marathon_bridge.definitions.normalize import canonical_view
from marathon_bridge.definitions.rules import checks, identity, networking
from marathon_bridge.definitions.rules.base import Collector
from marathon_bridge.definitions.rules.checks import constraint_problem
from marathon_bridge.definitions.rules.identity import id_problems
from marathon_bridge.definitions.rules.networking import port_count, port_names
from marathon_bridge.definitions.schema import APP, check
from marathon_bridge.definitions.unknown import unknown_fields
from marathon_bridge.errors import Issue


def validate_app(
    app: Any, *, source: str = "", default_network_name: Optional[str] = None
) -> list[Issue]:
    """Every problem of one app definition, with Marathon's paths and messages.

    ``default_network_name`` is Marathon's ``--default_network_name``: without it, a
    ``container`` network needs a ``name``. Never raises; ``[]`` means valid.
    """
    out = Collector()
    if not isinstance(app, Mapping):
        out.add("/", "error.expected.jsobject", "type")
    else:
        for issue in check(APP, app):
            out.add(issue.path, issue.message, issue.kind)
        identity.check_ids(app, out)
        view = canonical_view(app)
        identity.check_legacy(app, out)
        identity.check_command(app, view, out)
        networking.check_networks(view, out, default_network_name)
        networking.check_explicit_network_ports(app, out)
        networking.check_ports(view, out)
        networking.check_container(view, out)
        checks.check_health_checks(view, out)
        checks.check_readiness_checks(view, out)
        checks.check_constraints(view, out)
        checks.check_scheduling(view, out)
        checks.check_env(view, out)
    if source:
        return [replace(i, source=source) for i in out.issues]
    return out.issues


def validate_apps(
    apps: Sequence[AppSource], *, default_network_name: Optional[str] = None
) -> list[Issue]:
    """All issues of all apps (``source``, line and column filled in), plus ids used by more
    than one app."""
    issues: list[Issue] = []
    first_seen: dict[str, str] = {}
    for item in apps:
        found = validate_app(item.app, default_network_name=default_network_name)
        issues.extend(item.located(found))
        raw_id = item.app.get("id") if isinstance(item.app, Mapping) else None
        if not isinstance(raw_id, str) or not raw_id.strip("/"):
            continue
        app_id = resolve_id(raw_id)
        if app_id in first_seen:
            message = f"duplicate app id '{app_id}' (also defined in {first_seen[app_id]})"
            issues.extend(item.located([Issue(path="/id", message=message)]))
        else:
            first_seen[app_id] = item.source
    return issues


def field_warnings(apps: Sequence[AppSource]) -> list[Issue]:
    """Every field of every app that Marathon would ignore (``kind="unknown"``), located, with
    the known name it most likely misspells. Warnings: the apps are still valid."""
    return [issue for item in apps for issue in item.located(unknown_fields(item.app))]


__all__ = [
    "constraint_problem",
    "field_warnings",
    "human_message",
    "id_problems",
    "port_count",
    "port_names",
    "validate_app",
    "validate_apps",
]
