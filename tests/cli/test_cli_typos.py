"""A typo in a definition (a field Marathon does not know) is reported, never silently passed:
validate and deploy warn with the path, line, column and the name it misspells; --strict refuses;
diff shows what the live app will never have."""

from __future__ import annotations

from typing import Callable

import pytest

from marathon_bridge.testing import MarathonEmulator

TYPO_APP = """\
id: /web
cmd: sleep 100
instnaces: 3
cpu: 0.5
healthChecks:
  - protocol: HTTP
    pathh: /health
"""


@pytest.fixture
def typo_file(tmp_path: pytest.TempPathFactory) -> str:
    path = tmp_path / "web.yaml"  # type: ignore[operator]
    path.write_text(TYPO_APP)
    return str(path)


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": warning: " in line]


def test_validate_warns_on_each_typo_with_position_and_suggestion(
    run_cli: Callable, typo_file: str
) -> None:
    result = run_cli("validate", typo_file)
    assert result.code == 0, result.err
    assert warnings_of(result.err) == [
        f"{typo_file}:3:1: warning: /instnaces: unknown field: Marathon ignores it; "
        "did you mean `instances`?",
        f"{typo_file}:4:1: warning: /cpu: unknown field: Marathon ignores it; did you mean `cpus`?",
        f"{typo_file}:7:5: warning: /healthChecks(0)/pathh: unknown field: Marathon ignores it; "
        "did you mean `path`?",
    ]


def test_validate_strict_exits_2(run_cli: Callable, typo_file: str) -> None:
    result = run_cli("validate", typo_file, "--strict", "--output", "json")
    assert result.code == 2
    error = result.json()["error"]
    assert (error["kind"], error["exit_code"], error["issues"]) == ("invalid", 2, [])
    assert [(w["path"], w["line"], w["column"]) for w in error["warnings"]] == [
        ("/instnaces", 3, 1),
        ("/cpu", 4, 1),
        ("/healthChecks(0)/pathh", 7, 5),
    ]
    assert "refused by --strict" in result.err


def test_deploy_strict_sends_nothing(
    marathon: MarathonEmulator, run_cli: Callable, typo_file: str
) -> None:
    result = run_cli("deploy", typo_file, "--strict", "-m", marathon.url)
    assert result.code == 2
    assert len(warnings_of(result.err)) == 3
    assert "nothing was sent to Marathon" in result.err
    assert marathon.requests == []


def test_deploy_warns_sends_the_fields_and_diff_shows_them(
    marathon: MarathonEmulator, run_cli: Callable, typo_file: str
) -> None:
    result = run_cli("deploy", typo_file, "-m", marathon.url, "--timeout", "60")
    assert result.code == 0, result.err
    assert len(warnings_of(result.err)) == 3
    [post] = [r for r in marathon.requests if r.method == "POST"]
    assert post.body["instnaces"] == 3  # sent: a newer Marathon may know it
    live = marathon.app("/web")
    assert live is not None and live["instances"] == 1  # Marathon's default, as users see it

    result = run_cli("diff", typo_file, "-m", marathon.url)
    assert result.code == 0, result.err  # nothing Marathon keeps would change
    assert result.out.splitlines() == [
        f"/web ({typo_file}): no changes",
        "  /instnaces: 3 not kept by Marathon (unknown field: Marathon ignores it; "
        "did you mean `instances`?)",
        "  /cpu: 0.5 not kept by Marathon (unknown field: Marathon ignores it; "
        "did you mean `cpus`?)",
        '  /healthChecks(0)/pathh: "/health" not kept by Marathon (unknown field: Marathon '
        "ignores it; did you mean `path`?)",
    ]
    doc = run_cli("diff", typo_file, "-m", marathon.url, "-o", "json").json()
    assert [f["path"] for f in doc["apps"][0]["ignored_fields"]] == [
        "/instnaces",
        "/cpu",
        "/healthChecks(0)/pathh",
    ]


def test_validation_errors_name_line_column_and_what_is_allowed(
    run_cli: Callable, tmp_path: pytest.TempPathFactory
) -> None:
    path = tmp_path / "web.json"  # type: ignore[operator]
    path.write_text(
        '{\n  "id": "/web",\n  "cmd": "sleep 1",\n  "mem": -1,\n'
        '  "healthChecks": [{"protocol": "HTTPX"}]\n}\n'
    )
    result = run_cli("validate", str(path))
    assert result.code == 2
    assert f"{path}:4:3: /mem: error.min: must be >= 0" in result.err.splitlines()
    assert (
        f"{path}:5:21: /healthChecks(0)/protocol: error.unknown.enum.literal: one of HTTP, "
        "HTTPS, TCP, COMMAND, MESOS_TCP, MESOS_HTTP, MESOS_HTTPS"
    ) in result.err.splitlines()
