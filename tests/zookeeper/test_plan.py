"""The publisher's diff for one service (plain data): what it creates, deletes, never touches."""

from __future__ import annotations

import pytest

from publisher.plan import (
    Create,
    Delete,
    ServiceSpec,
    ServiceState,
    SetData,
    batches,
    plan_service,
    state_after,
)
from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.layout import Instance, LayoutError

ZK = "/smartstack/services"
BASE = f"{ZK}/web"
OPTIONS = {"port": 10080, "mode": "http"}


def task(n: int, version: str = "v1") -> Instance:
    return Instance.make(
        f"10.0.0.{n}",
        31000 + n,
        f"web.{n}",
        weight=1,
        labels={
            "source": "marathon-bridge",
            "app_id": "/web",
            "task_id": f"web.{n}",
            "version": version,
        },
    )


def written(*instances: Instance, foreign: tuple[str, ...] = ()) -> ServiceState:
    names = {layout.child_name(i) for i in instances} | set(foreign)
    return ServiceState(True, frozenset(names), layout.options_json(OPTIONS))


def test_a_new_service_gets_its_node_options_and_children_in_order() -> None:
    ops = plan_service(ZK, "web", ServiceState(), ServiceSpec.of([task(1), task(2)], OPTIONS))
    assert ops[0] == Create(BASE)
    assert ops[1] == Create(layout.options_path(ZK, "web"), layout.options_json(OPTIONS))
    children = {op.path: op for op in ops[2:]}
    assert children == {
        f"{BASE}/{layout.child_name(t)}": Create(
            f"{BASE}/{layout.child_name(t)}", layout.instance_json(t)
        )
        for t in (task(1), task(2))
    }


def test_unchanged_instances_are_left_alone() -> None:
    current = written(task(1), task(2))
    assert plan_service(ZK, "web", current, ServiceSpec.of([task(1), task(2)], OPTIONS)) == []


def test_a_changed_instance_is_a_delete_plus_a_create_never_set_data() -> None:
    current = written(task(1), task(2))
    ops = plan_service(ZK, "web", current, ServiceSpec.of([task(1), task(2, "v2")], OPTIONS))
    assert ops == [
        Create(f"{BASE}/{layout.child_name(task(2, 'v2'))}", layout.instance_json(task(2, "v2"))),
        Delete(f"{BASE}/{layout.child_name(task(2))}"),
    ]


def test_changed_options_are_set_on_the_options_node_only() -> None:
    ops = plan_service(ZK, "web", written(task(1)), ServiceSpec.of([task(1)], {"port": 10081}))
    assert ops == [SetData(layout.options_path(ZK, "web"), layout.options_json({"port": 10081}))]


def test_nerve_and_foreign_children_are_never_deleted() -> None:
    nerve = "myhost_0000000042"
    other = layout.child_name(Instance.make("10.9.9.9", 80, "other", labels={"source": "nerve"}))
    broken = "base64_4_!!!!_"
    current = written(task(1), foreign=(nerve, other, broken))
    ops = plan_service(ZK, "web", current, ServiceSpec.of([], OPTIONS))
    assert ops == [Delete(f"{BASE}/{layout.child_name(task(1))}")]
    removal = plan_service(ZK, "web", current, None)
    assert Delete(BASE) not in removal
    assert {op.path for op in removal} == {
        f"{BASE}/{layout.child_name(task(1))}",
        layout.options_path(ZK, "web"),
    }


def test_removing_our_service_deletes_children_then_options_then_the_node() -> None:
    ops = plan_service(ZK, "web", written(task(1)), None)
    assert ops == [
        Delete(f"{BASE}/{layout.child_name(task(1))}"),
        Delete(layout.options_path(ZK, "web")),
        Delete(BASE),
    ]


def test_a_service_without_our_options_node_is_never_removed() -> None:
    nerve_only = ServiceState(True, frozenset({"myhost_0000000001"}), None)
    assert plan_service(ZK, "web", nerve_only, None) == []


def test_batches_stay_under_the_limit_and_keep_the_order() -> None:
    ops = plan_service(
        ZK, "web", ServiceState(), ServiceSpec.of([task(n) for n in range(1, 60)], OPTIONS)
    )
    cut = batches(ops, limit=3000)
    assert len(cut) > 3
    assert [op for batch in cut for op in batch] == ops
    assert cut[0][:2] == ops[:2]  # the node and the options come first
    for batch in cut:
        assert sum(len(op.path) + len(getattr(op, "data", b"")) for op in batch) <= 3000


def test_state_after_follows_the_operations() -> None:
    current = written(task(1))
    wanted = ServiceSpec.of([task(2)], {"port": 1})
    ops = plan_service(ZK, "web", current, wanted)
    after = state_after(current, ops, BASE)
    assert after.children == {layout.child_name(task(2))}
    assert after.options == layout.options_json({"port": 1})
    assert plan_service(ZK, "web", after, wanted) == []
    gone = state_after(after, plan_service(ZK, "web", after, None), BASE)
    assert gone == ServiceState(False, frozenset(), None)


def test_an_instance_readers_would_refuse_is_never_planned() -> None:
    bad = Instance.make("10.0.0.1; rm", 80, "x", labels={"source": "marathon-bridge"})
    with pytest.raises(LayoutError, match="instance 'x': 'host' has characters"):
        plan_service(ZK, "web", ServiceState(), ServiceSpec.of([bad], OPTIONS))
    unsorted = Instance("10.0.0.1", 80, "x", None, (("b", "1"), ("a", "2")))
    with pytest.raises(LayoutError, match="does not read back"):
        plan_service(ZK, "web", ServiceState(), ServiceSpec.of([unsorted], OPTIONS))
