"""One exception tree for everything marathon-bridge raises.

``MarathonBridgeError``
    ``DefinitionError``   a definition file or app is invalid (offline; nothing was sent)
    ``MarathonError``     Marathon answered with an error, or could not be reached
        ``BadRequest`` (400), ``Unauthorized`` (401), ``Forbidden`` (403), ``NotFound`` (404),
        ``Conflict`` (409, carries the locking deployment ids), ``Invalid`` (422, carries
        Marathon's ``details``), ``ServerError`` (other 5xx), ``Unavailable`` (502/503, timeouts,
        connection errors, no URL answered)
    ``DeploymentError``   a deployment failed, was cancelled, or timed out (``DeploymentTimeout``)
    ``EventStreamError``  the event stream could not be opened or broke
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class Issue:
    """One problem with a definition: a JSON path (as in Marathon's 422 ``details``) and a message.

    ``source`` names the file (and item) the app came from, when known; ``kind`` is ``"type"``
    for JSON shape/type errors (Marathon: "Invalid JSON"), ``"semantic"`` for rule violations
    (Marathon: "Object is not valid") and ``"unknown"`` for a field Marathon ignores (a warning).
    ``line`` and ``column`` (from 1; 0 when unknown) say where in the file the path is; ``hint``
    adds what is allowed when Marathon's own message does not say (``ports 0..1``).
    """

    path: str
    message: str
    source: str = ""
    kind: str = "semantic"
    line: int = 0
    column: int = 0
    hint: str = ""

    @property
    def location(self) -> str:
        """``file:line:column`` when the position is known, else the source (``file#item``)."""
        if not self.line:
            return self.source
        file = self.source.split("#", 1)[0]
        return f"{file}:{self.line}:{self.column}" if self.column else f"{file}:{self.line}"

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.path}: {self.message}"


class MarathonBridgeError(Exception):
    """Base class of every error this package raises on purpose."""


class DefinitionError(MarathonBridgeError):
    """An app definition (or the file holding it) is invalid. Nothing was sent to Marathon."""

    def __init__(self, issues: Sequence[Issue], message: str = "") -> None:
        self.issues: list[Issue] = list(issues)
        text = message or "; ".join(str(i) for i in self.issues) or "invalid definition"
        super().__init__(text)


class MarathonError(MarathonBridgeError):
    """Marathon answered with an error status, or could not be reached at all."""

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        details: Any = None,
        method: str = "",
        url: str = "",
        body: Any = None,
    ) -> None:
        self.message = message
        self.status = status
        self.details = details
        self.method = method
        self.url = url
        self.body = body
        super().__init__(self._render())

    def _render(self) -> str:
        prefix = f"{self.status} " if self.status else ""
        where = f" ({self.method} {self.url})" if self.method else ""
        return f"{prefix}{self.message}{where}"


class BadRequest(MarathonError):
    """400: malformed JSON, or an invalid combination of query parameters."""


class Unauthorized(MarathonError):
    """401: missing or wrong credentials."""


class Forbidden(MarathonError):
    """403: the credentials may not do this (or too many deployments are running)."""


class NotFound(MarathonError):
    """404: the app, task, group, version or deployment does not exist."""


class Conflict(MarathonError):
    """409: the app exists already, or running deployments lock it (see ``deployment_ids``)."""

    @property
    def deployment_ids(self) -> list[str]:
        body = self.body if isinstance(self.body, Mapping) else {}
        deployments = body.get("deployments") or []
        return [str(d["id"]) for d in deployments if isinstance(d, Mapping) and "id" in d]


class Invalid(MarathonError):
    """422: Marathon refused the object; ``issues`` lists each path with its errors."""

    @property
    def issues(self) -> list[Issue]:
        out: list[Issue] = []
        if isinstance(self.details, list):
            for entry in self.details:
                if not isinstance(entry, Mapping):
                    continue
                path = str(entry.get("path", "/"))
                for err in entry.get("errors") or []:
                    out.append(Issue(path=path, message=str(err)))
        return out

    def _render(self) -> str:
        base = super()._render()
        lines = [f"  {i.path}: {i.message}" for i in self.issues]
        return "\n".join([base, *lines]) if lines else base


class ServerError(MarathonError):
    """500 or another 5xx that is not 502/503."""


class Unavailable(MarathonError):
    """502/503, a timeout, a refused or dropped connection: no Marathon URL gave an answer."""


class DeploymentError(MarathonBridgeError):
    """A deployment failed or was cancelled."""

    def __init__(
        self, message: str, *, deployment_id: str = "", app_ids: Sequence[str] = ()
    ) -> None:
        self.deployment_id = deployment_id
        self.app_ids = list(app_ids)
        super().__init__(message)


class DeploymentTimeout(DeploymentError):
    """A deployment did not finish in time."""


class EventStreamError(MarathonBridgeError):
    """The ``/v2/events`` stream could not be opened, or broke."""


STATUS_ERRORS: Mapping[int, type[MarathonError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    502: Unavailable,
    503: Unavailable,
}


def error_for_status(status: int) -> type[MarathonError]:
    """The exception class for an HTTP error status."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    return ServerError if status >= 500 else MarathonError
