"""The watcher's rules in plain data: de-duplication, problems, and keeping the previous list."""

from __future__ import annotations

from sidecar.sources.zookeeper.layout import Instance, Problem
from sidecar.sources.zookeeper.update import ServiceUpdate, assemble, complete, gone

A = Instance.make("10.0.0.1", 80, "a")
B = Instance.make("10.0.0.2", 80, "b")
BAD = Problem("/s/web/x_1", "instance is not JSON")


def test_instances_are_sorted_deduplicated_and_problems_listed() -> None:
    same_as_a = Instance.make("10.0.0.1", 80, "a", weight=5)
    update = assemble(
        "web",
        ["n3", "n2", "n1", "x_1"],
        {"n1": B, "n2": A, "n3": same_as_a, "x_1": BAD},
        {"port": 1},
        None,
        None,
    )
    assert update.instances == (A, B)  # the first of equal (host, port, name) in name order
    assert update.children == 4 and update.problems == (BAD,) and update.options == {"port": 1}


def test_an_empty_list_keeps_the_previous_one_when_asked() -> None:
    previous = assemble("web", ["a"], {"a": A}, None, None, None)
    kept = assemble("web", [], {}, None, None, previous, keep_on_empty=True)
    assert kept.instances == (A,) and kept.kept_previous and kept.children == 0
    believed = assemble("web", [], {}, None, None, previous, keep_on_empty=False)
    assert believed.instances == () and not believed.kept_previous


def test_only_invalid_children_count_as_empty() -> None:
    previous = assemble("web", ["a"], {"a": A}, None, None, None)
    update = assemble("web", ["x_1"], {"x_1": BAD}, None, None, previous)
    assert update.instances == (A,) and update.kept_previous and update.problems == (BAD,)


def test_nothing_to_keep_gives_an_empty_list() -> None:
    assert assemble("web", [], {}, None, None, None).instances == ()
    assert assemble("web", [], {}, None, None, gone("web")).kept_previous is False


def test_a_bad_options_node_is_a_problem_of_the_service() -> None:
    problem = Problem("/marathon-bridge/x/options/web", "options are not JSON")
    update = assemble("web", ["a"], {"a": A}, {"port": 1}, problem, None)
    assert update.problems == (problem,) and update.options == {"port": 1}
    assert update.options_problem == problem


def test_a_deleted_service_is_believed() -> None:
    assert gone("web") == ServiceUpdate("web", exists=False, instances=())


def test_our_instances_wait_for_their_options_nerves_do_not() -> None:
    ours = Instance.make("10.0.0.3", 80, "c", labels={"source": "marathon-bridge"})
    assert not complete(assemble("web", ["c"], {"c": ours}, None, None, None))
    assert complete(assemble("web", ["c"], {"c": ours}, {"port": 1}, None, None))
    assert complete(assemble("legacy", ["a"], {"a": A}, None, None, None))
    assert complete(gone("web"))


def test_our_instances_with_unreadable_options_are_delivered_to_be_reported() -> None:
    ours = Instance.make("10.0.0.3", 80, "c", labels={"source": "marathon-bridge"})
    problem = Problem("/marathon-bridge/x/options/web", "options are not JSON")
    assert complete(assemble("web", ["c"], {"c": ours}, None, problem, None))


def test_claimed_instances_without_any_options_node_are_delivered_not_held() -> None:
    ours = Instance.make("10.0.0.3", 80, "c", labels={"source": "marathon-bridge"})
    update = assemble("legacy", ["a", "c"], {"a": A, "c": ours}, None, None, None)
    assert not complete(update)  # an options node may still be on its way
    assert complete(update, options_expected=False)  # none listed: nothing to wait for
