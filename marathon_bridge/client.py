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

import functools
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union
from urllib.parse import quote

import requests

from marathon_bridge import __version__
from marathon_bridge.auth import Auth, BasicAuth, TokenAuth, userinfo_auth
from marathon_bridge.errors import Unavailable
from marathon_bridge.events import EventStream
from marathon_bridge.responses import DeploymentRef, created_deployment, deployment_ref, field_of
from marathon_bridge.transport import Transport, base_url

__all__ = ["BasicAuth", "DeploymentRef", "MarathonClient", "TokenAuth"]

log = logging.getLogger(__name__)


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


class MarathonClient:
    """A client for Marathon's REST v2 API. Thread-safe; results are Marathon's plain JSON dicts.

    ``urls``: one base URL or several (``http://host:8080``, or a prefix such as
    ``https://dcos/service/marathon``). ``auth``: ``BasicAuth``, ``TokenAuth`` or None.
    ``verify``: True (default), a CA bundle path, or False to skip TLS verification.
    ``timeout``: seconds, or ``(connect, read)``. ``retries``: extra rounds over all URLs when
    none answered (idempotent calls only). ``backoff``: the first retry delay in seconds.
    ``user_agent``: the User-Agent header of every request (e.g. who is asking, for Marathon's
    access log).
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
        user_agent: Optional[str] = None,
    ) -> None:
        raw_urls = [u for u in ([urls] if isinstance(urls, str) else list(urls)) if u.strip()]
        if not raw_urls:
            raise ValueError("urls: at least one Marathon URL is required")
        if auth is None:
            auth = next((a for a in map(userinfo_auth, raw_urls) if a is not None), None)
        if auth is not None and not isinstance(auth, (BasicAuth, TokenAuth)):
            raise TypeError("auth: expected BasicAuth, TokenAuth or None")
        if isinstance(verify, str) and not os.path.exists(verify):
            raise ValueError(f"verify: CA bundle {verify!r} does not exist")
        if retries < 0 or backoff < 0:
            raise ValueError("retries and backoff must not be negative")
        self._auth = auth
        self._own_session = session is None
        if session is None:
            session = requests.Session()
        session.headers.setdefault("User-Agent", f"marathon-bridge/{__version__}")
        if user_agent:
            session.headers["User-Agent"] = user_agent
        self._transport = Transport(
            list(dict.fromkeys(base_url(u) for u in raw_urls)),
            auth_header=auth.header() if auth is not None else None,
            verify=verify,
            timeout=(
                (float(timeout), float(timeout))
                if isinstance(timeout, (int, float))
                else (float(timeout[0]), float(timeout[1]))
            ),
            retries=retries,
            backoff=backoff,
            session=session,
        )
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
            self._transport.session.close()

    @property
    def urls(self) -> list[str]:
        """The base URLs in the order they will be tried: the last one that answered first."""
        return self._transport.urls

    @property
    def verify(self) -> Union[bool, str]:
        """True, a CA bundle path, or False (TLS not verified)."""
        return self._transport.verify

    @property
    def timeout(self) -> tuple[float, float]:
        """(connect, read) timeout in seconds of every request."""
        return self._transport.timeout

    @property
    def retries(self) -> int:
        """Extra rounds over all URLs when none answered (idempotent calls only)."""
        return self._transport.retries

    @property
    def backoff(self) -> float:
        """The first retry delay in seconds."""
        return self._transport.backoff

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
        return body, created_deployment(response, body)

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
        return deployment_ref(response, body, "DELETE")

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
        opener = functools.partial(self._transport.open_event_stream, params)
        return EventStream(
            opener,
            on_connect=on_connect,
            read_timeout=read_timeout,
            stop=stop,
            backoff=self.backoff,
        )

    # -- internals ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        body: Optional[Mapping[str, Any]] = None,
        accept: str = "application/json",
    ) -> tuple[requests.Response, Any]:
        return self._transport.call(method, path, params, body=body, accept=accept)

    def _get_field(self, path: str, key: str, params: Sequence[tuple[str, str]] = ()) -> Any:
        response, body = self._call("GET", path, params)
        return field_of(body, key, response, "GET")

    def _deploy(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]],
        body: Optional[Mapping[str, Any]] = None,
    ) -> DeploymentRef:
        response, payload = self._call(method, path, params, body=body)
        return deployment_ref(response, payload, method)
