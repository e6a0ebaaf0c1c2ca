"""Credentials: basic and token auth through the CLI, and secrets never printed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from marathon_bridge.client import BasicAuth, TokenAuth
from marathon_bridge.testing import MarathonEmulator
from testkit import free_port

PASSWORD = "pw-s3cret-42"
TOKEN = "tok-s3cret-43"


@pytest.fixture
def basic_marathon() -> Iterator[MarathonEmulator]:
    with MarathonEmulator(auth=BasicAuth("ops", PASSWORD)) as emulator:
        yield emulator


@pytest.fixture
def token_marathon() -> Iterator[MarathonEmulator]:
    with MarathonEmulator(auth=TokenAuth(TOKEN)) as emulator:
        yield emulator


def test_basic_auth_from_options_and_env(
    basic_marathon: MarathonEmulator, run_cli: Callable
) -> None:
    url = basic_marathon.url
    result = run_cli("apps", "-m", url, "--user", "ops", "--password", PASSWORD, "--verbose")
    assert result.code == 0, result.err
    assert PASSWORD not in result.out + result.err
    env = {"MARATHON_URL": url, "MARATHON_USER": "ops", "MARATHON_PASSWORD": PASSWORD}
    assert run_cli("apps", env=env).code == 0


def test_wrong_password_exits_3_without_printing_it(
    basic_marathon: MarathonEmulator, run_cli: Callable
) -> None:
    result = run_cli("apps", "-m", basic_marathon.url, "--user", "ops", "--password", "nope-wrong")
    assert result.code == 3
    assert "401" in result.err
    assert "nope-wrong" not in result.out + result.err
    assert run_cli("apps", "-m", basic_marathon.url).code == 3


def test_token_auth(token_marathon: MarathonEmulator, run_cli: Callable) -> None:
    result = run_cli("apps", "-m", token_marathon.url, "-v", env={"MARATHON_TOKEN": TOKEN})
    assert result.code == 0, result.err
    assert TOKEN not in result.out + result.err
    refused = run_cli("apps", "-m", token_marathon.url, "--token", "other")
    assert refused.code == 3
    assert "Not Authorized to perform this action!" in refused.err


def test_userinfo_in_url_is_used_and_never_printed(
    basic_marathon: MarathonEmulator, run_cli: Callable
) -> None:
    with_credentials = basic_marathon.url.replace("http://", f"http://ops:{PASSWORD}@")
    assert run_cli("apps", "-m", with_credentials).code == 0
    dead = f"http://ops:{PASSWORD}@127.0.0.1:{free_port()}"
    result = run_cli("apps", "-m", dead, "--verbose", "--request-timeout", "2")
    assert result.code == 3
    assert PASSWORD not in result.out + result.err


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    app = tmp_path / "app.json"
    app.write_text('{"id": "/x", "cmd": "sleep 1"}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARATHON_")}
    done = subprocess.run(
        [sys.executable, "-m", "marathon_bridge", "validate", str(app)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "1 app(s)" in done.stdout
