"""The emulator's answers as HTTP responses: JSON bodies, Jetty's error pages, query parameters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from marathon_bridge.testing.wire import dumps_rest

JSON_TYPE = "application/json"
HTML_TYPE = "text/html;charset=iso-8859-1"


@dataclass
class Response:
    """A complete (non-streaming) answer."""

    status: int
    body: bytes = b""
    content_type: Optional[str] = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    marathon_headers: bool = True


def json_response(
    status: int, obj: Any, headers: Optional[list[tuple[str, str]]] = None
) -> Response:
    return Response(status, dumps_rest(obj), JSON_TYPE, list(headers or []))


def message(status: int, text: str) -> Response:
    return json_response(status, {"message": text})


def jetty_error_page(status: int, reason: str, path: str) -> bytes:
    """The HTML page Jetty's sendError writes."""
    return (
        "<html>\n<head>\n"
        '<meta http-equiv="Content-Type" content="text/html;charset=ISO-8859-1"/>\n'
        f"<title>Error {status} {reason}</title>\n</head>\n"
        f"<body><h2>HTTP ERROR {status}</h2>\n"
        f"<p>Problem accessing {path}. Reason:\n<pre>    {reason}</pre></p>"
        '<hr><a href="http://eclipse.org/jetty">Powered by Jetty:// 9.4.26.v20200117</a><hr/>\n'
        "\n</body>\n</html>\n"
    ).encode("iso-8859-1", "replace")


def html_error(status: int, reason: str, path: str, marathon_headers: bool = True) -> Response:
    return Response(status, jetty_error_page(status, reason, path), HTML_TYPE, [], marathon_headers)


def flag(query: Mapping[str, list[str]], name: str, default: bool) -> bool:
    values = query.get(name)
    if not values:
        return default
    return values[-1].strip().lower() == "true"


def embeds(query: Mapping[str, list[str]]) -> list[str]:
    """``embed`` values without their ``apps.``/``app.``/``group.apps.`` prefixes."""
    out = []
    for value in query.get("embed", []):
        for item in value.split(","):
            item = item.strip()
            for prefix in ("group.apps.", "apps.", "app.", "group."):
                if item.startswith(prefix):
                    item = item[len(prefix) :]
                    break
            if item:
                out.append(item)
    return out


def deployment_result(version: str, deployment_id: str, status: int = 200) -> Response:
    return json_response(
        status,
        {"version": version, "deploymentId": deployment_id},
        [("Marathon-Deployment-Id", deployment_id)],
    )
