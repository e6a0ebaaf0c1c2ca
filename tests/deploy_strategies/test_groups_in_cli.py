"""Deployment groups in the plain commands: ``diff`` and ``deploy`` recognise a group's base id
and say what to run; ``services`` shows the shared port, the members, HAProxy's mode and the
ports two apps claim."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marathon_bridge import cli, output
from marathon_bridge.services import Endpoint, Service
from marathon_bridge.testing import MarathonEmulator


def web(instances: int = 2, **extra: Any) -> dict[str, Any]:
    app: dict[str, Any] = {
        "id": "/shop/web",
        "cmd": "sleep 1000",
        "instances": instances,
        "cpus": 0.1,
        "mem": 32,
        "portDefinitions": [{"port": 12000, "protocol": "tcp"}],
        "labels": {"HAPROXY_DEPLOYMENT_ALT_PORT": "12001", "HAPROXY_0_MODE": "http"},
    }
    app.update(extra)
    return app


@pytest.fixture
def marathon() -> Iterator[MarathonEmulator]:
    with MarathonEmulator() as emulator:
        yield emulator


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv), environ={})
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(tmp_path: Path, data: Any, name: str = "web.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def blue(marathon: MarathonEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """/shop/web deployed blue-green: /shop/web-blue serves; returns the file's path."""
    path = write(tmp_path, web())
    args = ("--strategy", "blue-green", "--drain-delay", "0", "--timeout", "60")
    code, _out, err = run(capsys, "deploy", path, "-m", marathon.url, *args)
    assert code == 0, err
    return path


def test_diff_of_a_group_compares_with_the_serving_member(
    marathon: MarathonEmulator, blue: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "diff", blue, "-m", marathon.url)
    assert code == 0, err
    assert out.splitlines() == [
        f"/shop/web ({blue}): deployment group shop.web (/shop/web-blue serving): no changes",
        f"  deploy it with `marathon-bridge deploy --strategy blue-green {blue}` "
        "(or `--strategy canary`)",
    ]
    changed = write(tmp_path, web(cmd="sleep 2000"), "changed.json")
    code, out, _err = run(capsys, "diff", changed, "-m", marathon.url, "-o", "json")
    assert code == 1
    [app] = json.loads(out)["apps"]
    assert (app["status"], app["group"], app["members"]) == (
        "group",
        "shop.web",
        ["/shop/web-blue"],
    )
    assert app["changes"] == [{"path": "/cmd", "old": "sleep 1000", "new": "sleep 2000"}]


def test_plain_deploy_of_a_group_is_refused_and_names_the_command(
    marathon: MarathonEmulator, blue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(marathon.requests)
    code, _out, err = run(capsys, "deploy", blue, "-m", marathon.url)
    assert code == 2
    assert "/shop/web runs as deployment group shop.web (/shop/web-blue)" in err
    assert f"marathon-bridge deploy --strategy blue-green {blue}" in err
    assert not [r for r in marathon.requests[before:] if r.method != "GET"]
    assert marathon.app("/shop/web") is None


def test_an_unfinished_run_names_resume_and_abort(
    marathon: MarathonEmulator, blue: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    green = dict(web(1), id="/shop/web-green")
    green["labels"] = {
        **green["labels"],
        "HAPROXY_DEPLOYMENT_GROUP": "shop.web",
        "HAPROXY_DEPLOYMENT_COLOUR": "green",
        "HAPROXY_DEPLOYMENT_STARTED_AT": "2999-01-01T00:00:00.000Z",
        "HAPROXY_0_PORT": "12000",
    }
    green["portDefinitions"] = [{"port": 12001, "protocol": "tcp"}]
    code, _out, err = run(capsys, "deploy", write(tmp_path, green, "g.json"), "-m", marathon.url)
    assert code == 0, err
    code, out, _err = run(capsys, "diff", blue, "-m", marathon.url)
    assert "(/shop/web-blue, /shop/web-green serving)" in out
    assert "`marathon-bridge strategy resume shop.web`" in out
    assert "`marathon-bridge strategy abort shop.web`" in out


def test_services_shows_shared_port_members_mode_and_clashes(
    marathon: MarathonEmulator, blue: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = {
        "id": "/other",
        "cmd": "sleep 1000",
        "portDefinitions": [{"port": 13000}],
        "labels": {"HAPROXY_0_PORT": "12000"},
    }
    code, _out, err = run(capsys, "deploy", write(tmp_path, other, "o.json"), "-m", marathon.url)
    assert code == 0, err
    marathon.wait_for(lambda: len(marathon.tasks(states=["TASK_RUNNING"])) == 3)
    code, out, err = run(capsys, "services", "-m", marathon.url)
    assert code == 0
    header, *rows = [line.split() for line in out.splitlines()]
    assert header == ["PORT", "APP", "NAME", "PROTOCOL", "HAPROXY", "GROUP", "ENDPOINTS"]
    assert [row[:6] for row in rows] == [
        ["12000", "/other", "-", "tcp", "tcp", "-"],
        ["12000", "/shop/web-blue", "-", "tcp", "http", "shop.web/blue"],
    ]
    assert err.splitlines() == [
        "warning: port 12000 is claimed by /other, /shop/web-blue: on every node only one of "
        "them gets it (the lowest app id); give the others their own service port"
    ]
    code, out, _err = run(capsys, "services", "-m", marathon.url, "-o", "json")
    by_app = {s["app_id"]: s for s in json.loads(out)}
    member = by_app["/shop/web-blue"]
    assert (member["listen_port"], member["service_port"], member["haproxy_mode"]) == (
        12000,
        12000,
        "http",
    )
    assert (member["deployment_group"], member["colour"]) == ("shop.web", "blue")
    assert member["port_clash"] == ["/other"]


def test_two_members_of_one_group_on_the_shared_port_do_not_clash() -> None:
    def member(app_id: str, own: int, colour: str) -> Service:
        labels = {
            "HAPROXY_DEPLOYMENT_GROUP": "g",
            "HAPROXY_DEPLOYMENT_COLOUR": colour,
            "HAPROXY_0_PORT": "10000",
            "HAPROXY_0_VHOST": "web.example",
        }
        endpoint = Endpoint(task_id="t", address="10.0.0.1", port=31000)
        return Service(app_id, own, 0, "host", labels=labels, endpoints=(endpoint,))

    services = [member("/web-green", 10001, "green"), member("/web-blue", 10000, "blue")]
    assert output.port_clash_warnings(services) == []
    _header, rows = output.services_rows(services)
    assert [row[:6] for row in rows] == [
        (10000, "/web-blue", None, "tcp", "http", "g/blue"),
        (10000, "/web-green", None, "tcp", "http", "g/green"),
    ]
