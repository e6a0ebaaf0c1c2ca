"""Marathon's answers, read: 2xx payloads, deployment references, error responses as the
``errors`` tree (Marathon's message verbatim), and transport failures described without
credentials."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from marathon_bridge import jsonfast
from marathon_bridge.auth import strip_userinfo
from marathon_bridge.errors import MarathonError, error_for_status

_TITLE = re.compile(rb"<title>(.*?)</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class DeploymentRef:
    """The deployment a write started: its id and the app version it deploys (may be "")."""

    deployment_id: str
    version: str = ""


def nothing_sent(exc: BaseException) -> bool:
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


def describe_failure(exc: BaseException) -> str:
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
    if nothing_sent(exc):
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


def payload(response: requests.Response) -> Any:
    """The parsed body of a 2xx response: JSON data, text for text/* bodies, None when empty."""
    content = response.content
    if not content:
        return None
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith("text/") and "json" not in content_type:
        return response.text
    return jsonfast.loads(content)


def deployment_ref(response: requests.Response, body: Any, method: str) -> DeploymentRef:
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


def created_deployment(response: requests.Response, body: Any) -> DeploymentRef:
    """The deployment a ``POST /v2/apps`` started: its header, or the app's first deployment."""
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
    return DeploymentRef(header, str(version or ""))


def field_of(body: Any, key: str, response: requests.Response, method: str) -> Any:
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
