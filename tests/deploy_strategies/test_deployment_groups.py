"""Deployment groups: the pure merge plan, and build_model serving two apps as one backend."""

from __future__ import annotations

from typing import Any

from sidecar.catalog import DeploymentGroup, Problem
from sidecar.deployment_groups import Claim, group_backend_name, merge_servers, plan_merges
from sidecar.desired import build_model
from sidecar.haproxy_model import ServerSpec, listener_signature
from sidecar.render_settings import RenderSettings
from sidecar.sources.marathon.deployment_labels import (
    GROUP_LABEL,
    STARTED_AT_LABEL,
    WEIGHT_LABEL,
    membership,
)
from sidecar.sources.marathon.labels import parse_app_labels
from sidecar.sources.marathon.translate import catalog_from_apps

HOSTS = {"agent1": "10.0.0.1"}


def grouped(
    app_id: str, service_port: int, shared: int, started: str, tasks: Any = (), **labels: str
) -> dict[str, Any]:
    all_labels = {
        GROUP_LABEL: "web",
        "HAPROXY_0_PORT": str(shared),
        STARTED_AT_LABEL: started,
        "HAPROXY_DEPLOYMENT_ALT_PORT": str(shared + 1),
        "HAPROXY_DEPLOYMENT_COLOUR": "blue",
        "HAPROXY_DEPLOYMENT_TARGET_INSTANCES": "2",
    }
    all_labels.update(labels)
    return {
        "id": app_id,
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": service_port, "protocol": "tcp"}],
        "labels": all_labels,
        "tasks": [
            {"id": t, "host": "agent1", "ports": [p], "state": "TASK_RUNNING"} for t, p in tasks
        ],
    }


def model_of(apps: list[dict[str, Any]]) -> Any:
    return build_model(catalog_from_apps(apps), RenderSettings(), HOSTS.get)


OLD = grouped("/web-blue", 10000, 10000, "2026-01-01T00:00:00Z", [("b1", 31001), ("b2", 31002)])
NEW = grouped("/web-green", 10001, 10000, "2026-01-02T00:00:00Z", [("g1", 31003)])


# --- pure parts -----------------------------------------------------------------------------


def test_membership_reads_group_started_at_and_weight() -> None:
    app = grouped("/a", 1, 2, "2026-01-01T00:00:00Z", **{WEIGHT_LABEL: "10"})
    assert membership(app) == (DeploymentGroup("web", "2026-01-01T00:00:00Z", 10), [])


def test_bad_weight_and_bad_group_are_problems_naming_no_value() -> None:
    app = grouped("/a", 1, 2, "", **{WEIGHT_LABEL: "999", GROUP_LABEL: "bad group!"})
    found, problems = membership(app)
    assert found is None
    assert [p.label for p in problems] == [WEIGHT_LABEL, GROUP_LABEL]
    assert all("999" not in p.reason and "bad group" not in p.reason for p in problems)


def test_weight_without_group_is_ignored_with_a_problem() -> None:
    found, problems = membership({"id": "/a", "labels": {WEIGHT_LABEL: "5"}})
    assert found is None
    assert problems == [Problem("/a", WEIGHT_LABEL, f"needs {GROUP_LABEL}; ignored")]


def claim(app: dict[str, Any], bind_port: int) -> Claim:
    group, _problems = membership(app)
    assert group is not None
    return Claim(app["id"], 0, bind_port, group)


def test_plan_joins_the_newer_member_to_the_oldest() -> None:
    plan = plan_merges([claim(NEW, 10000), claim(OLD, 10000)])
    assert plan.joined == {("/web-green", 0): ("/web-blue", 0)}
    assert plan.backend_names == {("/web-blue", 0): group_backend_name("web", 10000)}
    assert plan.members_of(("/web-blue", 0)) == [("/web-green", 0)]


def test_plan_keeps_groups_and_ports_apart() -> None:
    other = grouped("/api", 10005, 10005, "2026-01-01T00:00:00Z", **{GROUP_LABEL: "api"})
    plan = plan_merges([claim(OLD, 10000), claim(other, 10000), claim(NEW, 10001)])
    assert plan.joined == {}
    assert set(plan.backend_names) == {("/web-blue", 0), ("/api", 0), ("/web-green", 0)}


def test_merge_servers_applies_weights_per_app_and_sorts() -> None:
    a = [ServerSpec("z", "10.0.0.1", 1, "z"), ServerSpec("a", "10.0.0.1", 2, "a")]
    b = [ServerSpec("m", "10.0.0.1", 3, "m")]
    merged = merge_servers([("/a", a), ("/b", b)], {"/b": 0})
    assert [(s.name, s.weight) for s in merged] == [("a", 1), ("m", 0), ("z", 1)]


def test_deployment_labels_are_not_reported_as_unknown() -> None:
    _options, problems = parse_app_labels(
        grouped("/a", 1, 2, "2026-01-01T00:00:00Z", **{WEIGHT_LABEL: "3"})
    )
    assert problems == []


# --- build_model ----------------------------------------------------------------------------


def test_two_members_share_one_frontend_and_one_backend() -> None:
    model = model_of([OLD, NEW])
    assert [(f.port, f.default_backend) for f in model.frontends] == [(10000, "be_dg_web_10000")]
    assert [b.name for b in model.backends] == ["be_dg_web_10000"]
    assert [(s.task_id, s.weight) for s in model.backends[0].servers] == [
        ("b1", 1),
        ("b2", 1),
        ("g1", 1),
    ]
    assert model.skipped == ()
    assert model.problems == ()


def test_weight_label_changes_servers_only_not_the_listener_signature() -> None:
    before = model_of([OLD, NEW])
    heavier = grouped(
        "/web-green", 10001, 10000, "2026-01-02T00:00:00Z", [("g1", 31003)], **{WEIGHT_LABEL: "0"}
    )
    after = model_of([OLD, heavier])
    assert listener_signature(after) == listener_signature(before)
    weights = {s.task_id: s.weight for s in after.backends[0].servers}
    assert weights == {"b1": 1, "b2": 1, "g1": 0}


def test_backend_name_is_stable_when_the_old_member_leaves() -> None:
    assert listener_signature(model_of([NEW])) == listener_signature(model_of([OLD, NEW]))


def test_member_of_another_group_on_the_same_port_is_skipped() -> None:
    intruder = grouped("/zz-other", 10002, 10000, "2026-01-01T00:00:00Z", **{GROUP_LABEL: "x"})
    model = model_of([OLD, intruder])
    assert [b.name for b in model.backends] == ["be_dg_web_10000"]
    assert [(s.app_id, s.reason) for s in model.skipped] == [
        ("/zz-other", "port 10000 is already served for app '/web-blue'")
    ]


def test_member_whose_primary_lost_the_port_is_skipped() -> None:
    plain = {
        "id": "/a-plain",
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 10000, "protocol": "tcp"}],
    }
    model = model_of([plain, grouped("/web-blue", 10001, 10000, "1"), NEW])
    assert [b.name for b in model.backends] == ["be_a-plain_10000"]
    assert {s.app_id for s in model.skipped} == {"/web-blue", "/web-green"}
