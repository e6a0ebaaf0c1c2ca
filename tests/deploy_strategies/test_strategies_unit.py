"""The strategies' pure parts and their runs against an in-memory fake Marathon."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any, Optional

import pytest

from marathon_bridge.errors import NotFound
from marathon_bridge.strategies import (
    ALT_PORT_LABEL,
    COLOUR_LABEL,
    GROUP_LABEL,
    SHARED_PORT_LABEL,
    STARTED_AT_LABEL,
    TARGET_INSTANCES_LABEL,
    StrategyError,
    base_id,
    blue_green_deploy,
    canary_deploy,
    canary_plan,
    new_version_app,
    order_members,
    resume,
    rollback,
    start_guard,
)


class FakeMarathon:
    """Apps in a dict; every change takes effect at once, except for apps named ``sick``."""

    def __init__(self, sick: Sequence[str] = ()) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.sick = set(sick)
        self.calls: list[tuple[str, str, int]] = []
        self.deployments: list[dict[str, Any]] = []

    def _settle(self, app: dict[str, Any]) -> Any:
        healthy = 0 if app["id"] in self.sick else app["instances"]
        app.update(tasksRunning=app["instances"], tasksHealthy=healthy)
        if app["id"] in self.sick and app["instances"]:
            self.deployments = [{"id": "stuck"}]
            return SimpleNamespace(deployment_id="stuck")
        return SimpleNamespace(deployment_id="")

    def list_apps(
        self, embed: Sequence[str] = (), app_id: str = "", label: str = "", cmd: str = ""
    ) -> list[dict]:
        key, _, value = label.partition("==")
        return [
            copy.deepcopy(a)
            for a in self.apps.values()
            if (a.get("labels") or {}).get(key) == value
        ]

    def get_app(self, app_id: str, embed: Sequence[str] = ()) -> dict:
        if app_id not in self.apps:
            raise NotFound(f"App '{app_id}' does not exist", status=404)
        return copy.deepcopy(self.apps[app_id])

    def create_app(self, app: Mapping[str, Any]) -> tuple[dict, Any]:
        body = copy.deepcopy(dict(app))
        self.apps[body["id"]] = body
        self.calls.append(("create", body["id"], body["instances"]))
        return body, self._settle(body)

    def scale_app(self, app_id: str, instances: int, *, force: bool = False) -> Any:
        app = self.apps[app_id]
        app["instances"] = instances
        self.calls.append(("scale", app_id, instances))
        if instances == 0:
            self.deployments = []
        return self._settle(app)

    def delete_app(self, app_id: str, *, force: bool = True) -> Any:
        self.apps.pop(app_id)
        self.calls.append(("delete", app_id, 0))
        self.deployments = []
        return SimpleNamespace(deployment_id="")

    def list_deployments(self) -> list[dict]:
        return list(self.deployments)


def user_app(instances: int = 4, **labels: str) -> dict[str, Any]:
    return {
        "id": "/shop/web",
        "cmd": "serve",
        "instances": instances,
        "portDefinitions": [{"port": 10000, "protocol": "tcp"}],
        "healthChecks": [{"protocol": "HTTP", "path": "/health"}],
        "labels": {ALT_PORT_LABEL: "10001", **labels},
    }


def quick(**extra: Any) -> dict[str, Any]:
    return {"drain_delay": 0.0, "timeout": 0.3, "poll_interval": 0.01, **extra}


def deployed(fake: FakeMarathon, instances: int = 4) -> str:
    report = blue_green_deploy(fake, user_app(instances), **quick())
    return report.new_app


# --- pure -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "steps", "plan"),
    [
        (4, (5, 25, 50, 100), [(5, 1, 3), (50, 2, 2), (100, 4, 0)]),
        (10, (5, 25, 50), [(5, 1, 9), (25, 3, 7), (50, 5, 5), (100, 10, 0)]),
        (1, (5, 50), [(5, 1, 0)]),
        (3, (100,), [(100, 3, 0)]),
    ],
)
def test_canary_plan_rounds_up_and_drops_repeated_counts(
    target: int, steps: tuple[int, ...], plan: list[tuple[int, int, int]]
) -> None:
    assert canary_plan(target, steps) == plan


def test_canary_plan_shares_are_at_least_the_step() -> None:
    for target in range(1, 30):
        for share, new, old in canary_plan(target, (1, 5, 10, 33, 50, 99)):
            assert new * 100 >= share * target
            assert new + old == target


@pytest.mark.parametrize("steps", [(), (0, 50), (50, 101)])
def test_canary_plan_refuses_bad_steps(steps: tuple[int, ...]) -> None:
    with pytest.raises(StrategyError):
        canary_plan(4, steps)


def test_new_version_alternates_colour_and_service_port() -> None:
    first = new_version_app(user_app(), old=None, instances=4, started_at="t1")
    assert first["id"] == "/shop/web-blue"
    assert first["portDefinitions"][0]["port"] == 10000
    assert first["labels"] == {
        ALT_PORT_LABEL: "10001",
        GROUP_LABEL: "shop.web",
        COLOUR_LABEL: "blue",
        STARTED_AT_LABEL: "t1",
        TARGET_INSTANCES_LABEL: "4",
        SHARED_PORT_LABEL: "10000",
    }
    second = new_version_app(user_app(), old=first, instances=1, started_at="t2")
    assert (second["id"], second["instances"]) == ("/shop/web-green", 1)
    assert second["portDefinitions"][0]["port"] == 10001
    assert second["labels"][SHARED_PORT_LABEL] == "10000"
    third = new_version_app(user_app(), old=second, instances=1, started_at="t3")
    assert (third["id"], third["portDefinitions"][0]["port"]) == ("/shop/web-blue", 10000)


def test_new_version_needs_an_alt_port() -> None:
    app = user_app()
    del app["labels"][ALT_PORT_LABEL]
    with pytest.raises(StrategyError, match=ALT_PORT_LABEL):
        new_version_app(app, old=None, instances=1, started_at="t")


def test_state_in_labels_orders_members_and_names_the_base() -> None:
    newer = {"id": "/a-blue", "labels": {STARTED_AT_LABEL: "2026-02-01T00:00:00Z"}}
    older = {"id": "/a-green", "labels": {STARTED_AT_LABEL: "2026-01-01T00:00:00Z"}}
    assert [a["id"] for a in order_members([newer, older])] == ["/a-green", "/a-blue"]
    assert base_id("/a/b-green") == "/a/b"
    assert base_id("a/b") == "/a/b"


@pytest.mark.parametrize(
    ("old", "target", "minimum", "reason"),
    [
        ({"deployments": [{"id": "d"}]}, 2, 1, "in a deployment"),
        ({"tasksRunning": 2, "tasksHealthy": 1}, 2, 1, "not healthy"),
        ({"tasksRunning": 2, "tasksHealthy": 2}, 2, 3, "below the minimum"),
    ],
)
def test_start_guards(old: dict[str, Any], target: int, minimum: int, reason: str) -> None:
    app = {"id": "/x", "instances": 2, "healthChecks": [{}], **old}
    problem: Optional[str] = start_guard(app, target, minimum)
    assert problem is not None and reason in problem


def test_healthy_idle_old_app_passes_the_guard() -> None:
    app = {"id": "/x", "instances": 2, "tasksRunning": 2, "tasksHealthy": 2, "healthChecks": [{}]}
    assert start_guard(app, 2, 2) is None


# --- runs on the fake -----------------------------------------------------------------------


def test_first_deploy_creates_the_blue_app() -> None:
    fake = FakeMarathon()
    assert deployed(fake) == "/shop/web-blue"
    assert fake.calls == [("create", "/shop/web-blue", 4)]


def test_first_deploy_refuses_an_app_without_group_labels() -> None:
    fake = FakeMarathon()
    fake.apps["/shop/web"] = {"id": "/shop/web", "instances": 1, "labels": {}}
    with pytest.raises(StrategyError, match="without the"):
        blue_green_deploy(fake, user_app(), **quick())


def test_canary_scales_new_up_before_old_down_and_retires_old() -> None:
    fake = FakeMarathon()
    deployed(fake)
    steps: list[str] = []
    report = canary_deploy(fake, user_app(), progress=steps.append, **quick())
    assert fake.calls[1:] == [
        ("create", "/shop/web-green", 1),
        ("scale", "/shop/web-blue", 3),
        ("scale", "/shop/web-green", 2),
        ("scale", "/shop/web-blue", 2),
        ("scale", "/shop/web-green", 4),
        ("scale", "/shop/web-blue", 0),
        ("delete", "/shop/web-blue", 0),
    ]
    assert report.outcome == "completed"
    assert report.serving == {"/shop/web-green": 4}
    assert steps == report.steps


def test_confirmation_false_aborts_back_to_the_old_version() -> None:
    fake = FakeMarathon()
    deployed(fake)
    with pytest.raises(StrategyError, match="aborted at 5%"):
        canary_deploy(fake, user_app(), confirm=lambda *_: False, **quick())
    assert fake.calls[-4:] == [
        ("scale", "/shop/web-blue", 3),  # step 1: 5% of 4 -> 1 new, 3 old
        ("scale", "/shop/web-blue", 4),  # abort: the old version back to 4 first
        ("scale", "/shop/web-green", 0),
        ("delete", "/shop/web-green", 0),
    ]
    assert list(fake.apps) == ["/shop/web-blue"]
    assert fake.apps["/shop/web-blue"]["instances"] == 4


def test_new_version_that_never_turns_healthy_is_rolled_back() -> None:
    fake = FakeMarathon(sick=["/shop/web-green"])
    deployed(fake)
    with pytest.raises(StrategyError, match="rolled back"):
        blue_green_deploy(fake, user_app(), **quick())
    assert list(fake.apps) == ["/shop/web-blue"]
    assert ("scale", "/shop/web-blue", 0) not in fake.calls


def test_unhealthy_old_app_refuses_to_start() -> None:
    fake = FakeMarathon()
    deployed(fake)
    fake.apps["/shop/web-blue"]["tasksHealthy"] = 1
    with pytest.raises(StrategyError, match="not started"):
        blue_green_deploy(fake, user_app(), **quick())
    assert list(fake.apps) == ["/shop/web-blue"]


def test_minimum_above_target_refuses_to_start() -> None:
    fake = FakeMarathon()
    deployed(fake)
    with pytest.raises(StrategyError, match="minimum"):
        canary_deploy(fake, user_app(), **quick(min_healthy=5))


class Interrupt(Exception):
    """Stands for Ctrl-C in the middle of a run."""


def interrupted_run(fake: FakeMarathon) -> None:
    deployed(fake)

    def stop_at_second_step(text: str) -> None:
        if text.startswith("step 2/"):
            raise Interrupt

    with pytest.raises(Interrupt):
        canary_deploy(fake, user_app(), progress=stop_at_second_step, **quick())
    assert set(fake.apps) == {"/shop/web-blue", "/shop/web-green"}


def test_a_new_run_refuses_while_one_is_unfinished() -> None:
    fake = FakeMarathon()
    interrupted_run(fake)
    with pytest.raises(StrategyError) as refused:
        canary_deploy(fake, user_app(), **quick())
    message = str(refused.value)
    assert "`marathon-bridge strategy resume shop.web`" in message
    assert "`marathon-bridge strategy abort shop.web`" in message


def test_resume_finishes_from_the_labels() -> None:
    fake = FakeMarathon()
    interrupted_run(fake)
    report = resume(fake, "shop.web", **quick())
    assert report.outcome == "completed"
    assert list(fake.apps) == ["/shop/web-green"]
    assert fake.apps["/shop/web-green"]["instances"] == 4


def test_rollback_undoes_from_the_labels() -> None:
    fake = FakeMarathon()
    interrupted_run(fake)
    report = rollback(fake, "shop.web", **quick())
    assert report.outcome == "rolled back"
    assert list(fake.apps) == ["/shop/web-blue"]
    assert fake.apps["/shop/web-blue"]["instances"] == 4
    assert "serving: /shop/web-blue x4" in str(report)


def test_resume_without_an_unfinished_run_says_so() -> None:
    fake = FakeMarathon()
    deployed(fake)
    with pytest.raises(StrategyError, match="no interrupted run"):
        resume(fake, "shop.web", **quick())
