"""``marathon-sidecar --once``, the preview: what it reports, where it writes, what it never
touches. Against the Marathon emulator over HTTP and the real ``haproxy -c``."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from sidecar.main import main

pytestmark = pytest.mark.haproxy

NOT_HONORED = {
    "HAPROXY_0_BACKEND_HEAD": "balance first",  # a raw template label
    "HAPROXY_0_SSL_CERT": "/etc/ssl/web.pem",  # no TLS termination
    "HAPROXY_0_BALANCE": "static-rr",  # blocks runtime server changes
}


def app(app_id: str, protocol: str = "tcp", **labels: str) -> dict[str, object]:
    return {
        "id": app_id,
        "cmd": "sleep 1000",
        "instances": 1,
        "cpus": 0.01,
        "mem": 16,
        "portDefinitions": [{"port": 0, "protocol": protocol}],  # Marathon picks a service port
        "labels": labels,
    }


@pytest.fixture(scope="module")
def marathon() -> Iterator[MarathonEmulator]:
    """Marathon with a clean app, an app with three labels the sidecar does not honor and an
    app whose only port is UDP (left out)."""
    with MarathonEmulator() as emulator:
        client = MarathonClient(emulator.url)
        client.create_app(app("/clean/web"))
        client.create_app(app("/labels/web", **NOT_HONORED))
        client.create_app(app("/udp/dns", protocol="udp"))
        emulator.wait_for(lambda: len(emulator.tasks(None, ["TASK_RUNNING"])) == 3)
        client.close()
        yield emulator


@pytest.fixture(scope="module")
def clean_marathon() -> Iterator[MarathonEmulator]:
    with MarathonEmulator() as emulator:
        client = MarathonClient(emulator.url)
        client.create_app(app("/clean/web"))
        emulator.wait_for(lambda: len(emulator.tasks("/clean/web", ["TASK_RUNNING"])) == 1)
        client.close()
        yield emulator


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """main() points the root logger at this test's captured stderr: put it back after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def once(url: str, haproxy_bin: str, *extra: str) -> int:
    return main(["--once", "--marathon", url, "--haproxy-bin", haproxy_bin, *extra], {})


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_once_reports_every_label_problem_and_skipped_app(
    marathon: MarathonEmulator,
    haproxy_bin: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = once(marathon.url, haproxy_bin, "--state-dir", str(tmp_path))
    err = capsys.readouterr().err
    assert code == 0
    reported = [line for line in err.splitlines() if "label not honored" in line]
    for label in NOT_HONORED:
        assert any(label in line and "app_id=/labels/web" in line for line in reported), label
    assert any("left out" in line and "app_id=/udp/dns" in line for line in err.splitlines())
    assert "label_problems=3" in err and "skipped=1" in err


def test_once_strict_exits_3_when_something_is_not_honored(
    marathon: MarathonEmulator, haproxy_bin: str, tmp_path: Path
) -> None:
    assert once(marathon.url, haproxy_bin, "--state-dir", str(tmp_path), "--strict") == 3


def test_once_strict_exits_0_when_everything_is_honored(
    clean_marathon: MarathonEmulator, haproxy_bin: str, tmp_path: Path
) -> None:
    assert once(clean_marathon.url, haproxy_bin, "--state-dir", str(tmp_path), "--strict") == 0


def test_once_prints_the_config_and_leaves_a_live_node_alone(
    clean_marathon: MarathonEmulator,
    haproxy_bin: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A node's own settings (its state dir, its live haproxy.cfg): nothing changes."""
    state = tmp_path / "state"
    (state / "run").mkdir(parents=True)
    (state / "haproxy.cfg").write_text("# the config HAProxy runs\n")
    (state / "last-applied.json").write_text("{}")
    before = tree(state)
    code = once(
        clean_marathon.url,
        haproxy_bin,
        *("--state-dir", str(state), "--haproxy-config", str(state / "haproxy.cfg")),
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert tree(state) == before
    assert "\nfrontend fe_" in printed and "\nbackend be_clean_web_" in printed
    preview = tmp_path / "preview.cfg"
    preview.write_text(printed)
    check = subprocess.run([haproxy_bin, "-c", "-f", str(preview)], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()


def test_once_never_creates_the_state_dir(
    clean_marathon: MarathonEmulator, haproxy_bin: str, tmp_path: Path
) -> None:
    state = tmp_path / "nonexistent" / "dir"
    assert once(clean_marathon.url, haproxy_bin, "--state-dir", str(state)) == 0
    assert not (tmp_path / "nonexistent").exists()


def test_once_output_writes_only_that_file(
    clean_marathon: MarathonEmulator,
    haproxy_bin: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out" / "haproxy.cfg"
    out.parent.mkdir()
    state = tmp_path / "missing-state"
    code = once(clean_marathon.url, haproxy_bin, "--state-dir", str(state), "--output", str(out))
    assert code == 0
    assert capsys.readouterr().out == ""
    assert os.listdir(out.parent) == ["haproxy.cfg"]  # no candidate left behind
    assert "\nbackend be_clean_web_" in out.read_text()
    assert not state.exists()


def test_once_output_into_a_missing_folder_exits_2_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "haproxy.cfg"
    code = main(["--once", "--marathon", "http://127.0.0.1:1", "--output", str(out)], {})
    assert code == 2
    assert "--output: no such directory" in capsys.readouterr().err
    assert not out.parent.exists()


def test_output_and_strict_need_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--marathon", "http://127.0.0.1:1", "--strict"], {}) == 2
    assert "--strict only applies to --once" in capsys.readouterr().err


def test_once_takes_relative_paths_from_the_working_directory(
    clean_marathon: MarathonEmulator,
    haproxy_bin: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sc").mkdir()
    code = once(
        clean_marathon.url,
        haproxy_bin,
        *("--state-dir", "sc", "--haproxy-config", "sc/haproxy.cfg"),
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert f"stats socket {tmp_path}/sc/run/admin.sock " in printed.out
    assert os.listdir(tmp_path / "sc") == []
