"""The leader's REST routes: ``/v2/apps``, ``/v2/tasks``, ``/v2/deployments``, ``/v2/queue``,
``/v2/groups``, ``/v2/info``, ``/v2/leader`` and ``/ping``, answered from :class:`EmulatorState`.

Each route takes the parsed :class:`Request` and returns a :class:`Response`; Marathon's error
answers come as :class:`ApiError` from the state and are turned into responses by the server.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from marathon_bridge.testing import appmodel
from marathon_bridge.testing.context import ServerContext
from marathon_bridge.testing.info import info_document
from marathon_bridge.testing.responses import (
    JSON_TYPE,
    Response,
    deployment_result,
    embeds,
    flag,
    json_response,
    message,
)
from marathon_bridge.testing.state import ApiError, EmulatorState
from marathon_bridge.testing.state.records import invalid_json
from marathon_bridge.testing.wire import dumps_play

APP_SUB = re.compile(r"^(?P<app>/.+?)/(?P<kind>tasks|versions)(?:/(?P<rest>[^/]+))?$")
NOT_ALLOWED = "HTTP 405 Method Not Allowed"


@dataclass(frozen=True)
class Request:
    """One request as the routes need it."""

    method: str
    path: str  # without the query
    target: str  # as sent: path and query
    query: dict[str, list[str]]
    raw: bytes
    accept: str
    client_ip: str


def parse_body(raw: bytes) -> Any:
    """The JSON body, or Marathon's 400 for an empty or unparseable one."""
    if not raw.strip():
        raise ApiError(
            400,
            {
                "message": "Please specify data in JSON format",
                "details": 'No content to map due to end-of-input\n at [Source: (byte[])""; '
                "line: 1, column: 0]",
            },
        )
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, {"message": "Invalid JSON", "details": str(exc)}) from exc


def route(state: EmulatorState, request: Request, ctx: ServerContext) -> Response:
    """The answer to one REST request (``/v2/events`` is the server's own)."""
    method, path, query = request.method, request.path, request.query
    if path == "/ping":
        return ping(request.accept)
    if path == "/v2/info" and method == "GET":
        return Response(200, dumps_play(info(ctx)), JSON_TYPE)
    if path == "/v2/leader":
        return leader(ctx, method)
    if path in ("/v2/apps", "/v2/apps/"):
        return apps_root(state, request, ctx)
    if path.startswith("/v2/apps/"):
        return app_routes(state, request, path[len("/v2/apps") :], ctx)
    if path.startswith("/v2/tasks"):
        return tasks_routes(state, request)
    if path.startswith("/v2/deployments"):
        return deployments_routes(state, request)
    if path.startswith("/v2/queue"):
        return queue_routes(state, request)
    if (path == "/v2/groups" or path.startswith("/v2/groups/")) and method == "GET":
        group_id = appmodel.absolute_id(path[len("/v2/groups") :])
        return json_response(200, state.group_json(group_id, embeds(query)))
    return message(500, "URI not found")


def ping(accept: str) -> Response:
    if "application/json" in accept and "text/plain" not in accept:
        return Response(200, b'"pong"', JSON_TYPE)
    return Response(200, b"pong", "text/plain;charset=utf-8")


def leader_hostport(ctx: ServerContext) -> Optional[str]:
    url = ctx.leader_url()
    return urlsplit(url).netloc if url else None


def leader(ctx: ServerContext, method: str) -> Response:
    current = leader_hostport(ctx)
    if method == "GET":
        if not current:
            return message(404, "There is no leader")
        return json_response(200, {"leader": current})
    if method == "DELETE":
        ctx.on_abdicate()
        return json_response(200, {"message": "Leadership abdicated"})
    return message(405, NOT_ALLOWED)


def info(ctx: ServerContext) -> dict[str, Any]:
    own = urlsplit(ctx.self_url())
    return info_document(
        version=ctx.version,
        elected=ctx.state is not None,
        leader=leader_hostport(ctx),
        framework_id=ctx.framework_id,
        hostname=own.hostname or "127.0.0.1",
        http_port=own.port or 8080,
    )


def _last(query: dict[str, list[str]], name: str) -> str:
    return (query.get(name) or [""])[-1]


def _partial(request: Request) -> bool:
    """PATCH, or a PUT with ``partialUpdate`` (Marathon's default: true)."""
    return request.method == "PATCH" or flag(request.query, "partialUpdate", True)


def apps_root(state: EmulatorState, request: Request, ctx: ServerContext) -> Response:
    """``/v2/apps``: list, create one, update several."""
    method, query = request.method, request.query
    if method == "GET":
        apps = state.list_apps(
            embeds(query),
            app_filter=_last(query, "id"),
            cmd=_last(query, "cmd"),
            label=_last(query, "label"),
        )
        return json_response(200, {"apps": apps})
    if method == "POST":
        body = parse_body(request.raw)
        created, dep_id = state.create_app(
            body, flag(query, "force", False), request.target, request.client_ip
        )
        location = ctx.self_url() + created["id"]
        return json_response(
            201, created, [("Location", location), ("Marathon-Deployment-Id", dep_id)]
        )
    if method in ("PUT", "PATCH"):
        version, dep_id = state.update_apps(
            parse_body(request.raw),
            force=flag(query, "force", False),
            partial=_partial(request),
            must_exist=method == "PATCH",
        )
        return deployment_result(version, dep_id)
    return message(405, NOT_ALLOWED)


def app_routes(state: EmulatorState, request: Request, rest: str, ctx: ServerContext) -> Response:
    """``/v2/apps/{id}`` and below: one app, its restart, tasks and versions, a group's apps."""
    method, query = request.method, request.query
    if method == "POST" and rest.endswith("/restart"):
        app_id = appmodel.absolute_id(rest[: -len("/restart")])
        return deployment_result(*state.restart_app(app_id, flag(query, "force", False)))
    match = APP_SUB.match(rest)
    if match:
        return _app_sub_routes(state, request, match)
    if rest.endswith("/*") and method == "GET":
        group = appmodel.absolute_id(rest[:-2])
        return json_response(200, {"*": state.group_apps(group, embeds(query))})
    app_id = appmodel.absolute_id(rest)
    if method == "GET":
        return json_response(200, {"app": state.get_app(app_id, embeds(query))})
    if method in ("PUT", "PATCH"):
        created, version, dep_id = state.update_app(
            app_id,
            parse_body(request.raw),
            force=flag(query, "force", False),
            partial=_partial(request),
            must_exist=method == "PATCH",
            uri=request.path,
            client_ip=request.client_ip,
        )
        response = deployment_result(version, dep_id, 201 if created else 200)
        if created:
            response.headers.append(("Location", ctx.self_url() + app_id))
        return response
    if method == "DELETE":
        return deployment_result(*state.delete_app(app_id, flag(query, "force", True)))
    return message(405, NOT_ALLOWED)


def _app_sub_routes(state: EmulatorState, request: Request, match: re.Match[str]) -> Response:
    """``/v2/apps/{id}/tasks[/{task}]`` and ``/v2/apps/{id}/versions[/{version}]``."""
    app_id = appmodel.absolute_id(match.group("app"))
    if match.group("app").endswith("/*") and match.group("kind") == "tasks":
        app_id = appmodel.absolute_id(match.group("app")[:-2]).rstrip("/") + "/*"
    if match.group("kind") == "tasks":
        return app_tasks(state, request, app_id, match.group("rest"))
    if request.method != "GET":
        return message(405, NOT_ALLOWED)
    if match.group("rest"):
        return json_response(200, state.app_version(app_id, match.group("rest")))
    return json_response(200, {"versions": state.versions(app_id)})


def app_tasks(
    state: EmulatorState, request: Request, app_id: str, task_id: Optional[str]
) -> Response:
    """``GET`` an app's tasks, or ``DELETE`` (kill) all of them or one."""
    query = request.query
    if request.method == "GET" and task_id is None:
        if "text/plain" in request.accept and "json" not in request.accept:
            return message(
                406, "The text/plain output is deprecated. It can be enabled via text_plain_tasks."
            )
        return json_response(200, {"tasks": state.app_tasks(app_id)})
    if request.method != "DELETE":
        return message(405, NOT_ALLOWED)
    killed, dep = state.kill_app_tasks(
        app_id,
        [task_id] if task_id is not None else None,
        host=_last(query, "host"),
        scale=flag(query, "scale", False),
        wipe=flag(query, "wipe", False),
        force=flag(query, "force", False),
    )
    if dep is not None:
        return deployment_result(*dep)
    killed = killed or []
    if task_id is not None:
        return json_response(200, {"task": killed[0]})
    return json_response(200, {"tasks": killed})


def tasks_routes(state: EmulatorState, request: Request) -> Response:
    """``GET /v2/tasks`` and ``POST /v2/tasks/delete``."""
    method, path, query = request.method, request.path, request.query
    if path == "/v2/tasks" and method == "GET":
        statuses = query.get("status", []) + query.get("status[]", [])
        return json_response(200, {"tasks": state.all_tasks(statuses)})
    if path != "/v2/tasks/delete" or method != "POST":
        return message(500, "URI not found")
    body = parse_body(request.raw)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list):
        raise invalid_json("/ids", "error.path.missing")
    killed, dep = state.delete_tasks(
        ids,
        scale=flag(query, "scale", False),
        wipe=flag(query, "wipe", False),
        force=flag(query, "force", False),
    )
    if dep is not None:
        return deployment_result(*dep)
    return json_response(200, {"tasks": killed or []})


def deployments_routes(state: EmulatorState, request: Request) -> Response:
    """``GET /v2/deployments`` and ``DELETE /v2/deployments/{id}`` (rollback or cancel)."""
    method, path = request.method, request.path
    if path == "/v2/deployments" and method == "GET":
        return json_response(200, state.deployments_json())
    if path.startswith("/v2/deployments/") and method == "DELETE":
        dep_id = path[len("/v2/deployments/") :]
        result = state.cancel_deployment(dep_id, flag(request.query, "force", False))
        if result is None:
            return Response(202, b"", None)
        return deployment_result(*result)
    return message(500, "URI not found")


def queue_routes(state: EmulatorState, request: Request) -> Response:
    """``GET /v2/queue`` and ``DELETE /v2/queue/{id}/delay``."""
    if request.path == "/v2/queue" and request.method == "GET":
        return json_response(200, {"queue": state.queue_json()})
    match = re.match(r"^/v2/queue(/.+)/delay$", request.path)
    if match and request.method == "DELETE":
        state.reset_delay(appmodel.absolute_id(match.group(1)))
        return Response(204, b"", None)
    return message(500, "URI not found")
