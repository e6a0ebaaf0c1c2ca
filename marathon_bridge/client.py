"""Marathon REST v2 client: several URLs with failover, auth, TLS, safe retries, every v2 call.

>>> client = MarathonClient(["http://m1:8080", "http://m2:8080"], auth=BasicAuth("u", "p"))
>>> apps = client.list_apps(embed=["apps.tasks"])          # plain dicts, as Marathon sends them

Failover and retries. Each call tries the URLs in order; a connection error, a timeout, a 502 or
a 503 moves on to the next URL, and the URL that answered is tried first from then on. When no
URL answered, the whole round is retried with exponential backoff and jitter (``retries``
times) -- but only for GET/HEAD/PUT/DELETE. A POST or PATCH moves on or is retried only when
the connection was never made (refused, or the connect timed out), so Marathon cannot have seen
it; once it was sent, its failure is raised at once.

Errors. Every failure raises the tree in ``marathon_bridge.errors`` with Marathon's own
``message`` (and ``details``) verbatim; bodies that are not JSON (Jetty's HTML pages) give the
status and reason. Credentials never appear in logs, exceptions or ``repr``; user info in a URL
(``http://user:pass@host``) is taken as basic auth and removed from the URL.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Optional, Union
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import requests
import requests.auth
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from urllib3.exceptions import MaxRetryError, NewConnectionError

from marathon_bridge import __version__, jsonfast
from marathon_bridge.errors import (
    Forbidden,
    MarathonError,
    Unauthorized,
    Unavailable,
    error_for_status,
)
from marathon_bridge.events import EventStream

__all__ = ["BasicAuth", "DeploymentRef", "MarathonClient", "TokenAuth"]

log = logging.getLogger(__name__)

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_FAILOVER_STATUSES = frozenset({502, 503})
_MAX_REDIRECTS = 5
_MAX_BACKOFF = 10.0
_JSON = "application/json"
_SSE = "text/event-stream"
_TITLE = re.compile(rb"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class BasicAuth(NamedTuple):
    """HTTP basic credentials (Marathon's ``--http_credentials``). ``repr`` hides the password."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"BasicAuth(user={self.user!r}, password='***')"

    def header(self) -> str:
        """The ``Authorization`` header value."""
        raw = f"{self.user}:{self.password}"
        try:
            encoded = raw.encode("latin-1")
        except UnicodeEncodeError:
            encoded = raw.encode("utf-8")
        return "Basic " + base64.b64encode(encoded).decode("ascii")


class TokenAuth(NamedTuple):
    """A DC/OS authentication token, sent as ``Authorization: token=<token>``. ``repr`` hides it."""

    token: str

    def __repr__(self) -> str:
        return "TokenAuth(token='***')"

    def header(self) -> str:
        """The ``Authorization`` header value."""
        return f"token={self.token}"


Auth = Union[BasicAuth, TokenAuth]


@dataclass(frozen=True)
class DeploymentRef:
    """The deployment a write started: its id and the app version it deploys (may be "")."""

    deployment_id: str
    version: str = ""


class _AuthorizationHeader(requests.auth.AuthBase):
    """Sets a fixed ``Authorization`` header (and keeps requests from reading ~/.netrc)."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request

    def __repr__(self) -> str:
        return "_AuthorizationHeader('***')"


class _RoundFailed(Exception):
    """No URL answered in one round and trying again is safe; carries the error to raise."""

    def __init__(self, error: MarathonError) -> None:
        super().__init__(str(error))
        self.error = error


# ---------------------------------------------------------------------------------------------
# pure helpers


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: safe to log and to put in error messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def _userinfo_auth(url: str) -> Optional[BasicAuth]:
    parts = urlsplit(url)
    if parts.username is None:
        return None
    return BasicAuth(unquote(parts.username), unquote(parts.password or ""))


def _base_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number or out of range
        valid = False
    if not valid or parts.query or parts.fragment:
        raise ValueError(f"urls: not an http(s) base URL: {strip_userinfo(url)!r}")
    return strip_userinfo(url).rstrip("/")


def _segment(value: str, what: str) -> str:
    """One URL path segment, percent-quoted."""
    if not value or value in (".", ".."):
        raise ValueError(f"{what}: invalid value {value!r}")
    return quote(value, safe=":")


def _id_path(value: str, what: str) -> str:
    """``/a/b`` for an app or group id given as ``a/b`` or ``/a/b`` (segments quoted)."""
    segments = str(value).strip("/").split("/")
    if segments == [""]:
        raise ValueError(f"{what}: must not be empty or '/'")
    return "/" + "/".join(_segment(s, what) for s in segments)


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _embed(embed: Sequence[str]) -> list[tuple[str, str]]:
    if isinstance(embed, str):
        embed = [embed]
    return [("embed", e) for e in embed]


def _nothing_sent(exc: BaseException) -> bool:
    """True when the request surely never reached a server (refused, unresolvable, no connect)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (NewConnectionError, ConnectionRefusedError)):
            return True
        if isinstance(current, MaxRetryError) and current.reason is not None:
            pending.append(current.reason)
        pending.extend(a for a in current.args if isinstance(a, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
    return False


def _innermost(exc: BaseException) -> BaseException:
    current = exc
    for _ in range(10):
        nested: Optional[BaseException] = None
        if isinstance(current, MaxRetryError) and current.reason is not None:
            nested = current.reason
        elif current.args and isinstance(current.args[-1], BaseException):
            nested = current.args[-1]
        elif isinstance(current.__cause__, OSError):
            nested = current.__cause__
        if nested is None:
            break
        current = nested
    return current


def _describe(exc: BaseException) -> str:
    """A short, credential-free description of a transport failure."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timed out"
    inner = _innermost(exc)
    detail = getattr(inner, "strerror", None) or str(inner) or type(inner).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS error: {detail}"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken while reading the response"
    if _nothing_sent(exc):
        return f"cannot connect: {detail}"
    return f"connection failed: {detail}"


def _html_title(content: bytes, status: int) -> str:
    match = _TITLE.search(content[:4096])
    if not match:
        return ""
    title = re.sub(r"\s+", " ", match.group(1).decode("utf-8", errors="replace")).strip()
    prefix = f"Error {status} "
    return title[len(prefix) :] if title.startswith(prefix) else title


def _plain_message(response: requests.Response) -> str:
    """A message for an error whose body is not Marathon JSON (e.g. a Jetty HTML page)."""
    status = response.status_code
    reason = response.reason or ""
    if 300 <= status < 400:
        location = strip_userinfo(response.headers.get("Location", ""))
        return f"unexpected redirect to {location}" if location else "unexpected redirect"
    title = _html_title(response.content or b"", status)
    if title and title != reason:
        return f"{reason}: {title}" if reason else title
    return reason or f"HTTP {status}"


def error_from_response(response: requests.Response, method: str) -> MarathonError:
    """The ``errors`` exception for an error response, keeping Marathon's message verbatim."""
    status = response.status_code
    content = response.content or b""
    body: Any = None
    message = ""
    details: Any = None
    if content:
        try:
            body = jsonfast.loads(content)
        except ValueError:
            body = content[:2000].decode("utf-8", errors="replace")
    if isinstance(body, dict):
        message = str(body.get("message") or "")
        details = body.get("details")
    if not message:
        message = _plain_message(response)
    cls = error_for_status(status)
    return cls(
        message,
        status=status,
        details=details,
        method=method,
        url=strip_userinfo(response.url or ""),
        body=body,
    )


def _payload(response: requests.Response) -> Any:
    """The parsed body of a 2xx response: JSON data, text for text/* bodies, None when empty."""
    content = response.content
    if not content:
        return None
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("text/") and "json" not in content_type:
        return response.text
    return jsonfast.loads(content)


def _deployment_ref(response: requests.Response, body: Any, method: str) -> DeploymentRef:
    """The deployment named by a ``{"version","deploymentId"}`` body or the deployment header."""
    header = response.headers.get("Marathon-Deployment-Id", "")
    if isinstance(body, dict) and body.get("deploymentId"):
        return DeploymentRef(str(body["deploymentId"]), str(body.get("version") or ""))
    if header:
        version = body.get("version") if isinstance(body, dict) else ""
        return DeploymentRef(header, str(version or ""))
    raise MarathonError(
        "Marathon's answer names no deployment",
        status=response.status_code,
        method=method,
        url=response.url,
        body=body,
    )


def _field(body: Any, key: str, response: requests.Response, method: str) -> Any:
    """``body[key]``, or a ``MarathonError`` when Marathon's answer lacks it."""
    try:
        return body[key]
    except (KeyError, TypeError, IndexError):
        raise MarathonError(
            f"unexpected answer: no {key!r} in the response body",
            status=response.status_code,
            method=method,
            url=response.url,
        ) from None


# ---------------------------------------------------------------------------------------------
# the client


class MarathonClient:
    """A client for Marathon's REST v2 API. Thread-safe; results are Marathon's plain JSON dicts.

    ``urls``: one base URL or several (``http://host:8080``, or a prefix such as
    ``https://dcos/service/marathon``). ``auth``: ``BasicAuth``, ``TokenAuth`` or None.
    ``verify``: True (default), a CA bundle path, or False to skip TLS verification.
    ``timeout``: seconds, or ``(connect, read)``. ``retries``: extra rounds over all URLs when
    none answered (idempotent calls only). ``backoff``: the first retry delay in seconds.
    """

    def __init__(
        self,
        urls: Union[str, Sequence[str]],
        *,
        auth: Optional[Auth] = None,
        verify: Union[bool, str] = True,
        timeout: Union[float, tuple[float, float]] = (3.05, 30.0),
        retries: int = 3,
        backoff: float = 0.2,
        session: Optional[requests.Session] = None,
    ) -> None:
        raw_urls = [u for u in ([urls] if isinstance(urls, str) else list(urls)) if u.strip()]
        if not raw_urls:
            raise ValueError("urls: at least one Marathon URL is required")
        if auth is None:
            auth = next((a for a in map(_userinfo_auth, raw_urls) if a is not None), None)
        if auth is not None and not isinstance(auth, (BasicAuth, TokenAuth)):
            raise TypeError("auth: expected BasicAuth, TokenAuth or None")
        if isinstance(verify, str) and not os.path.exists(verify):
            raise ValueError(f"verify: CA bundle {verify!r} does not exist")
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must not be negative")
        self._urls = list(dict.fromkeys(_base_url(u) for u in raw_urls))
        self._lock = threading.Lock()
        self._auth = auth
        self._auth_hook = _AuthorizationHeader(auth.header()) if auth is not None else None
        self.verify = verify
        self.timeout: tuple[float, float] = (
            (float(timeout), float(timeout))
            if isinstance(timeout, (int, float))
            else (float(timeout[0]), float(timeout[1]))
        )
        self.retries = retries
        self.backoff = backoff
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._session.headers.setdefault("User-Agent", f"marathon-bridge/{__version__}")
        if verify is False:
            log.warning("TLS certificate verification is disabled for Marathon")

    def __repr__(self) -> str:
        kind = type(self._auth).__name__ if self._auth is not None else "None"
        return f"MarathonClient(urls={self.urls!r}, auth={kind})"

    def __enter__(self) -> MarathonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session (only if the client created it)."""
        if self._own_session:
            self._session.close()

    @property
    def urls(self) -> list[str]:
        """The base URLs in the order they will be tried: the last one that answered first."""
        with self._lock:
            return list(self._urls)

    # -- apps --------------------------------------------------------------------------------

    def list_apps(
        self, embed: Sequence[str] = (), app_id: str = "", label: str = "", cmd: str = ""
    ) -> list[dict]:
        """``GET /v2/apps``: all apps, filtered by id/label/cmd substring or selector if given.

        ``embed`` values (``apps.tasks``, ``apps.counts``, ``apps.deployments``,
        ``apps.lastTaskFailure``, ``apps.readiness``, ``apps.taskStats``) are sent repeated.
        """
        params = _embed(embed)
        params += [(k, v) for k, v in (("id", app_id), ("label", label), ("cmd", cmd)) if v]
        return self._get_field("/v2/apps", "apps", params)

    def get_app(self, app_id: str, embed: Sequence[str] = ()) -> dict:
        """``GET /v2/apps/{id}``: the app (with its tasks, counts and deployments)."""
        path = "/v2/apps" + _id_path(app_id, "app_id")
        return self._get_field(path, "app", _embed(embed))

    def create_app(self, app: Mapping[str, Any]) -> tuple[dict, DeploymentRef]:
        """``POST /v2/apps``: the created app as Marathon echoes it, and its deployment."""
        response, body = self._call("POST", "/v2/apps", body=app)
        header = response.headers.get("Marathon-Deployment-Id", "")
        if not header and isinstance(body, dict):
            deployments = body.get("deployments") or []
            if deployments and isinstance(deployments[0], dict):
                header = str(deployments[0].get("id") or "")
        if not header:
            raise MarathonError(
                "Marathon's answer names no deployment",
                status=response.status_code,
                method="POST",
                url=response.url,
                body=body,
            )
        version = body.get("version", "") if isinstance(body, dict) else ""
        return body, DeploymentRef(header, str(version or ""))

    def update_app(
        self,
        app_id: str,
        app: Mapping[str, Any],
        *,
        force: bool = False,
        partial_update: bool = True,
    ) -> DeploymentRef:
        """``PUT /v2/apps/{id}``: update (or create) an app; ``partial_update=False`` replaces."""
        params = [("force", _flag(force)), ("partialUpdate", _flag(partial_update))]
        return self._deploy("PUT", "/v2/apps" + _id_path(app_id, "app_id"), params, app)

    def patch_app(
        self, app_id: str, patch: Mapping[str, Any], *, force: bool = False
    ) -> DeploymentRef:
        """``PATCH /v2/apps/{id}``: change only the given fields of an existing app."""
        path = "/v2/apps" + _id_path(app_id, "app_id")
        return self._deploy("PATCH", path, [("force", _flag(force))], patch)

    def delete_app(self, app_id: str, *, force: bool = True) -> DeploymentRef:
        """``DELETE /v2/apps/{id}``: stop and remove the app (Marathon's default is force=true)."""
        path = "/v2/apps" + _id_path(app_id, "app_id")
        return self._deploy("DELETE", path, [("force", _flag(force))])

    def restart_app(self, app_id: str, *, force: bool = False) -> DeploymentRef:
        """``POST /v2/apps/{id}/restart``: replace every task with a new one."""
        path = "/v2/apps" + _id_path(app_id, "app_id") + "/restart"
        return self._deploy("POST", path, [("force", _flag(force))])

    def scale_app(self, app_id: str, instances: int, *, force: bool = False) -> DeploymentRef:
        """Set the number of instances (``PUT /v2/apps/{id}`` with ``{"instances": n}``)."""
        path = "/v2/apps" + _id_path(app_id, "app_id")
        return self._deploy("PUT", path, [("force", _flag(force))], {"instances": instances})

    def rollback_app(self, app_id: str, version: str, *, force: bool = False) -> DeploymentRef:
        """Go back to a stored version (``PUT /v2/apps/{id}`` with ``{"version": v}``)."""
        path = "/v2/apps" + _id_path(app_id, "app_id")
        return self._deploy("PUT", path, [("force", _flag(force))], {"version": version})

    def list_versions(self, app_id: str) -> list[str]:
        """``GET /v2/apps/{id}/versions``: the stored version timestamps."""
        path = "/v2/apps" + _id_path(app_id, "app_id") + "/versions"
        return self._get_field(path, "versions")

    def get_app_version(self, app_id: str, version: str) -> dict:
        """``GET /v2/apps/{id}/versions/{version}``: the app definition as of that version."""
        path = "/v2/apps" + _id_path(app_id, "app_id") + "/versions/" + _segment(version, "version")
        return self._call("GET", path)[1]

    # -- tasks -------------------------------------------------------------------------------

    def list_tasks(self, status: str = "") -> list[dict]:
        """``GET /v2/tasks``: every task of every app (``status``: "running" or "staging")."""
        params = [("status", status)] if status else []
        return self._get_field("/v2/tasks", "tasks", params)

    def list_app_tasks(self, app_id: str) -> list[dict]:
        """``GET /v2/apps/{id}/tasks``: the app's tasks."""
        path = "/v2/apps" + _id_path(app_id, "app_id") + "/tasks"
        return self._get_field(path, "tasks")

    def kill_task(
        self, app_id: str, task_id: str, *, scale: bool = False, wipe: bool = False
    ) -> dict:
        """``DELETE /v2/apps/{id}/tasks/{task}``: Marathon's answer, ``{"task": ...}``, or
        ``{"version", "deploymentId"}`` when ``scale`` is true."""
        path = "/v2/apps" + _id_path(app_id, "app_id") + "/tasks/" + _segment(task_id, "task_id")
        params = [("scale", _flag(scale)), ("wipe", _flag(wipe))]
        return self._call("DELETE", path, params)[1]

    def kill_tasks(
        self, task_ids: Sequence[str], *, scale: bool = False, wipe: bool = False
    ) -> dict:
        """``POST /v2/tasks/delete``: Marathon's answer, ``{"tasks": [...]}``, or
        ``{"version", "deploymentId"}`` when ``scale`` is true. Not retried once sent."""
        if isinstance(task_ids, str):
            task_ids = [task_ids]
        params = [("scale", _flag(scale)), ("wipe", _flag(wipe))]
        body = {"ids": list(task_ids)}
        return self._call("POST", "/v2/tasks/delete", params, body=body)[1]

    # -- deployments, queue, info, leader, groups ----------------------------------------------

    def list_deployments(self) -> list[dict]:
        """``GET /v2/deployments``: the running deployments."""
        return self._call("GET", "/v2/deployments")[1]

    def delete_deployment(
        self, deployment_id: str, *, force: bool = False
    ) -> Optional[DeploymentRef]:
        """``DELETE /v2/deployments/{id}``: roll the deployment back (a new deployment), or with
        ``force=True`` just cancel it (Marathon answers 202 with no body: returns None)."""
        path = "/v2/deployments/" + _segment(deployment_id, "deployment_id")
        response, body = self._call("DELETE", path, [("force", _flag(force))])
        if body is None and not response.headers.get("Marathon-Deployment-Id"):
            return None
        return _deployment_ref(response, body, "DELETE")

    def get_queue(self) -> list[dict]:
        """``GET /v2/queue``: apps waiting for offers."""
        return self._get_field("/v2/queue", "queue")

    def get_info(self) -> dict:
        """``GET /v2/info``: version, leader and configuration of the answering Marathon."""
        return self._call("GET", "/v2/info")[1]

    def get_leader(self) -> str:
        """``GET /v2/leader``: the leader's ``host:port`` (``NotFound`` when there is none)."""
        return str(self._get_field("/v2/leader", "leader"))

    def ping(self) -> bool:
        """``GET /ping``: True when a Marathon answers, False when none can be reached.

        Other errors (``Unauthorized`` ...) are raised.
        """
        try:
            self._call("GET", "/ping", accept="text/plain, application/json;q=0.9, */*;q=0.1")
        except Unavailable:
            return False
        return True

    def get_group(self, group_id: str = "/", embed: Sequence[str] = ()) -> dict:
        """``GET /v2/groups/{id}``: the group tree (the root group by default)."""
        path = "/v2/groups"
        if group_id.strip("/"):
            path += _id_path(group_id, "group_id")
        return self._call("GET", path, _embed(embed))[1]

    # -- events ------------------------------------------------------------------------------

    def event_stream(
        self,
        event_types: Sequence[str] = (),
        *,
        on_connect: Optional[Callable[[], None]] = None,
        read_timeout: float = 30.0,
        stop: Optional[threading.Event] = None,
    ) -> EventStream:
        """An ``EventStream`` over ``GET /v2/events`` (only ``event_types`` if given).

        Nothing is sent until it is iterated. ``on_connect`` runs after every (re)connect,
        before the first event of that connection: take the snapshot there.
        """
        if isinstance(event_types, str):
            event_types = [event_types]
        params = [("event_type", t) for t in event_types] + [("plan-format", "light")]
        opener = functools.partial(self._open_event_stream, params)
        return EventStream(
            opener,
            on_connect=on_connect,
            read_timeout=read_timeout,
            stop=stop,
            backoff=self.backoff,
        )

    # -- internals ---------------------------------------------------------------------------

    def _get_field(self, path: str, key: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        response, body = self._call("GET", path, params)
        return _field(body, key, response, "GET")

    def _deploy(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        body: Optional[Mapping[str, Any]] = None,
    ) -> DeploymentRef:
        response, payload = self._call(method, path, params, body=body)
        return _deployment_ref(response, payload, method)

    def _call(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        body: Optional[Mapping[str, Any]] = None,
        accept: str = _JSON,
    ) -> tuple[requests.Response, Any]:
        """Send with failover and retries; return the 2xx response and its parsed body."""
        data = jsonfast.dumps(body) if body is not None else None
        idempotent = method in _IDEMPOTENT
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.backoff, max=_MAX_BACKOFF)
            + wait_random(0, self.backoff),
            retry=retry_if_exception_type(_RoundFailed),
            before_sleep=functools.partial(self._log_retry, method, path),
            reraise=True,
        )
        try:
            return retrying(self._round, method, path, list(params), data, accept, idempotent)
        except _RoundFailed as failed:
            raise failed.error from failed.error.__cause__

    def _round(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]],
        data: Optional[bytes],
        accept: str,
        idempotent: bool,
    ) -> tuple[requests.Response, Any]:
        """Try each URL once. Raises ``_RoundFailed`` when none answered and a retry is safe."""
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = _JSON
        failures: list[tuple[str, MarathonError]] = []
        for base in self.urls:
            url = base + path
            started = time.monotonic()
            try:
                response = self._send(method, url, params, data, headers, self.timeout)
            except requests.RequestException as exc:
                error: MarathonError = Unavailable(_describe(exc), method=method, url=url)
                error.__cause__ = exc
                if not (idempotent or _nothing_sent(exc)):
                    raise error from exc
                self._log_failover(method, url, error)
                failures.append((base, error))
                continue
            self._log_response(method, response, started)
            status = response.status_code
            if status in _FAILOVER_STATUSES:
                error = error_from_response(response, method)
                if not idempotent:
                    raise error
                self._log_failover(method, url, error)
                failures.append((base, error))
                continue
            if status >= 300:
                self._prefer(base)
                raise error_from_response(response, method)
            try:
                payload = _payload(response)
            except ValueError:
                error = Unavailable(
                    "the response body is not valid JSON",
                    status=status,
                    method=method,
                    url=response.url,
                )
                if not idempotent:
                    raise error from None
                self._log_failover(method, url, error)
                failures.append((base, error))
                continue
            self._prefer(base)
            return response, payload
        raise _RoundFailed(self._no_answer(method, path, failures))

    def _send(
        self,
        method: str,
        url: str,
        params: Optional[Sequence[tuple[str, str]]],
        data: Optional[bytes],
        headers: Mapping[str, str],
        timeout: tuple[float, float],
        *,
        stream: bool = False,
        trust_redirects: bool = False,
    ) -> requests.Response:
        """One request; GET/HEAD redirects are followed here (other methods get the 3xx).

        The credentials go along to the same origin and to the configured Marathon URLs, and
        with ``trust_redirects`` (the event stream: a standby's 302 names the leader) to any
        target -- never from https down to http.
        """
        response = self._session.request(
            method,
            url,
            params=params,
            data=data,
            headers=dict(headers),
            auth=self._auth_hook,
            timeout=timeout,
            verify=self.verify,
            allow_redirects=False,
            stream=stream,
        )
        hops = 0
        while response.is_redirect and method in ("GET", "HEAD") and hops < _MAX_REDIRECTS:
            source = response.url
            target = strip_userinfo(urljoin(source, response.headers["Location"]))
            response.close()
            send_auth = self._may_send_auth(source, target, trust_redirects)
            log.info(
                "following a redirect",
                extra={"marathon_url": source, "location": target, "with_auth": send_auth},
            )
            response = self._session.request(
                method,
                target,
                headers=dict(headers),
                auth=self._auth_hook if send_auth else None,
                timeout=timeout,
                verify=self.verify,
                allow_redirects=False,
                stream=stream,
            )
            hops += 1
        return response

    def _may_send_auth(self, source: str, target: str, trust_redirects: bool) -> bool:
        """May the credentials follow a redirect from ``source`` to ``target``?"""
        if source.startswith("https:") and not target.startswith("https:"):
            return False
        origin = _origin(target)
        return (
            trust_redirects
            or origin == _origin(source)
            or any(origin == _origin(base) for base in self.urls)
        )

    def _open_event_stream(
        self, params: Sequence[tuple[str, str]], read_timeout: float
    ) -> requests.Response:
        """Open ``/v2/events`` on the first URL that accepts it (the EventStream's opener)."""
        headers = {"Accept": _SSE, "Accept-Encoding": "identity"}
        timeout = (self.timeout[0], read_timeout)
        failures: list[tuple[str, MarathonError]] = []
        for base in self.urls:
            url = base + "/v2/events"
            try:
                response = self._send(
                    "GET", url, params, None, headers, timeout, stream=True, trust_redirects=True
                )
            except requests.RequestException as exc:
                failures.append((base, Unavailable(_describe(exc), method="GET", url=url)))
                continue
            content_type = response.headers.get("Content-Type", "")
            is_sse = not content_type or content_type.lower().startswith(_SSE)
            if response.status_code == 200 and is_sse:
                self._prefer(base)
                return response
            error: MarathonError
            if response.status_code == 200:
                response.close()
                error = MarathonError(
                    f"not an event stream (Content-Type {content_type!r})",
                    status=200,
                    method="GET",
                    url=strip_userinfo(response.url),
                )
            else:
                error = error_from_response(response, "GET")
                response.close()
            if isinstance(error, (Unauthorized, Forbidden)):
                raise error
            failures.append((base, error))
        raise self._no_answer("GET", "/v2/events", failures)

    def _no_answer(
        self, method: str, path: str, failures: list[tuple[str, MarathonError]]
    ) -> MarathonError:
        """The error for a round in which no URL answered."""
        if len(failures) == 1:
            return failures[0][1]
        summary = "; ".join(f"{base}: {error.message}" for base, error in failures)
        last = failures[-1][1] if failures else None
        error = Unavailable(
            f"no Marathon URL answered ({summary})",
            status=last.status if last is not None else None,
            method=method,
            url=path,
            body=last.body if last is not None else None,
        )
        if last is not None and last.__cause__ is not None:
            error.__cause__ = last.__cause__
        return error

    def _prefer(self, base: str) -> None:
        """Rotate the URL list so ``base`` comes first."""
        with self._lock:
            if self._urls[0] == base or base not in self._urls:
                return
            index = self._urls.index(base)
            self._urls = self._urls[index:] + self._urls[:index]
        log.info("preferring Marathon URL", extra={"marathon_url": base})

    @staticmethod
    def _log_response(method: str, response: requests.Response, started: float) -> None:
        log.debug(
            "marathon response",
            extra={
                "http_method": method,
                "marathon_url": strip_userinfo(response.url),
                "http_status": response.status_code,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )

    @staticmethod
    def _log_failover(method: str, url: str, error: MarathonError) -> None:
        log.info(
            "Marathon URL did not answer; trying the next one",
            extra={
                "http_method": method,
                "marathon_url": url,
                "http_status": error.status,
                "error": error.message,
            },
        )

    @staticmethod
    def _log_retry(method: str, path: str, state: RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "no Marathon URL answered; retrying",
            extra={
                "http_method": method,
                "path": path,
                "attempt": state.attempt_number,
                "delay_s": round(delay, 3),
            },
        )
