"""`marathon-bridge` against the real emulator over loopback HTTP: the issue's "done when" list."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from marathon_bridge import cli
from marathon_bridge.testing import MarathonEmulator, echo_server_cmd
from testkit import free_port, wait_until

WEB: dict[str, Any] = {
    "id": "/demo/web",
    "cmd": "sleep 1000",
    "instances": 2,
    "cpus": 0.1,
    "mem": 32,
    "portDefinitions": [{"port": 0, "name": "http", "protocol": "tcp"}],
    "killSelection": "OLDEST_FIRST",
    "unreachableStrategy": {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120},
    "labels": {"HAPROXY_GROUP": "internal"},
    "x-team-note": "not a Marathon field",
}


def requests_to(
    marathon: MarathonEmulator, method: str = "", path_prefix: str = "/v2/apps"
) -> list:
    return [
        r
        for r in marathon.requests
        if r.path.startswith(path_prefix) and (not method or r.method == method)
    ]


# --- validate -----------------------------------------------------------------------------


def test_validate_passes_good_json_and_yaml(run_cli: Callable, write_app: Callable) -> None:
    json_file = write_app(WEB, "web.json")
    yaml_file = write_app([{**WEB, "id": "/demo/api"}, {**WEB, "id": "/demo/other"}], "apps.yaml")
    result = run_cli("validate", json_file, yaml_file)
    assert result.code == 0, result.err
    assert "3 app(s) in 2 file(s)" in result.out
    result = run_cli("validate", yaml_file, "--output", "json")
    assert result.code == 0
    doc = result.json()
    assert (doc["ok"], doc["valid"], doc["apps"]) == (True, True, ["/demo/api", "/demo/other"])
    # WEB's "x-team-note" is no Marathon field: a warning with its line, not an error
    assert [(w["path"], w["kind"], w["line"]) for w in doc["warnings"]] == [
        ("/x-team-note", "unknown", 16),
        ("/x-team-note", "unknown", 26),
    ]


# --- deploy, diff, services ---------------------------------------------------------------


def test_deploy_new_app_then_diff_and_services(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    path = write_app(WEB, "web.json")
    result = run_cli("deploy", path, "--marathon", marathon.url, "--timeout", "60")
    assert result.code == 0, result.err
    assert "/demo/web: created (deployment " in result.out
    assert "/demo/web: done, 2/2 running" in result.err  # progress lines

    live = marathon.app("/demo/web")
    assert live is not None
    assert live["tasksRunning"] == 2
    assert len(marathon.tasks("/demo/web", states=["TASK_RUNNING"])) == 2
    service_port = live["portDefinitions"][0]["port"]
    assert service_port >= 10000
    # fields the library does not model are stored as written ...
    assert live["killSelection"] == "OLDEST_FIRST"
    assert live["unreachableStrategy"] == {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120}
    # ... and a field unknown even to Marathon was still sent
    [post] = requests_to(marathon, "POST")
    assert post.body["x-team-note"] == "not a Marathon field"

    # diff right after: nothing Marathon keeps would change; the field it ignores is shown
    result = run_cli("diff", path, "--marathon", marathon.url)
    assert (result.code, result.out.splitlines()) == (
        0,
        [
            f"/demo/web ({path}): no changes",
            '  /x-team-note: "not a Marathon field" not kept by Marathon '
            "(unknown field: Marathon ignores it)",
        ],
    ), result.err

    # changing instances: exit 1 and the change shown
    changed = write_app({**WEB, "instances": 3}, "web.json")
    result = run_cli("diff", changed, "--marathon", marathon.url)
    assert result.code == 1
    assert "/instances: 2 -> 3" in result.out
    result = run_cli("--output", "json", "diff", changed, "--marathon", marathon.url)
    assert result.code == 1
    assert result.json()["apps"][0]["changes"] == [{"path": "/instances", "old": 2, "new": 3}]

    # services lists the app's endpoints
    result = run_cli("services", "--output", "json", "--marathon", marathon.url)
    assert result.code == 0, result.err
    [service] = result.json()
    assert (service["app_id"], service["service_port"]) == ("/demo/web", service_port)
    tasks = marathon.tasks("/demo/web", states=["TASK_RUNNING"])
    expected = sorted((t["host"], t["ports"][0], t["id"]) for t in tasks)
    got = [(e["address"], e["port"], e["task_id"]) for e in service["endpoints"]]
    assert got == expected
    text = run_cli("services", "--marathon", marathon.url)
    assert text.code == 0 and str(service_port) in text.out and "/demo/web" in text.out


def test_deploy_twice_sends_no_update_when_nothing_changed(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    path = write_app(WEB)
    assert run_cli("deploy", path, "-m", marathon.url).code == 0
    result = run_cli("deploy", path, "-m", marathon.url, "-o", "json")
    assert result.code == 0, result.err
    assert result.json()["apps"][0]["action"] == "unchanged"
    assert requests_to(marathon, "PUT") == []


def test_deploy_update_replaces_the_definition(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    assert run_cli("deploy", write_app(WEB), "-m", marathon.url).code == 0
    smaller = {k: v for k, v in WEB.items() if k != "labels"}
    smaller["instances"] = 1
    result = run_cli("deploy", write_app(smaller), "-m", marathon.url)
    assert result.code == 0, result.err
    assert "/demo/web: updated" in result.out
    [put] = requests_to(marathon, "PUT")
    assert put.query.get("partialUpdate") == ["false"]
    live = marathon.app("/demo/web")
    assert live is not None and live["labels"] == {} and live["tasksRunning"] == 1


# --- invalid definitions: exit 2, field named, nothing sent --------------------------------

BAD_DEFINITIONS = [
    ({"id": "/Bad_ID!"}, "/id"),
    ({"args": ["-v"]}, "args"),
    ({"instances": -1}, "/instances"),
    ({"mem": "lots"}, "/mem"),
    ({"healthChecks": [{"protocol": "SMTP"}]}, "/healthChecks(0)/protocol"),
    ({"constraints": [["hostname", "SOMETIMES"]]}, "/constraints(0)"),
    (
        {"upgradeStrategy": {"minimumHealthCapacity": 2, "maximumOverCapacity": 1}},
        "/upgradeStrategy/minimumHealthCapacity",
    ),
    ({"labels": {"owner": 7}}, "/labels"),
]


@pytest.mark.parametrize(("change", "field"), BAD_DEFINITIONS)
@pytest.mark.parametrize("command", ["validate", "diff", "deploy"])
def test_bad_definition_exits_2_names_field_sends_nothing(
    marathon: MarathonEmulator,
    run_cli: Callable,
    write_app: Callable,
    command: str,
    change: dict,
    field: str,
) -> None:
    path = write_app({**WEB, **change}, "bad.yaml")
    result = run_cli(command, path, "--marathon", marathon.url)
    assert result.code == 2
    assert field in result.err
    assert path in result.err
    assert "nothing was sent" in result.err
    assert marathon.requests == []


def test_invalid_input_json_output_lists_issues(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    path = write_app({**WEB, "instances": -1})
    result = run_cli("deploy", path, "--marathon", marathon.url, "--output", "json")
    assert result.code == 2
    error = result.json()["error"]
    assert (error["kind"], error["exit_code"]) == ("invalid", 2)
    [issue] = [i for i in error["issues"] if i["path"] == "/instances"]
    assert (issue["source"], issue["message"], issue["text"]) == (
        path,
        "error.min",
        "error.min: must be >= 0",
    )
    assert issue["line"] > 0 and issue["column"] > 0
    assert marathon.requests == []


def test_unreadable_file_exits_2(run_cli: Callable, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "/x", ')
    result = run_cli("validate", str(broken), str(tmp_path / "missing.json"))
    assert result.code == 2
    assert "broken.json" in result.err and "missing.json" in result.err


# --- failover: three URLs, the first two dead ------------------------------------------------


@pytest.fixture
def dead_urls() -> Iterator[list[str]]:
    """A closed port and an emulator that answers 503 to everything."""
    closed = f"http://127.0.0.1:{free_port()}"
    with MarathonEmulator() as broken:
        broken.faults.add("*", status=503)
        yield [closed, broken.url]


def test_every_command_works_when_the_first_two_urls_are_dead(
    marathon: MarathonEmulator, dead_urls: list[str], run_cli: Callable, write_app: Callable
) -> None:
    urls = [*dead_urls, marathon.url]
    flags = [arg for url in urls for arg in ("--marathon", url)]
    path = write_app({**WEB, "instances": 1})

    def ok(*argv: str) -> Any:
        result = run_cli(*argv, *flags)
        assert result.code == 0, (argv, result.err)
        return result

    ok("validate", path)
    ok("deploy", path)
    ok("diff", path)
    assert ok("apps", "-o", "json").json()[0]["id"] == "/demo/web"
    assert len(ok("tasks", "/demo/web", "-o", "json").json()) == 1
    assert len(ok("tasks", "-o", "json").json()) == 1
    assert ok("services", "-o", "json").json()[0]["app_id"] == "/demo/web"
    ok("scale", "/demo/web", "2")
    assert marathon.app("/demo/web")["tasksRunning"] == 2  # type: ignore[index]
    ok("restart", "/demo/web")
    ok("rollback", "/demo/web")
    ok("delete", "/demo/web")
    assert marathon.app("/demo/web") is None


def test_env_urls_work_like_options(
    marathon: MarathonEmulator, dead_urls: list[str], run_cli: Callable
) -> None:
    result = run_cli("apps", env={"MARATHON_URL": ",".join([*dead_urls, marathon.url])})
    assert result.code == 0, result.err
    assert result.out.startswith("ID")


# --- Marathon's own messages, exit 3 -----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["delete", "/missing"],
        ["scale", "/missing", "3"],
        ["restart", "/missing"],
        ["tasks", "/missing"],
        ["rollback", "/missing", "--version", "2021-01-01T00:00:00.000Z"],
    ],
)
def test_marathons_own_error_message_reaches_the_user(
    marathon: MarathonEmulator, run_cli: Callable, argv: list[str]
) -> None:
    result = run_cli(*argv, "--marathon", marathon.url)
    assert result.code == 3
    assert "App '/missing' does not exist" in result.err


def test_all_urls_dead_exits_3(dead_urls: list[str], run_cli: Callable) -> None:
    flags = [arg for url in dead_urls for arg in ("--marathon", url)]
    result = run_cli("apps", *flags, "--request-timeout", "5")
    assert result.code == 3
    assert "Marathon unreachable" in result.err


def test_locked_app_reports_deployment_ids_and_force_overrides(
    run_cli: Callable, write_app: Callable
) -> None:
    with MarathonEmulator(deployment_delay=30.0) as slow:
        path = write_app({**WEB, "instances": 1})
        assert run_cli("deploy", path, "-m", slow.url, "--no-wait").code == 0
        [deployment] = slow.deployments()
        scaled = write_app({**WEB, "instances": 2})
        result = run_cli("deploy", scaled, "-m", slow.url, "--no-wait")
        assert result.code == 3
        assert deployment["id"] in result.err and "--force" in result.err
        result = run_cli("deploy", scaled, "-m", slow.url, "--no-wait", "--force")
        assert result.code == 0, result.err
        assert "/demo/web: updated" in result.out


# --- deployments that never become healthy ---------------------------------------------------


def healthy_app(path: str = "/health") -> dict[str, Any]:
    return {
        "id": "/demo/echo",
        "cmd": echo_server_cmd(),
        "instances": 1,
        "cpus": 0.1,
        "mem": 32,
        "portDefinitions": [{"port": 0, "name": "http"}],
        "healthChecks": [
            {
                "protocol": "HTTP",
                "path": path,
                "portIndex": 0,
                "gracePeriodSeconds": 1,
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "maxConsecutiveFailures": 0,
            }
        ],
    }


@pytest.fixture
def task_runner() -> Iterator[MarathonEmulator]:
    with MarathonEmulator(run_tasks=True) as emulator:
        yield emulator


def deploy_good_then_bad(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable, *extra: str
) -> tuple[dict, Any]:
    good = run_cli("deploy", write_app(healthy_app()), "-m", marathon.url, "--timeout", "60")
    assert good.code == 0, good.err
    before = copy.deepcopy(marathon.app("/demo/echo"))
    assert before is not None and before["tasksHealthy"] == 1
    bad = run_cli(
        "deploy", write_app(healthy_app("/unhealthy")), "-m", marathon.url, "--timeout", "3", *extra
    )
    return before, bad


def test_unhealthy_deploy_times_out_with_exit_1(
    task_runner: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    _, bad = deploy_good_then_bad(task_runner, run_cli, write_app)
    assert bad.code == 1
    assert "did not finish within 3s" in bad.err
    assert task_runner.deployments() != []  # left as it is: no rollback was asked for


def test_unhealthy_deploy_rolls_back_to_the_previous_version(
    task_runner: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    before, bad = deploy_good_then_bad(task_runner, run_cli, write_app, "--rollback-on-failure")
    assert bad.code == 1
    assert "rolled back" in bad.err, bad.err
    assert task_runner.deployments() == []
    after = task_runner.app("/demo/echo")
    assert after is not None
    assert after["healthChecks"] == before["healthChecks"]
    assert after["healthChecks"][0]["path"] == "/health"
    assert after["tasksRunning"] == 1 and after["tasksHealthy"] == 1
    # and the diff against the good file is empty again
    assert run_cli("diff", write_app(healthy_app()), "-m", task_runner.url).code == 0


# --- output placement --------------------------------------------------------------------------


def test_output_json_before_or_after_the_command(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    assert run_cli("deploy", write_app(WEB), "-m", marathon.url).code == 0
    after = run_cli("apps", "--output", "json", "--marathon", marathon.url)
    before = run_cli("--output", "json", "--marathon", marathon.url, "apps")
    assert after.code == before.code == 0
    assert after.json() == before.json()
    [app] = after.json()
    assert (app["id"], app["instances"], app["running"]) == ("/demo/web", 2, 2)
    assert (
        json.loads(run_cli("-o", "json", "tasks", "-m", marathon.url).out)[0]["app_id"]
        == "/demo/web"
    )


def test_text_tables(marathon: MarathonEmulator, run_cli: Callable, write_app: Callable) -> None:
    assert run_cli("deploy", write_app(WEB), "-m", marathon.url).code == 0
    apps = run_cli("apps", "-m", marathon.url).out.splitlines()
    assert apps[0].split() == [
        "ID",
        "INSTANCES",
        "RUNNING",
        "HEALTHY",
        "STAGED",
        "CPUS",
        "MEM",
        "VERSION",
        "DEPLOYING",
    ]
    assert apps[1].split()[:3] == ["/demo/web", "2", "2"]
    tasks = run_cli("tasks", "/demo/web", "-m", marathon.url).out.splitlines()
    assert tasks[0].split()[:3] == ["APP", "TASK", "HOST"] and len(tasks) == 3


# --- the emulator command --------------------------------------------------------------------


def test_emulator_command_serves_until_stopped(
    run_cli: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    import marathon_bridge.testing as testing

    stop = threading.Event()
    ready: list[MarathonEmulator] = []
    calls: list[dict[str, Any]] = []
    real_run = testing.run_emulator

    def run_stoppable(**kwargs: Any) -> int:
        calls.append(kwargs)
        return real_run(ready=ready.append, stop_event=stop, **kwargs)

    monkeypatch.setattr(testing, "run_emulator", run_stoppable)
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(cli.main(["emulator", "--port", "0"], environ={}))
    )
    thread.start()
    try:
        wait_until(lambda: ready)
        apps = run_cli("apps", "-m", ready[0].url, "-o", "json")
        assert (apps.code, apps.json()) == (0, [])
    finally:
        stop.set()
        thread.join(30)
    assert codes == [0]
    assert calls == [{"host": "127.0.0.1", "port": 0, "run_tasks": False}]


# --- more commands -------------------------------------------------------------------------------


def test_diff_of_an_app_that_does_not_exist_yet(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    path = write_app(WEB)
    result = run_cli("diff", path, "-m", marathon.url)
    assert result.code == 1
    assert "/demo/web" in result.out and "would be created" in result.out
    doc = run_cli("diff", path, "-m", marathon.url, "-o", "json").json()
    assert doc["differences"] is True and doc["apps"][0]["status"] == "new"
    assert requests_to(marathon, "POST") == []


def test_deploy_several_apps_from_one_yaml_file(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    apps = [{**WEB, "id": "/demo/a", "instances": 1}, {**WEB, "id": "/demo/b", "instances": 1}]
    path = write_app(apps, "apps.yaml")
    result = run_cli("deploy", path, "-m", marathon.url, "-o", "json")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["ok"] is True and doc["waited"] is True
    assert [(a["id"], a["action"]) for a in doc["apps"]] == [
        ("/demo/a", "created"),
        ("/demo/b", "created"),
    ]
    ports = {marathon.app(i)["portDefinitions"][0]["port"] for i in ("/demo/a", "/demo/b")}  # type: ignore[index]
    assert len(ports) == 2 and min(ports) >= 10000
    assert run_cli("diff", path, "-m", marathon.url).code == 0


def test_no_wait_returns_the_deployment_id(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    result = run_cli("deploy", write_app(WEB), "-m", marathon.url, "--no-wait", "-o", "json")
    assert result.code == 0, result.err
    [app] = result.json()["apps"]
    assert app["deployment_id"] and result.json()["waited"] is False


def test_scale_rollback_and_delete_wait_for_their_deployments(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    assert run_cli("deploy", write_app({**WEB, "instances": 1}), "-m", marathon.url).code == 0
    first_version = marathon.app("/demo/web")["version"]  # type: ignore[index]
    assert (
        run_cli(
            "deploy", write_app({**WEB, "instances": 1, "cmd": "sleep 2000"}), "-m", marathon.url
        ).code
        == 0
    )

    scaled = run_cli("scale", "/demo/web", "3", "-m", marathon.url)
    assert scaled.code == 0, scaled.err
    assert "scaled /demo/web to 3" in scaled.out
    assert marathon.app("/demo/web")["tasksRunning"] == 3  # type: ignore[index]

    back = run_cli("rollback", "/demo/web", "-m", marathon.url, "-o", "json")
    assert back.code == 0, back.err
    assert back.json()["message"] == f"rolled back /demo/web to version {first_version}"
    assert marathon.app("/demo/web")["cmd"] == "sleep 1000"  # type: ignore[index]

    gone = run_cli("delete", "/demo/web", "-m", marathon.url)
    assert gone.code == 0, gone.err
    assert marathon.app("/demo/web") is None and marathon.deployments() == []


def test_json_output_of_a_marathon_error(marathon: MarathonEmulator, run_cli: Callable) -> None:
    result = run_cli("scale", "/missing", "2", "-m", marathon.url, "-o", "json")
    assert result.code == 3
    assert result.json() == {
        "ok": False,
        "error": {
            "kind": "marathon",
            "exit_code": 3,
            "message": "App '/missing' does not exist",
            "marathon_error": "NotFound",
            "status": 404,
        },
    }


def test_a_definition_saved_from_marathon_deploys_as_it_is(
    marathon: MarathonEmulator, run_cli: Callable, write_app: Callable
) -> None:
    assert run_cli("deploy", write_app({**WEB, "instances": 1}), "-m", marathon.url).code == 0
    saved = marathon.app("/demo/web")
    assert saved is not None and saved["version"] and saved["tasks"]
    saved["instances"] = 2
    result = run_cli("deploy", write_app(saved, "saved.json"), "-m", marathon.url)
    assert result.code == 0, result.err
    [put] = requests_to(marathon, "PUT")
    assert "version" not in put.body and "tasks" not in put.body
    assert marathon.app("/demo/web")["tasksRunning"] == 2  # type: ignore[index]
