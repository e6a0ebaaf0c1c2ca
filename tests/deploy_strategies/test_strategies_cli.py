"""`marathon-bridge deploy --strategy ...` and `strategy resume|abort` on the emulator."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marathon_bridge import cli
from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator


def web(instances: int = 2, **extra: Any) -> dict[str, Any]:
    app: dict[str, Any] = {
        "id": "/cli/web",
        "cmd": "sleep 1000",
        "instances": instances,
        "cpus": 0.1,
        "mem": 32,
        "portDefinitions": [{"port": 12000, "protocol": "tcp"}],
        "labels": {"HAPROXY_DEPLOYMENT_ALT_PORT": "12001"},
    }
    app.update(extra)
    return app


@pytest.fixture
def marathon() -> Iterator[MarathonEmulator]:
    with MarathonEmulator() as emulator:
        yield emulator


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:  # (code, out, err)
    capsys.readouterr()
    code = cli.main(list(argv), environ={})
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(tmp_path: Path, data: Any) -> str:
    path = tmp_path / "app.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_canary_then_blue_green_alternate_colours(
    marathon: MarathonEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("--marathon", marathon.url, "--drain-delay", "0", "--timeout", "60")
    code, out, err = run(capsys, "deploy", write(tmp_path, web()), "--strategy", "canary", *base)
    assert code == 0, err
    assert "group cli.web: completed" in out
    assert "serving: /cli/web-blue x2" in out
    code, out, err = run(
        capsys,
        "deploy",
        write(tmp_path, web(3)),
        "--strategy",
        "canary",
        "--canary-steps",
        "34,67",
        "--output",
        "json",
        *base,
    )
    assert code == 0, err
    report = json.loads(out)
    assert (report["old_app"], report["new_app"]) == ("/cli/web-blue", "/cli/web-green")
    assert report["serving"] == {"/cli/web-green": 3}
    assert len(report["placement"]["/cli/web-green"]) == 3  # "host:port" of each task
    assert "scaled /cli/web-blue to 1" in err  # 34% of 3 rounds up to 2 new, 1 old
    code, out, err = run(
        capsys, "deploy", write(tmp_path, web()), "--strategy", "blue-green", *base
    )
    assert code == 0, err
    assert "serving: /cli/web-blue x2" in out


def test_guard_failure_exits_1_and_unknown_run_cannot_be_resumed(
    marathon: MarathonEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ("--marathon", marathon.url, "--drain-delay", "0")
    code, _out, err = run(
        capsys,
        "deploy",
        write(tmp_path, web()),
        "--strategy",
        "blue-green",
        "--min-healthy",
        "5",
        *base,
    )
    assert code == 1
    assert "below the minimum" in err
    code, _out, err = run(capsys, "strategy", "resume", "cli.web", *base)
    assert code == 1
    assert "no interrupted run" in err


def test_strategy_needs_exactly_one_app(
    marathon: MarathonEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, [web(), web(id="/cli/other")])
    code, _out, err = run(
        capsys, "deploy", path, "--strategy", "canary", "--marathon", marathon.url
    )
    assert code == 2
    assert "exactly one app" in err


@pytest.mark.parametrize("steps", ["0,50", "x", "50,101"])
def test_bad_canary_steps_are_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], steps: str
) -> None:
    code, _out, _err = run(
        capsys, "deploy", write(tmp_path, web()), "--strategy", "canary", "--canary-steps", steps
    )
    assert code == 2


def test_confirm_no_on_stdin_aborts_back_to_the_old_version(
    marathon: MarathonEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = ("--marathon", marathon.url, "--drain-delay", "0", "--timeout", "60")
    assert run(capsys, "deploy", write(tmp_path, web()), "--strategy", "canary", *base)[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, _out, err = run(
        capsys,
        "deploy",
        write(tmp_path, web()),
        "--strategy",
        "canary",
        "--canary-steps",
        "50",
        "--confirm",
        *base,
    )
    assert code == 1
    assert "50% reached (1 new, 1 old). Next step? [y/N]" in err
    assert "aborted at 50%; rolled back" in err
    with MarathonClient(marathon.url) as client:
        apps = {a["id"]: a["instances"] for a in client.list_apps()}
    assert apps == {"/cli/web-blue": 2}
