"""The command line: exit codes, --help, log formats, credentials scrubbed from logs."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest

from marathon_bridge import __version__
from marathon_bridge.logs import JSONFormatter, RedactingFilter
from sidecar.main import main, secrets_of, setup_logging
from sidecar.settings import load_settings


def test_help_exits_0_and_lists_env_vars(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"], {}) == 0
    out = capsys.readouterr().out
    assert "--resync-interval" in out and "MARATHON_SIDECAR_RESYNC_INTERVAL" in out


def test_version_prints_the_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"], {}) == 0
    assert capsys.readouterr().out == f"marathon-sidecar {__version__}\n"


def test_bad_value_exits_2_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--marathon", "http://m:8080", "--poll-interval", "often"], {}) == 2
    assert "--poll-interval" in capsys.readouterr().err


def test_unknown_flag_exits_2() -> None:
    assert main(["--marathon", "http://m", "--frobnicate"], {}) == 2


def test_missing_marathon_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], {}) == 2
    assert "MARATHON_URL" in capsys.readouterr().err


def test_json_logs_carry_extras_and_never_credentials() -> None:
    settings = load_settings(
        ["--marathon", "http://alice:url-secret@m:8080", "--log-format", "json"],
        {"MARATHON_TOKEN": "tok-secret-123"},
    )
    stream = io.StringIO()
    handler = setup_logging(settings, stream)
    try:
        logger = logging.getLogger("sidecar.test")
        logger.warning(
            "calling %s with tok-secret-123", "m", extra={"url": "http://alice:url-secret@m"}
        )
        try:
            raise RuntimeError("boom tok-secret-123")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["level"] == "warning" and lines[0]["url"] == "http://alice:***@m"
    assert lines[0]["message"] == "calling m with ***"
    text = stream.getvalue()
    assert "tok-secret-123" not in text and "url-secret" not in text
    assert "RuntimeError" in lines[1]["exception"]


def test_secrets_of_collects_every_credential() -> None:
    settings = load_settings(
        ["--marathon", "https://u:p%40ss@m", "--user", "bob"], {"MARATHON_PASSWORD": "hunter22"}
    )
    found = secrets_of(settings)
    assert "hunter22" in found and "p@ss" in found and "p%40ss" in found


def test_short_values_are_not_scrubbed_everywhere() -> None:
    record = logging.LogRecord("x", logging.INFO, "x", 1, "a b", None, None)
    assert RedactingFilter(["a"]).filter(record) and record.getMessage() == "a b"
    assert json.loads(JSONFormatter().format(record))["message"] == "a b"


def test_a_missing_state_dir_is_created_private(tmp_path: Path) -> None:
    from sidecar.main import prepare_directories
    from sidecar.settings import Settings

    state = tmp_path / "deep" / "state"
    settings = Settings(marathon_urls=("http://m:8080",), state_dir=str(state))
    assert prepare_directories(settings) == ""
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o700
    assert os.path.isdir(os.path.dirname(settings.haproxy_config_path))


def test_a_state_dir_that_cannot_be_created_exits_2_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = main(["--marathon", "http://127.0.0.1:1", "--state-dir", str(blocker / "state")], {})
    assert code == 2
    assert f"cannot create {blocker / 'state'}" in capsys.readouterr().err
