"""Hostile Marathon input after the snapshot: event payloads, SSE bytes, task hosts and IPs.

A snapshot of a few apps, then a sequence of events mixing well-formed payloads with hostile
values (ids, hosts, IP addresses, ports of every type, labels), fed through
:meth:`sidecar.sources.marathon.model.MarathonState.apply_event`; the result goes through the
Marathon translation (its catalog must survive a JSON round trip), the real resolver (with a
lookup that never touches DNS), :func:`sidecar.desired.build_model` and the renderer.
Properties: nothing raises, every line of the config is one of the renderer's directives, no
hostile value reaches it, and (for a bounded number of examples) ``haproxy -c`` accepts it.
The SSE parser gets arbitrary bytes, cut anywhere.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marathon_bridge.events import SSEFrame, SSEParser, event_from_frame
from sidecar.catalog import catalog_from_dict
from sidecar.desired import build_model
from sidecar.render import render_config
from sidecar.render_settings import RenderSettings
from sidecar.resolve import Resolver
from sidecar.sources.marathon.model import EventOutcome, MarathonState
from sidecar.sources.marathon.translate import catalog_of
from testkit.fuzz import (
    bad_lines,
    haproxy_profile,
    hostile_host,
    hostile_text,
    leaked,
    profile,
    time_limit,
)

APP_IDS = ["/web", "/api/v1", "/db"]
TASK_IDS = ["web.t1", "web.t2", "api_v1.t1", "db.t1"]

any_id = st.one_of(st.sampled_from(APP_IDS), hostile_text, st.none(), st.integers())
any_task_id = st.one_of(st.sampled_from(TASK_IDS), hostile_text, st.none())
port_value = st.one_of(
    st.integers(-5, 70000), st.sampled_from([0, 1, 65535, 65536]), hostile_text, st.none()
)
ip_entry = st.one_of(
    st.fixed_dictionaries(
        {"ipAddress": hostile_host, "protocol": st.sampled_from(["IPv4", "IPv6"])}
    ),
    hostile_text,
    st.none(),
)
labels = st.dictionaries(
    st.sampled_from(
        ["HAPROXY_GROUP", "HAPROXY_0_MODE", "HAPROXY_0_VHOST", "HAPROXY_0_BALANCE",
         "HAPROXY_0_PORT", "HAPROXY_0_BIND_ADDR", "HAPROXY_0_PATH", "HAPROXY_0_STICKY",
         "HAPROXY_0_BACKEND_WEIGHT", "HAPROXY_0_BACKEND_HEAD", "HAPROXY_0_ENABLED"]
    ),
    st.one_of(hostile_text, st.sampled_from(["http", "tcp", "roundrobin", "true", "8080"])),
    max_size=5,
)  # fmt: skip


def task(app_id: Any, task_id: Any) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "id": st.just(task_id),
            "appId": st.just(app_id),
            "host": hostile_host,
            "ports": st.lists(port_value, max_size=3),
            "state": st.sampled_from(["TASK_RUNNING", "TASK_KILLING", "TASK_STAGING", "bogus"]),
            "startedAt": st.just("2026-01-01T00:00:00.000Z"),
        },
        optional={
            "ipAddresses": st.lists(ip_entry, max_size=2),
            "healthCheckResults": st.lists(
                st.fixed_dictionaries({"alive": st.one_of(st.booleans(), hostile_text)}),
                max_size=2,
            ),
        },
    )


@st.composite
def snapshot(draw: st.DrawFn) -> list[dict[str, Any]]:
    apps = []
    for app_id, prefix in zip(APP_IDS, ["web", "api_v1", "db"]):
        if not draw(st.booleans()):
            continue
        tasks = [draw(task(app_id, t)) for t in TASK_IDS if t.startswith(prefix)]
        apps.append(
            {
                "id": app_id,
                "labels": draw(labels),
                "portDefinitions": [{"port": draw(st.integers(10000, 10100)), "protocol": "tcp"}],
                "tasks": tasks,
            }
        )
    return apps


def event_payload(event_type: str) -> st.SearchStrategy[Any]:
    app_id, task_id = any_id, any_task_id
    if event_type == "status_update_event":
        return st.fixed_dictionaries(
            {
                "appId": app_id,
                "taskId": task_id,
                "taskStatus": st.sampled_from(
                    ["TASK_RUNNING", "TASK_KILLED", "TASK_KILLING", "TASK_LOST", "weird"]
                ),
                "host": hostile_host,
                "ports": st.lists(port_value, max_size=3),
            },
            optional={"ipAddresses": st.lists(ip_entry, max_size=2), "version": hostile_text},
        )
    if event_type in ("health_status_changed_event", "instance_health_changed_event"):
        return st.fixed_dictionaries(
            {"appId": app_id, "taskId": task_id, "instanceId": task_id,
             "alive": st.one_of(st.booleans(), hostile_text, st.none())}
        )  # fmt: skip
    if event_type == "api_post_event":
        return st.fixed_dictionaries(
            {
                "appDefinition": st.one_of(
                    st.fixed_dictionaries(
                        {
                            "id": app_id,
                            "labels": labels,
                            "portDefinitions": st.lists(
                                st.fixed_dictionaries({"port": port_value}), max_size=2
                            ),
                        }
                    ),
                    hostile_text,
                    st.none(),
                )
            }
        )
    if event_type == "app_terminated_event":
        return st.fixed_dictionaries({"appId": app_id})
    return st.one_of(
        st.fixed_dictionaries(
            {"plan": st.one_of(st.none(), hostile_text, st.just(PLAN))}
        ),
        st.dictionaries(hostile_text, hostile_text, max_size=3),
    )  # fmt: skip


PLAN = {"steps": [{"actions": [{"app": "/web"}]}]}

EVENT_TYPES = [
    "status_update_event",
    "health_status_changed_event",
    "instance_health_changed_event",
    "api_post_event",
    "app_terminated_event",
    "deployment_success",
    "deployment_failed",
    "something_new_event",
]

events = st.lists(
    st.sampled_from(EVENT_TYPES).flatmap(lambda t: st.tuples(st.just(t), event_payload(t))),
    max_size=12,
)


def values_in(obj: Any) -> set[str]:
    """Every string in a JSON-ish structure (keys too)."""
    if isinstance(obj, str):
        return {obj}
    if isinstance(obj, dict):
        return set().union(*(values_in(k) | values_in(v) for k, v in obj.items())) if obj else set()
    if isinstance(obj, (list, tuple)):
        return set().union(*(values_in(v) for v in obj)) if obj else set()
    return set()


def no_dns(host: str) -> Optional[str]:
    return "10.1.1.1" if host == "localhost" else None


def run_pipeline(apps: list[dict[str, Any]], sequence: list[tuple[str, Any]]) -> str:
    state = MarathonState.from_apps(apps)
    for event_type, payload in sequence:
        outcome = state.apply_event(event_type, payload)
        assert isinstance(outcome, EventOutcome)
        assert all(isinstance(a, str) for a in outcome.fetch_apps)
        state = outcome.state
    assert json.loads(json.dumps(state.apps_with_tasks())) is not None  # snapshot-shaped again
    settings = RenderSettings(vhost_port=8080, bind_addrs=("127.0.0.1", "::1"))
    resolver = Resolver(no_dns, timeout=5.0)
    try:
        previously_in = frozenset(t for by_app in state.tasks.values() for t in by_app)
        catalog = catalog_of(state, previously_in)
        assert catalog_from_dict(json.loads(json.dumps(catalog.to_dict()))) == catalog
        model = build_model(catalog, settings, resolver)
    finally:
        resolver.close()
    return render_config(model, settings)


@pytest.mark.timeout(time_limit())
@profile()
@given(apps=snapshot(), sequence=events)
def test_hostile_events_keep_the_config_to_the_renderers_own_lines(
    apps: list[dict[str, Any]], sequence: list[tuple[str, Any]]
) -> None:
    text = run_pipeline(apps, sequence)
    assert bad_lines(text) == []
    assert leaked(text, values_in(apps) | values_in(sequence)) == []


@pytest.mark.haproxy
@pytest.mark.timeout(time_limit())
@haproxy_profile()
@given(apps=snapshot(), sequence=events)
def test_hostile_events_give_configs_haproxy_accepts(
    apps: list[dict[str, Any]],
    sequence: list[tuple[str, Any]],
    haproxy_check: Callable[[str], Any],
) -> None:
    text = run_pipeline(apps, sequence)
    result = haproxy_check(text)
    assert result.returncode == 0, (result.stderr, text)


# ----------------------------------------------------------------------------- SSE bytes

sse_pieces = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from(
            [b"event: status_update_event\r\n", b"data: {\"a\": 1}\n", b"\r\n", b"\n", b"\r",
             b": comment\n", b"data:\n", b"\xef\xbb\xbf", b"\xff\xfe", b"data: \xc3\n\n",
             b"id: 7\nretry: 10\n", b"event:\n\n"]
        ),
    ),
    max_size=30,
)  # fmt: skip


@pytest.mark.timeout(time_limit())
@profile()
@given(pieces=sse_pieces, cuts=st.lists(st.integers(0, 2000), max_size=10))
def test_sse_parser_takes_any_bytes_cut_anywhere(pieces: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(pieces)
    whole = SSEParser()
    expected = whole.feed(stream)
    parser = SSEParser()
    frames: list[SSEFrame] = []
    start = 0
    for cut in [*sorted({c % (len(stream) + 1) for c in cuts}), len(stream)]:
        frames += parser.feed(stream[start:cut])
        start = cut
    assert frames == expected
    assert parser.heartbeats == whole.heartbeats
    for frame in frames:
        assert isinstance(frame.event, str) and isinstance(frame.data, str)
        event = event_from_frame(frame)
        assert event is None or isinstance(event.data, dict)


@pytest.mark.timeout(time_limit())
@profile()
@given(frame=st.builds(SSEFrame, event=hostile_text, data=hostile_text | st.text()))
def test_hostile_frames_become_events_or_nothing(frame: SSEFrame) -> None:
    event = event_from_frame(frame)
    if event is not None:
        state = MarathonState.from_apps([])
        outcome = state.apply_event(event.type, event.data)
        assert isinstance(outcome, EventOutcome)
