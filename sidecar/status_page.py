"""The status page ``/`` (pure HTML; every dynamic value goes through :func:`html.escape`).

It shows the health word and its reasons, a summary, the services with their tasks, and what
was left out. Each service row carries its backend's traffic and each task row its server's:

- **sessions** now, and the **queue** (requests waiting for a server);
- **traffic per second** over the last poll interval: HTTP requests (``http``) or connections
  (``tcp``);
- **errors**: 4xx and 5xx answers (``http``) or connection and response errors (``tcp``), as
  HAProxy counts them since its worker started (a reload starts them at 0); highlighted when
  they grew during the last interval;
- a **sparkline** of the traffic per second over the last polls, with the window's total.

At 10k services the table holds the busiest ``top`` services (``?top=``, default
:data:`DEFAULT_TOP`, at most :data:`MAX_TOP`), optionally among those a search matches (``?q=``:
part of the app id or backend name, or the start of a port). No script and nothing fetched from
elsewhere: the page refreshes itself (``<meta http-equiv="refresh">``, which keeps the query),
the search is a plain GET form, the charts are inline SVG, the style is ``/static/status.css``.
"""

from __future__ import annotations

import html
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from .traffic import ObjectTraffic, TrafficSnapshot, rates

PAGE_REFRESH_SECONDS = 3
DEFAULT_TOP = 50
MAX_TOP = 500
SPARK_WIDTH, SPARK_HEIGHT, SPARK_COLUMNS = 100, 20, 50
TRAFFIC_HEADERS = ("sessions", "traffic/s", "errors", "queue", "recent traffic")


@dataclass(frozen=True)
class PageQuery:
    """What the page was asked to show: ``?q=`` and ``?top=``."""

    search: str = ""
    top: int = DEFAULT_TOP


def parse_page_query(query_string: str) -> PageQuery:
    """``q=shop&top=20`` -> :class:`PageQuery`; a bad or out-of-range ``top`` is clamped."""
    params = urllib.parse.parse_qs(query_string, keep_blank_values=True)
    search = (params.get("q") or [""])[0].strip()[:200]
    text = (params.get("top") or [""])[0].strip()
    top = int(text) if text.isdigit() else DEFAULT_TOP
    return PageQuery(search, min(MAX_TOP, max(1, top)))


@dataclass(frozen=True)
class Listing:
    """The services the page shows (``services_view`` entries with their traffic)."""

    services: Sequence[Mapping[str, Any]]
    total: int  # services (backends) served
    matched: int  # those the search matched
    query: PageQuery = PageQuery()
    traffic: TrafficSnapshot = field(default_factory=TrafficSnapshot)


# --- traffic -------------------------------------------------------------------------------------

Series = Sequence[tuple[float, Optional[int]]]


def with_traffic(
    services: Sequence[Mapping[str, Any]],
    snapshot: TrafficSnapshot,
    history: Mapping[object, Series],
) -> list[dict[str, Any]]:
    """``services_view`` entries with a ``traffic`` entry per service and per endpoint."""
    out: list[dict[str, Any]] = []
    for service in services:
        backend = service["backend"]
        endpoints = []
        for endpoint in service.get("endpoints") or []:
            key = (backend, endpoint.get("server") or "")
            seen = snapshot.servers.get(key)
            endpoints.append({**endpoint, "traffic": traffic_entry(seen, history.get(key, ()))})
        seen = snapshot.backends.get(backend)
        entry = {**service, "endpoints": endpoints}
        entry["traffic"] = traffic_entry(seen, history.get(backend, ()))
        out.append(entry)
    return out


def traffic_entry(seen: Optional[ObjectTraffic], series: Series) -> Optional[dict[str, Any]]:
    """The figures of one backend or server (``None``: not polled)."""
    if seen is None:
        return None
    row, last = seen.row, seen.interval
    new_errors = last is not None and (last.http_4xx or last.http_5xx or last.conn_errors) > 0
    return {
        "mode": row.mode,
        "sessions": row.sessions,
        "queue": row.queue,
        "rate": seen.rate,
        "total": row.traffic,
        "http_4xx": row.http_4xx,
        "http_5xx": row.http_5xx,
        "conn_errors": row.conn_errors,
        "new_errors": new_errors,
        "window": sum(n for _, n in series if n is not None),
        "window_seconds": sum(s for s, _ in series),
        "rates": rates(series),
    }


def sparkline_svg(values: Sequence[Optional[float]], title: str) -> str:
    """An inline SVG line of ``values`` (oldest first; ``None`` is a gap), scaled to its peak."""
    columns = _downsample(values, SPARK_COLUMNS)
    peak = max((v for v in columns if v is not None), default=0.0)
    scale = (SPARK_HEIGHT - 2) / peak if peak > 0 else 0.0
    step = SPARK_WIDTH / max(1, len(columns) - 1)
    segments: list[list[str]] = [[]]
    for i, value in enumerate(columns):
        if value is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{i * step:.1f},{SPARK_HEIGHT - 1 - value * scale:.1f}")
    lines = "".join(
        f'<polyline points="{" ".join(seg if len(seg) > 1 else seg * 2)}"/>'
        for seg in segments
        if seg
    )
    label = _escape(title)
    return (
        f'<svg class="spark" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" '
        f'viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" role="img" aria-label="{label}">'
        f"<title>{label}</title>{lines}</svg>"
    )


def _downsample(values: Sequence[Optional[float]], columns: int) -> list[Optional[float]]:
    """At most ``columns`` values: the mean of each group of neighbours (``None`` if all are)."""
    if len(values) <= columns:
        return list(values)
    out: list[Optional[float]] = []
    for c in range(columns):
        group = [
            v
            for v in values[c * len(values) // columns : (c + 1) * len(values) // columns]
            if v is not None
        ]
        out.append(sum(group) / len(group) if group else None)
    return out


def _traffic_cells(traffic: Optional[Mapping[str, Any]]) -> str:
    if traffic is None:
        return "".join(
            f'<td class="{c}"></td>' for c in ("sessions", "rate", "errors", "queue", "chart")
        )
    http = traffic["mode"] == "http"
    unit = "req/s" if http else "conn/s"
    rate = traffic["rate"]
    rate_text = "" if rate is None else f"{_number(rate)} {unit}"
    if http:
        errors = (
            f'<span class="e4xx" title="4xx answers">{traffic["http_4xx"]}</span> '
            f'<span class="e5xx" title="5xx answers">{traffic["http_5xx"]}</span>'
        )
    else:
        errors = f'<span class="econ" title="connection errors">{traffic["conn_errors"]}</span>'
    what = "requests" if http else "connections"
    span = _duration(traffic["window_seconds"])
    title = f"{traffic['window']} {what} in the last {span}"
    chart = sparkline_svg(traffic["rates"], title)
    new = " new" if traffic["new_errors"] else ""
    return (
        f'<td class="sessions">{traffic["sessions"]}</td>'
        f'<td class="rate">{_escape(rate_text)}</td>'
        f'<td class="errors{new}">{errors}</td>'
        f'<td class="queue">{traffic["queue"]}</td>'
        f'<td class="chart">{chart}<span class="window" title="{_escape(title)}">'
        f"{traffic['window']}</span></td>"
    )


def _number(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


# --- the page ------------------------------------------------------------------------------------


def render_page(
    health: Any,
    summary: Mapping[str, Any],
    listing: Listing,
    skipped: Sequence[Mapping[str, Any]],
) -> str:
    """The status page. ``health`` is a :class:`~sidecar.status.HealthReport`."""
    e = _escape
    reasons = "".join(f"<li>{e(r)}</li>" for r in health.reasons)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{PAGE_REFRESH_SECONDS}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>marathon-sidecar</title>",
        '<link rel="icon" href="data:,">',
        '<link rel="stylesheet" href="/static/status.css"></head><body>',
        "<header><h1>marathon-sidecar</h1>",
        f'<p class="health {e(health.status)}" id="health">{e(health.status)}</p></header>',
        f'<ul class="reasons">{reasons}</ul>' if reasons else "",
        '<dl class="summary">',
        f'<dt>last sync</dt><dd id="last-sync">{e(summary.get("last_sync") or "never")}</dd>',
        f"<dt>last apply</dt><dd>{e(summary.get('last_apply') or 'never')}</dd>",
        f'<dt>reloads</dt><dd id="reloads">{e(int(summary.get("reloads") or 0))}</dd>',
        f"<dt>failed reloads</dt><dd>{e(int(summary.get('reload_failures') or 0))}</dd>",
        f"<dt>services</dt><dd>{listing.total}</dd>",
        f'<dt>maxconn</dt><dd id="maxconn">{e(summary.get("maxconn") or "unknown")}</dd>',
        "</dl>",
        "<h2>Services</h2>",
        _filter_form(listing),
        _traffic_note(listing.traffic),
        _services_table(listing.services)
        if listing.services
        else '<p class="empty">no services</p>',
    ]
    if skipped:
        parts += _skipped_table(skipped)
    parts += [
        '<footer><a href="/health">/health</a> <a href="/livez">/livez</a> '
        '<a href="/readyz">/readyz</a> <a href="/services">/services</a> '
        '<a href="/config">/config</a> <a href="/metrics">/metrics</a>',
        f'<span class="refresh">refreshes every {PAGE_REFRESH_SECONDS} s; rendered '
        f"{e(iso_time(time.time()))}</span></footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _filter_form(listing: Listing) -> str:
    e, query = _escape, listing.query
    shown = len(listing.services)
    if query.search:
        what = f"{shown} of the {listing.matched} services matching &quot;{e(query.search)}&quot;"
    else:
        what = f"{shown} of {listing.total} services"
    if shown < listing.matched:
        what += " (the busiest)"
    return (
        '<form class="filter" method="get" action="/">'
        f'<label>search <input name="q" value="{e(query.search)}" '
        'placeholder="app id, backend or port"></label> '
        f'<label>show <input name="top" type="number" min="1" max="{MAX_TOP}" '
        f'value="{query.top}"> busiest</label> <button type="submit">show</button></form>'
        f'<p class="listing" id="listing">showing {what}</p>'
    )


def _traffic_note(snapshot: TrafficSnapshot) -> str:
    if snapshot.taken_at is None:
        note = "no traffic figures yet" + (f": {snapshot.error}" if snapshot.error else "")
    else:
        note = (
            f"traffic from HAProxy's counters, polled at {iso_time(snapshot.taken_at_wall)} "
            f"({snapshot.interval:.1f} s after the poll before; it took "
            f"{snapshot.poll_seconds * 1000:.0f} ms); errors since HAProxy's worker started"
        )
        if snapshot.error:
            note += f"; the last poll failed: {snapshot.error}"
    return f'<p class="traffic-note" id="traffic-note">{_escape(note)}</p>'


def _services_table(services: Sequence[Mapping[str, Any]]) -> str:
    rows: list[str] = []
    for service in services:
        rows.append(_service_row(service))
        endpoints = service.get("endpoints") or []
        if not endpoints:
            rows.append(
                '<tr class="out"><td></td><td colspan="10" class="empty">no tasks</td></tr>'
            )
        rows.extend(_endpoint_row(endpoint) for endpoint in endpoints)
    heads = "".join(f"<th>{h}</th>" for h in TRAFFIC_HEADERS)
    return (
        '<table class="services"><thead><tr><th>port</th><th>app / task</th>'
        "<th>mode / address</th><th>state</th><th>health</th><th>in rotation / why not</th>"
        f"{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _service_row(service: Mapping[str, Any]) -> str:
    e = _escape
    endpoints = service.get("endpoints") or []
    rotation = f"{service.get('servers_in', 0)} of {len(endpoints)} tasks in rotation"
    return (
        f'<tr class="service"><td class="port">{e(service.get("service_port"))}</td>'
        f'<td class="app">{e(service.get("app_id"))}</td>'
        f'<td class="mode">{e(service.get("mode"))}</td>'
        f'<td colspan="3" class="rotation">{e(rotation)}</td>'
        f"{_traffic_cells(service.get('traffic'))}</tr>"
    )


def _endpoint_row(endpoint: Mapping[str, Any]) -> str:
    e = _escape
    cls = "in" if endpoint.get("in_rotation") else "out"
    address = f"{endpoint.get('address') or '?'}:{_none(endpoint.get('port'))}"
    verdict = e(endpoint.get("server_state"))
    if endpoint.get("haproxy"):
        seen = e(endpoint.get("haproxy"))
        css = "seen" if endpoint.get("haproxy") in ("up", "drain") else "seen warn"
        verdict += f' <span class="{css}">(haproxy: {seen})</span>'
    if endpoint.get("reason"):
        verdict += f" - {e(endpoint.get('reason'))}"
    return (
        f'<tr class="{cls}"><td></td>'
        f'<td class="task">{e(endpoint.get("task_id"))}</td>'
        f'<td class="address">{e(address)}</td>'
        f'<td class="state">{e(endpoint.get("state"))}</td>'
        f'<td class="health">{e(_health_word(endpoint.get("healthy")))}</td>'
        f'<td class="verdict">{verdict}</td>'
        f"{_traffic_cells(endpoint.get('traffic'))}</tr>"
    )


def _skipped_table(skipped: Sequence[Mapping[str, Any]]) -> list[str]:
    e = _escape
    rows = "".join(
        f"<tr><td>{e(s.get('app_id'))}</td><td>{e(_what(s))}</td><td>{e(s.get('reason'))}</td></tr>"
        for s in skipped
    )
    return [
        "<h2>Left out and not honored</h2>",
        '<table class="skipped"><thead><tr><th>app</th><th>what</th><th>why</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>",
    ]


def _what(item: Mapping[str, Any]) -> str:
    if item.get("label"):
        return f"label {item['label']}"
    if item.get("task_id"):
        return f"task {item['task_id']}"
    if item.get("port_index") is not None:
        return f"port index {item['port_index']}"
    return "app"


def _health_word(healthy: Any) -> str:
    if healthy is None:
        return "no checks"
    return "healthy" if healthy else "unhealthy"


def iso_time(wall: Optional[float]) -> Optional[str]:
    """``2026-01-01T00:00:00Z`` for a wall-clock time (``None`` stays ``None``)."""
    if wall is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def _none(value: Any) -> str:
    return "" if value is None else str(value)


def _escape(value: Any) -> str:
    return html.escape(_none(value), quote=True)
