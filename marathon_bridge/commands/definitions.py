"""``validate`` and ``diff``: definition files checked offline, and compared with what runs."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from marathon_bridge import output
from marathon_bridge.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Io,
    absolute,
    get_or_none,
    load_and_validate,
    make_client,
    report_issues,
)


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
        app_id = absolute(str(source.app.get("id", "")))
        live = get_or_none(client, app_id)
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
