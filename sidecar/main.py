"""``marathon-sidecar``: parse settings, set up logging and signals, run the daemon.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT) or a successful ``--once``; 1 when the daemon
cannot start or ``--once`` fails; 2 for bad settings (the message names the option).
SIGHUP takes a fresh Marathon snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Optional

from .settings import Settings, SettingsError, load_settings

log = logging.getLogger("sidecar")

_STANDARD_RECORD_KEYS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


class RedactingFilter(logging.Filter):
    """Replace every known secret in a record (message, arguments, extras) with ``***``."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s and len(s) >= 3)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        record.msg, record.args = self._scrub(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_RECORD_KEYS and isinstance(value, str):
                setattr(record, key, self._scrub(value))
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self._scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_RECORD_KEYS and not key.startswith("_"):
                body[key] = (
                    value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
                )
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exception"] = record.exc_text
        return json.dumps(body, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _STANDARD_RECORD_KEYS and not key.startswith("_")
        ]
        if extras:
            first, newline, rest = text.partition("\n")
            text = first + " " + " ".join(extras) + newline + rest
        return text


def secrets_of(settings: Settings) -> list[str]:
    """Every credential the settings hold: password, token, passwords inside Marathon URLs."""
    found = [s for s in (settings.password, settings.token) if s]
    for url in settings.marathon_urls:
        authority = url.partition("://")[2].partition("/")[0]
        userinfo = authority.rpartition("@")[0]
        if ":" in userinfo:
            found.append(urllib.parse.unquote(userinfo.split(":", 1)[1]))
            found.append(userinfo.split(":", 1)[1])
    return found


def setup_logging(settings: Settings, stream: Any = None) -> logging.Handler:
    """Root logging to stderr in the chosen format, with the credentials scrubbed."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(RedactingFilter(secrets_of(settings)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler


def prepare_directories(settings: Settings) -> str:
    """Create --state-dir (mode 700) and the config file's folder; "" or what went wrong."""
    wanted = [(Path(settings.state_dir), 0o700), (Path(settings.haproxy_config_path).parent, 0o755)]
    for folder, mode in wanted:
        try:
            folder.mkdir(mode=mode, parents=True, exist_ok=True)
        except OSError as exc:
            return (
                f"cannot create {folder}: {exc.strerror or exc} (create it, writable by this user)"
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder} is not writable by this user"
    return ""


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    """Entry point of ``marathon-sidecar``."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    try:
        settings = load_settings(args, env)
    except SettingsError as exc:
        print(f"marathon-sidecar: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse: --help (0) or an unknown flag (2)
        return int(exc.code) if isinstance(exc.code, int) else 2
    setup_logging(settings)
    problem = prepare_directories(settings)
    if problem:
        print(f"marathon-sidecar: {problem}", file=sys.stderr)
        return 2
    from .daemon import Daemon  # imported late: --help stays fast

    try:
        daemon = Daemon(settings)
    except Exception as exc:
        log.error("cannot start", extra={"error": str(exc)[:500]})
        return 1
    log.info("starting", extra={"settings": json.dumps(settings.public_dict(), sort_keys=True)})
    if settings.once:
        return daemon.run_once()
    _install_signal_handlers(daemon)
    try:
        return daemon.run()
    except Exception as exc:
        log.exception("stopped by an error", extra={"error": str(exc)[:500]})
        return 1


def _install_signal_handlers(daemon: Any) -> None:
    def handle(signum: int, frame: Optional[FrameType]) -> None:
        log.info("signal received; stopping", extra={"signal": signal.Signals(signum).name})
        daemon.stop()

    def resync(signum: int, frame: Optional[FrameType]) -> None:
        log.info("SIGHUP: taking a fresh Marathon snapshot")
        daemon.resync()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGHUP, resync)
