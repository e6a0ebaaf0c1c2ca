"""Small HTTP clients for tests: a GET by URL, a GET to a loopback port, and "who answered"."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any, Optional


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, dict[str, str]]:
    """GET ``url``: (status, body text, headers). An HTTP error status is an answer too;
    a transport error (refused, timed out) raises ``OSError``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace"), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace"), dict(exc.headers)


def get(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
    """GET ``path`` from 127.0.0.1:``port`` on a new connection (``Connection: close``):
    (status, body). A transport error raises."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def ask(port: int, timeout: float = 3.0) -> str:
    """One ``GET /`` on a new connection: the body (an echo task answers with its task id) when
    the status is 200, else ``error:<status>`` or ``error:<exception name>``; never raises."""
    try:
        status, body = get(port, "/", timeout)
    except (OSError, http.client.HTTPException) as exc:
        return f"error:{type(exc).__name__}"
    return body.strip() if status == 200 else f"error:{status}"


def http_status(url: str, timeout: float = 5.0) -> int:
    """The status of ``GET url``, or 0 when nothing answers."""
    try:
        return http_get(url, timeout)[0]
    except OSError:
        return 0


def status_of(port: int, path: str) -> tuple[int, str]:
    """GET ``path`` from a status server on 127.0.0.1:``port``: (status, body), or (0, the
    error) when nothing answers."""
    try:
        return get(port, path)
    except OSError as exc:
        return 0, str(exc)


def health_of(port: int) -> dict[str, Any]:
    """A sidecar's /health report with ``http_status`` added; when nothing answers, status ""
    and the error as the reason."""
    code, body = status_of(port, "/health")
    report: dict[str, Any] = json.loads(body) if code else {"status": "", "reasons": [body]}
    report["http_status"] = code
    return report


def metric_sample(text: str, name: str, labels: Optional[dict[str, str]] = None) -> float:
    """One sample of a Prometheus text exposition (0 when absent): ``name`` with these labels."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = labels or {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                return float(sample.value)
    return 0.0


def metric_sum(text: str, name: str) -> float:
    """Every sample called ``name`` of a Prometheus text exposition, summed over its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def histogram_buckets(text: str, name: str) -> dict[float, float]:
    """A Prometheus histogram's cumulative counts by upper bound (``le``; +Inf included)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name + "_bucket"
    }
