"""``validate`` and ``diff``: definition files checked offline, and compared with what runs.

``diff`` compares each app of the files with the live app of the same id. An app deployed as a
deployment group (``<id>-blue``/``<id>-green``, see docs/deploys.md) is compared with the member
that serves, as a new blue/green or canary run would deploy it, and the output says what to run.
Fields Marathon does not read are shown too: the live app never has them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from marathon_bridge import output
from marathon_bridge.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    Io,
    absolute,
    checked_definitions,
    get_or_none,
    make_client,
)
from marathon_bridge.commands.groups import live_members
from marathon_bridge.definitions import MISSING, Change, diff_apps
from marathon_bridge.definitions.load import AppSource
from marathon_bridge.definitions.unknown import unknown_fields, value_at
from marathon_bridge.deployment_groups import as_member, group_of, what_to_run


def cmd_validate(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    sources, warnings = checked_definitions(args.paths, io, command="validate", strict=args.strict)
    ids = [str(s.app.get("id", "")) for s in sources]
    if io.json:
        found = output.issues_json(warnings)
        io.result(output.to_json({"ok": True, "valid": True, "apps": ids, "warnings": found}))
    else:
        io.result(f"ok: {len(ids)} app(s) in {len(args.paths)} file(s) are valid\n")
    return EXIT_OK


@dataclass
class AppDiff:
    """What deploying one app of the files would change."""

    app_id: str
    source: str
    status: str  # new | changed | unchanged | group
    changes: list[Change] = field(default_factory=list)
    ignored: list[tuple[str, Any, str]] = field(default_factory=list)  # (path, value, message)
    group: str = ""
    members: list[str] = field(default_factory=list)
    advice: str = ""

    @property
    def differs(self) -> bool:
        return self.status == "new" or bool(self.changes)


def cmd_diff(args: argparse.Namespace, io: Io, environ: Mapping[str, str]) -> int:
    sources, _ = checked_definitions(args.paths, io, command="diff")
    client = make_client(args, environ)
    reports = [_app_diff(client, source) for source in sources]
    differs = any(r.differs for r in reports)
    if io.json:
        data = {"ok": True, "differences": differs, "apps": [_diff_json(r) for r in reports]}
        io.result(output.to_json(data))
    else:
        for report in reports:
            io.result(_diff_text(report))
    return EXIT_FAILED if differs else EXIT_OK


def _app_diff(client: Any, source: AppSource) -> AppDiff:
    app = source.app
    app_id = absolute(str(app.get("id", "")))
    ignored = [
        (issue.path, value_at(app, issue.path), issue.message) for issue in unknown_fields(app)
    ]
    live = get_or_none(client, app_id)
    if live is not None:
        changes = diff_apps(app, live)
        status = "changed" if changes else "unchanged"
        return AppDiff(app_id, source.source, status, changes, ignored)
    members = live_members(client, app)
    if not members:
        return AppDiff(app_id, source.source, "new", [], ignored)
    serving = members[-1]
    group = group_of(app)
    return AppDiff(
        app_id,
        source.source,
        "group",
        diff_apps(as_member(app, serving), serving),
        ignored,
        group=group,
        members=[str(m["id"]) for m in members],
        advice=what_to_run(group, source.source.split("#", 1)[0], members),
    )


def _diff_text(report: AppDiff) -> str:
    head = f"{report.app_id} ({report.source})"
    if report.status == "new":
        lines = [f"{head}: new app, would be created"]
    elif report.status == "group":
        serves = ", ".join(report.members)
        count = f"{len(report.changes)} change(s)" if report.changes else "no changes"
        lines = [f"{head}: deployment group {report.group} ({serves} serving): {count}"]
    else:
        count = f"{len(report.changes)} change(s)" if report.changes else "no changes"
        lines = [f"{head}: {count}"]
    for change in report.changes:
        lines.append(f"  {change.path}: {_change_value(change.old)} -> {_change_value(change.new)}")
    for path, value, message in report.ignored:
        lines.append(f"  {path}: {output.value_text(value)} not kept by Marathon ({message})")
    if report.advice:
        lines.append(f"  {report.advice}")
    return "\n".join(lines) + "\n"


def _change_value(value: Any) -> str:
    return "(absent)" if value is MISSING else output.value_text(value)


def _diff_json(report: AppDiff) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": report.app_id,
        "source": report.source,
        "status": report.status,
        "changes": [_change_json(c) for c in report.changes],
        "ignored_fields": [
            {"path": path, "value": value, "message": message}
            for path, value, message in report.ignored
        ],
    }
    if report.status == "group":
        data.update(group=report.group, members=report.members, advice=report.advice)
    return data


def _change_json(change: Change) -> dict[str, Any]:
    item: dict[str, Any] = {"path": change.path}
    if change.old is not MISSING:
        item["old"] = change.old
    if change.new is not MISSING:
        item["new"] = change.new
    return item


__all__: Sequence[str] = ["cmd_diff", "cmd_validate"]
