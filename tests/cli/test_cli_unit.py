"""CLI option parsing, client options and output formatting (no Marathon needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from marathon_bridge import output
from marathon_bridge.cli import main, parse_args
from marathon_bridge.cli_parser import DEFAULT_MARATHON
from marathon_bridge.commands.common import EXIT_MARATHON, EXIT_USAGE, make_client, marathon_urls
from marathon_bridge.commands.failures import marathon_error_text
from marathon_bridge.errors import Conflict, Issue, NotFound, Unavailable
from marathon_bridge.services import Endpoint, Service
from testkit import free_port


@pytest.mark.parametrize(
    "argv",
    [
        ["apps", "--output", "json"],
        ["--output", "json", "apps"],
        ["-o", "json", "apps"],
        ["apps", "-o", "json"],
    ],
)
def test_output_option_before_or_after_the_command(argv: list[str]) -> None:
    args = parse_args(argv)
    assert (args.command, args.output) == ("apps", "json")


def test_defaults_are_filled_when_no_global_option_is_given() -> None:
    args = parse_args(["apps"])
    assert (args.output, args.http_timeout, args.insecure, args.marathon) == (
        "text",
        30.0,
        False,
        None,
    )


@pytest.mark.parametrize(
    "command",
    [
        ["deploy", "a.json"],
        ["strategy", "resume", "g"],
        ["scale", "/x", "2"],
        ["restart", "/x"],
        ["rollback", "/x"],
        ["delete", "/x"],
    ],
)
def test_timeout_is_the_wait_on_every_command_that_waits(command: list[str]) -> None:
    assert parse_args([*command, "--timeout", "5"]).wait_timeout == 5.0
    assert parse_args(["--timeout", "7", *command]).wait_timeout == 7.0
    assert parse_args([*command, "--wait-timeout", "8"]).wait_timeout == 8.0  # the old name
    args = parse_args([*command, "--request-timeout", "4"])
    assert (args.http_timeout, args.wait_timeout) == (4.0, 600.0)


@pytest.mark.parametrize(
    "command", [["apps"], ["tasks"], ["services"], ["diff", "a.json"], ["validate", "a.json"]]
)
def test_timeout_on_a_command_that_waits_for_nothing_is_a_usage_error(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--timeout", "9"], environ={}) == EXIT_USAGE
    assert "--request-timeout" in capsys.readouterr().err
    assert parse_args([*command, "--request-timeout", "9"]).http_timeout == 9.0


def test_marathon_urls_from_options_env_and_default() -> None:
    args = parse_args(["apps", "--marathon", "http://a:8080", "-m", "http://b:8080,http://c:8080"])
    assert marathon_urls(args, {}) == ["http://a:8080", "http://b:8080", "http://c:8080"]
    env = {"MARATHON_URL": "http://x:1, http://y:2"}
    assert marathon_urls(parse_args(["apps"]), env) == ["http://x:1", "http://y:2"]
    assert marathon_urls(parse_args(["apps"]), {}) == [DEFAULT_MARATHON]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope"], environ={}) == EXIT_USAGE
    assert main(["scale", "/x", "many"], environ={}) == EXIT_USAGE
    assert main(["scale", "/x", "-1"], environ={}) == EXIT_USAGE
    assert main(["apps", "--output", "xml"], environ={}) == EXIT_USAGE
    assert main(["apps", "--request-timeout", "0"], environ={}) == EXIT_USAGE
    assert main(["deploy", "a.json", "--timeout", "-5"], environ={}) == EXIT_USAGE
    assert main([], environ={}) == EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["apps", "--user", "u"], {}, "--user needs --password"),
        (["apps", "--user", "u", "--password", "p", "--token", "t"], {}, "not both"),
        (["apps", "--token", "t"], {"MARATHON_USER": "u", "MARATHON_PASSWORD": "p"}, "not both"),
        (["apps", "--insecure", "--ca-bundle", "/etc/hosts"], {}, "--ca-bundle or --insecure"),
        (["apps", "--ca-bundle", "/nonexistent/ca.pem"], {}, "does not exist"),
        (["apps", "--marathon", "ftp://x"], {}, "ftp://x"),
    ],
)
def test_bad_client_options_exit_2_without_sending(
    capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str], message: str
) -> None:
    assert main(argv, environ=environ) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_credentials_from_env_and_never_printed() -> None:
    env = {"MARATHON_USER": "ops", "MARATHON_PASSWORD": "s3cret-pw"}
    client = make_client(parse_args(["apps"]), env)
    assert "s3cret-pw" not in repr(client)
    assert "BasicAuth" in repr(client)


def test_marathon_error_texts() -> None:
    missing = NotFound(
        "App '/x' does not exist", status=404, method="DELETE", url="http://m/v2/apps/x"
    )
    assert "App '/x' does not exist" in marathon_error_text(missing)
    assert marathon_error_text(missing).startswith("Marathon refused")
    body = {"message": "App is locked by one or more deployments.", "deployments": [{"id": "d1"}]}
    locked = marathon_error_text(Conflict(body["message"], status=409, body=body))
    assert "locked by deployment(s): d1" in locked and "--force" in locked
    down = marathon_error_text(Unavailable("no Marathon answered", status=503))
    assert down.startswith("Marathon unreachable")


def test_unreachable_marathon_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    code = main(["apps", "--marathon", url, "--request-timeout", "2"], environ={})
    assert code == EXIT_MARATHON
    assert "Marathon unreachable" in capsys.readouterr().err


# --- output -----------------------------------------------------------------------------------


def test_table_aligns_columns() -> None:
    text = output.table(("ID", "N"), [("/a", 1), ("/long-name", None), ("/b", True)])
    assert text.splitlines() == [
        "ID          N",
        "/a          1",
        "/long-name  -",
        "/b          yes",
    ]


def test_to_json_sorts_keys() -> None:
    assert output.to_json({"b": 1, "a": [2]}) == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'


def test_apps_json_is_sorted_and_stable() -> None:
    apps: list[dict[str, Any]] = [
        {"id": "/b", "instances": 1, "tasksRunning": 1, "deployments": [{"id": "d"}], "cpus": 0.5},
        {"id": "/a", "instances": 2, "mem": 64.0},
    ]
    data = output.apps_json(apps)
    assert [a["id"] for a in data] == ["/a", "/b"]
    assert data[1]["deployments"] == ["d"] and data[0]["running"] == 0
    header, rows = output.apps_rows(apps)
    assert header[0] == "ID" and rows[1][8] == "d"


def test_tasks_json_health() -> None:
    task = {"appId": "/a", "id": "t1", "host": "h", "ports": [1], "state": "TASK_RUNNING"}
    assert output.task_json(task)["healthy"] is None
    sick = {**task, "healthCheckResults": [{"alive": True}, {"alive": False}]}
    assert output.task_json(sick)["healthy"] is False


def test_services_json_lists_endpoints() -> None:
    endpoint = Endpoint(
        task_id="t1", address="10.0.0.1", port=31000, host="h", state="TASK_RUNNING"
    )
    service = Service(
        app_id="/a", service_port=10000, port_index=0, network_mode="host", endpoints=(endpoint,)
    )
    [data] = json.loads(output.to_json(output.services_json([service])))
    assert data["service_port"] == 10000 and data["app_id"] == "/a"
    assert data["endpoints"] == [
        {
            "address": "10.0.0.1",
            "healthy": None,
            "host": "h",
            "port": 31000,
            "state": "TASK_RUNNING",
            "task_id": "t1",
        }
    ]
    _header, rows = output.services_rows([service])
    assert rows == [(10000, "/a", None, "tcp", "tcp", None, "10.0.0.1:31000")]


def test_issue_text_names_file_and_field() -> None:
    issue = Issue("/instances", "must be >= 0", source="apps.yaml#[1]")
    assert output.issue_text(issue) == "apps.yaml#[1]: /instances: must be >= 0"


def test_issue_text_gives_line_column_key_and_what_is_allowed() -> None:
    issue = Issue("/mem", "error.min", "apps.yaml#[1]", "type", line=12, column=3)
    assert output.issue_text(issue) == "apps.yaml:12:3: /mem: error.min: must be >= 0"
    typo = Issue("/cpu", "unknown field: Marathon ignores it", "web.json", "unknown", 4, 5)
    assert output.issue_text(typo) == (
        "web.json:4:5: warning: /cpu: unknown field: Marathon ignores it"
    )
