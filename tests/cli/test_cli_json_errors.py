"""Every command fails with one JSON shape under --output json (docs: README, "Errors as JSON"):
``{"ok": false, "error": {"kind", "message", "exit_code", ...}}``, and the exit code is the one
the kind names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from marathon_bridge.cli import COMMANDS
from marathon_bridge.testing import MarathonEmulator

EXIT_CODES = {"usage": 2, "invalid": 2, "marathon": 3, "deployment": 1, "interrupted": 130}


def error_document(run: Any) -> dict[str, Any]:
    doc = json.loads(run.out)
    assert set(doc) == {"ok", "error"} and doc["ok"] is False, doc
    error = doc["error"]
    assert isinstance(error["message"], str) and error["message"], error
    assert error["exit_code"] == EXIT_CODES[error["kind"]] == run.code, (error, run.code)
    assert run.err.strip(), "the text still goes to stderr"
    return dict(error)


@pytest.fixture
def bad_file(tmp_path: Path) -> str:
    path = tmp_path / "bad.json"
    path.write_text('{"id": "/web", "cmd": "sleep 1", "instances": -1}')
    return str(path)


@pytest.fixture
def good_file(tmp_path: Path) -> str:
    path = tmp_path / "good.json"
    path.write_text('{"id": "/web", "cmd": "sleep 1", "instances": 1}')
    return str(path)


def failing_runs(url: str, bad: str, good: str) -> dict[str, list[tuple[list[str], str]]]:
    """For each command, command lines that fail and the kind of failure each gives."""
    m = ["-m", url]
    return {
        "validate": [(["validate", bad], "invalid")],
        "diff": [(["diff", bad, *m], "invalid"), (["diff", good, "-m", "http://x:0"], "usage")],
        "deploy": [(["deploy", bad, *m], "invalid"), (["deploy", good, *m, "--force"], "")],
        "strategy": [(["strategy", "resume", "nothing", *m], "deployment")],
        "apps": [(["apps", "--timeout", "3", *m], "usage")],
        "tasks": [(["tasks", "/missing", *m], "marathon")],
        "services": [(["services", "--bogus", *m], "usage")],
        "scale": [(["scale", "/missing", "2", *m], "marathon")],
        "restart": [(["restart", "/missing", *m], "marathon")],
        "rollback": [(["rollback", "/missing", *m], "marathon")],
        "delete": [(["delete", "/missing", *m], "marathon")],
        "emulator": [(["emulator", "--port", "70000"], "usage")],
    }


def test_every_command_fails_with_the_one_json_shape(
    marathon: MarathonEmulator, run_cli: Callable, bad_file: str, good_file: str
) -> None:
    runs = failing_runs(marathon.url, bad_file, good_file)
    assert set(runs) == set(COMMANDS), "a command without a failing case here"
    for command, cases in runs.items():
        for argv, kind in cases:
            if not kind:
                continue
            run = run_cli(*argv, "--output", "json")
            error = error_document(run)
            assert error["kind"] == kind, (command, argv, error)


def test_what_each_kind_adds(
    marathon: MarathonEmulator, run_cli: Callable, bad_file: str, tmp_path: Path
) -> None:
    invalid = error_document(run_cli("validate", bad_file, "-o", "json"))
    assert [i["path"] for i in invalid["issues"]] == ["/instances"]
    assert invalid["warnings"] == []

    refused = error_document(run_cli("scale", "/missing", "2", "-m", marathon.url, "-o", "json"))
    assert (refused["status"], refused["marathon_error"]) == (404, "NotFound")

    usage = error_document(run_cli("scale", "/x", "many", "-o", "json"))
    assert usage["kind"] == "usage" and "many" in usage["message"]

    stuck = tmp_path / "stuck.json"
    stuck.write_text('{"id": "/stuck", "cmd": "sleep 1"}')
    with MarathonEmulator(deployment_delay=30.0) as other:
        run = run_cli("deploy", str(stuck), "-m", other.url, "--timeout", "0.5", "-o", "json")
    failed = error_document(run)
    assert failed["kind"] == "deployment" and failed["app_ids"] == ["/stuck"]
    assert failed["deployment_id"]


def test_json_is_not_printed_on_success_paths_as_an_error(
    marathon: MarathonEmulator, run_cli: Callable, good_file: str
) -> None:
    ok = run_cli("validate", good_file, "-o", "json")
    assert ok.code == 0 and ok.json()["ok"] is True
