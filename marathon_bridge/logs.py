"""Log formatting shared by ``marathon-bridge`` and ``marathon-sidecar``.

Records carry structured fields as ``extra=`` (``log.warning("msg", extra={"app_id": a})``).
:class:`FieldsFormatter` writes them as ``key=value`` after the message (text logs),
:class:`JSONFormatter` as the keys of one JSON object per line. :class:`RedactingFilter` replaces
known secrets anywhere in a record before either sees it: logs never print credentials.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

# the attributes every LogRecord has; anything else came from ``extra=``
STANDARD_RECORD_KEYS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SHORT_FORMAT = "%(levelname)s %(name)s: %(message)s"  # for a command's stderr


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of a record (its ``extra=``), sorted by name."""
    return {
        key: value
        for key, value in sorted(vars(record).items())
        if key not in STANDARD_RECORD_KEYS and not key.startswith("_")
    }


class FieldsFormatter(logging.Formatter):
    """``<fmt> key=value ...``: the structured fields on the message's line (before a
    traceback, if any)."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = record_fields(record)
        if fields:
            first, newline, rest = text.partition("\n")
            pairs = " ".join(f"{key}={value}" for key, value in fields.items())
            text = f"{first} {pairs}{newline}{rest}"
        return text


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            body[key] = (
                value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
            )
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exception"] = record.exc_text
        return json.dumps(body, separators=(",", ":"))


class RedactingFilter(logging.Filter):
    """Replace every known secret in a record (message, arguments, fields) with ``***``."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s and len(s) >= 3)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        record.msg, record.args = self._scrub(message), None
        for key, value in list(vars(record).items()):
            if key not in STANDARD_RECORD_KEYS and isinstance(value, str):
                setattr(record, key, self._scrub(value))
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self._scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text
