"""Which tasks take traffic: states, Marathon health results, the leader-election rule."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.sources.marathon.selection import (
    IN_HEALTHY,
    IN_KEPT_BLANK,
    IN_RUNNING,
    OUT_DRAINING,
    OUT_NO_RESULT,
    OUT_NOT_RUNNING,
    OUT_UNHEALTHY,
    TaskVerdict,
    select_tasks,
)

PLAIN_APP: dict[str, Any] = {"id": "/a"}
CHECKED_APP: dict[str, Any] = {"id": "/a", "healthChecks": [{"protocol": "HTTP", "path": "/"}]}


def task(task_id: str = "t1", state: Any = "TASK_RUNNING", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": task_id, "host": "h", "ports": [1], **extra}
    if state is not None:
        out["state"] = state
    return out


def one(
    app: dict[str, Any], t: dict[str, Any], previously_in: frozenset[str] = frozenset()
) -> TaskVerdict:
    verdicts = select_tasks(app, [t], previously_in)
    assert len(verdicts) == 1
    return verdicts[0]


def test_running_task_without_health_checks_is_in() -> None:
    assert one(PLAIN_APP, task()) == TaskVerdict("t1", True, False, IN_RUNNING)


@pytest.mark.parametrize(
    "state",
    [
        "TASK_STAGING",
        "TASK_STARTING",
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_LOST",
        "TASK_ERROR",
        "TASK_GONE",
        "TASK_DROPPED",
        "TASK_UNKNOWN",
        "",
        7,
    ],
)
def test_not_running_states_are_out(state: Any) -> None:
    verdict = one(PLAIN_APP, task(state=state, startedAt="2021-01-01T00:00:00Z"))
    assert verdict == TaskVerdict("t1", False, False, OUT_NOT_RUNNING)


@pytest.mark.parametrize("state", ["TASK_KILLING", "TASK_UNREACHABLE"])
def test_killing_and_unreachable_are_drained_not_cut(state: str) -> None:
    verdict = one(PLAIN_APP, task(state=state), frozenset({"t1"}))
    assert verdict == TaskVerdict("t1", False, True, OUT_DRAINING)


def test_old_marathon_task_without_state_is_running_when_started() -> None:
    assert one(PLAIN_APP, task(state=None, startedAt="2015-01-01T00:00:00Z")).in_rotation
    assert not one(PLAIN_APP, task(state=None)).in_rotation
    assert not one(PLAIN_APP, task(state=None, startedAt=None)).in_rotation


def test_health_checked_task_with_all_results_alive_is_in() -> None:
    t = task(healthCheckResults=[{"alive": True}, {"alive": True}])
    assert one(CHECKED_APP, t) == TaskVerdict("t1", True, False, IN_HEALTHY)


@pytest.mark.parametrize(
    "results", [[{"alive": False}], [{"alive": True}, {"alive": False}], [{"alive": "true"}], [{}]]
)
def test_any_result_not_alive_puts_the_task_out(results: list[Any]) -> None:
    t = task(healthCheckResults=results)
    assert one(CHECKED_APP, t) == TaskVerdict("t1", False, False, OUT_UNHEALTHY)
    # being in before does not keep an unhealthy task in
    assert one(CHECKED_APP, t, frozenset({"t1"})).in_rotation is False


@pytest.mark.parametrize("results", [None, [], "garbage", [None, 3]])
def test_new_task_without_results_waits_for_its_first_result(results: Any) -> None:
    t = task(healthCheckResults=results)
    assert one(CHECKED_APP, t) == TaskVerdict("t1", False, False, OUT_NO_RESULT)


def test_leader_election_blank_results_keep_tasks_that_were_in() -> None:
    """After a Marathon leader election every result is blank: the backend must not be emptied."""
    tasks = [task(f"t{i}", healthCheckResults=[]) for i in range(3)]
    previously_in = frozenset({"t0", "t1", "t2"})
    verdicts = select_tasks(CHECKED_APP, tasks, previously_in)
    assert [v.in_rotation for v in verdicts] == [True, True, True]
    assert {v.reason for v in verdicts} == {IN_KEPT_BLANK}


def test_leader_election_does_not_let_new_tasks_in() -> None:
    tasks = [task("old", healthCheckResults=[]), task("new", healthCheckResults=[])]
    verdicts = {v.task_id: v for v in select_tasks(CHECKED_APP, tasks, frozenset({"old"}))}
    assert verdicts["old"].in_rotation and not verdicts["new"].in_rotation


def test_verdicts_are_sorted_and_bad_tasks_dropped() -> None:
    tasks = [task("b"), "garbage", {"id": 5}, {"id": ""}, task("a"), None]
    assert [v.task_id for v in select_tasks(PLAIN_APP, tasks, frozenset())] == ["a", "b"]


def test_empty_health_checks_list_means_no_checks() -> None:
    app = {"id": "/a", "healthChecks": []}
    assert one(app, task()).reason == IN_RUNNING
