"""deploy.py on plain data and a small in-memory fake client (no HTTP): progress, waiting,
timeouts, rollbacks. The real-HTTP behaviour is covered by the CLI tests on the emulator."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from marathon_bridge import deploy
from marathon_bridge.deploy import (
    DONE,
    ROLLING_BACK,
    DeployProgress,
    WaitTarget,
    compute_progress,
    counts_met,
    deploy_apps,
    find_deployment,
    outcome_problem,
    previous_version,
    wait_for_deployments,
)
from marathon_bridge.errors import (
    Conflict,
    DeploymentError,
    DeploymentTimeout,
    NotFound,
    Unavailable,
)
from testkit.clock import FakeClock


@dataclass(frozen=True)
class Ref:
    deployment_id: str
    version: str = ""


class FakeMarathon:
    """Apps and deployments in memory; every list_deployments() call advances each deployment
    by one step, unless its app is in ``stuck``."""

    def __init__(self) -> None:
        self.apps: dict[str, dict] = {}
        self.deployments: dict[str, dict] = {}
        self.stuck: set[str] = set()
        self.calls: list[tuple[str, Any]] = []
        self.counter = 0
        self.missing_deployments = False

    # helpers
    def _new_deployment(self, app_id: str, final: Optional[dict], steps: int = 2) -> Ref:
        self.counter += 1
        dep_id = f"dep-{self.counter}"
        before = dict(self.apps[app_id]) if app_id in self.apps else None
        self.deployments[dep_id] = {
            "id": dep_id,
            "app": app_id,
            "final": final,
            "before": before,
            "step": 0,
            "total": steps,
        }
        return Ref(dep_id, f"v{self.counter}")

    def _finish(self, dep: dict) -> None:
        final = dep["final"]
        if final is None:
            self.apps.pop(dep["app"], None)
            return
        wanted = final.get("instances", 1)
        final.update(tasksRunning=wanted, tasksHealthy=wanted if final.get("healthChecks") else 0)
        self.apps[dep["app"]] = final

    # the client interface deploy.py uses
    def get_app(self, app_id: str, embed: Sequence[str] = ()) -> dict:
        if app_id not in self.apps:
            raise NotFound(f"App '{app_id}' does not exist", status=404)
        return dict(self.apps[app_id])

    def create_app(self, app: Mapping[str, Any]) -> tuple[dict, Ref]:
        self.calls.append(("create", app["id"]))
        app_id = deploy.absolute_id(app["id"])
        created = {
            **app,
            "id": app_id,
            "version": f"v{self.counter + 1}",
            "tasksRunning": 0,
            "tasksHealthy": 0,
        }
        ref = self._new_deployment(app_id, dict(created))
        self.apps[app_id] = created
        return dict(self.apps[app_id]), ref

    def update_app(
        self,
        app_id: str,
        app: Mapping[str, Any],
        *,
        force: bool = False,
        partial_update: bool = True,
    ) -> Ref:
        self.calls.append(("update", (app_id, partial_update, force)))
        return self._new_deployment(app_id, {**app, "id": app_id, "version": "new"})

    def delete_app(self, app_id: str, *, force: bool = True) -> Ref:
        self.calls.append(("delete_app", app_id))
        self.stuck.discard(app_id)
        return self._new_deployment(app_id, None, steps=1)

    def rollback_app(self, app_id: str, version: str, *, force: bool = False) -> Ref:
        self.calls.append(("rollback_app", (app_id, version, force)))
        if force:  # a forced deployment supersedes the ones that lock the app
            self.stuck.discard(app_id)
            self.deployments = {k: d for k, d in self.deployments.items() if d["app"] != app_id}
        return self._new_deployment(app_id, {**self.apps[app_id], "version": version}, steps=1)

    def scale_app(self, app_id: str, instances: int, *, force: bool = False) -> Ref:
        self.calls.append(("scale", (app_id, instances)))
        return self._new_deployment(app_id, {**self.apps[app_id], "instances": instances})

    def restart_app(self, app_id: str, *, force: bool = False) -> Ref:
        self.calls.append(("restart", app_id))
        return self._new_deployment(app_id, dict(self.apps[app_id]))

    def list_versions(self, app_id: str) -> list[str]:
        return list(self.apps[app_id].get("versions", []))

    def list_deployments(self) -> list[dict]:
        out = []
        for dep_id, dep in list(self.deployments.items()):
            if dep["app"] not in self.stuck:
                dep["step"] += 1
            if dep["step"] > dep["total"]:
                del self.deployments[dep_id]
                self._finish(dep)
                continue
            out.append(
                {
                    "id": dep_id,
                    "affectedApps": [dep["app"]],
                    "currentStep": dep["step"],
                    "totalSteps": dep["total"],
                    "currentActions": [{"action": "ScaleApplication", "app": dep["app"]}],
                }
            )
        return out

    def delete_deployment(self, deployment_id: str, *, force: bool = False) -> Optional[Ref]:
        self.calls.append(("delete_deployment", (deployment_id, force)))
        if self.missing_deployments or deployment_id not in self.deployments:
            raise NotFound(f"DeploymentPlan {deployment_id} does not exist", status=404)
        dep = self.deployments.pop(deployment_id)
        self.stuck.discard(dep["app"])
        before = dep["before"]
        return self._new_deployment(dep["app"], dict(before) if before else None, steps=1)


def fast(**kwargs: Any) -> dict:
    return {"poll_interval": 0.0, **kwargs}


# --- pure helpers --------------------------------------------------------------------------


def test_progress_from_the_deployments_example(examples_dir: Path) -> None:
    deployments = json.loads(
        (examples_dir / "api-docs-head/GET_v2_deployments.response.json").read_text()
    )
    dep = find_deployment(deployments, "97c136bf-5a28-4821-9d94-480d9fbb01c8")
    assert dep is not None
    app = {"id": "/foo", "instances": 3, "tasksRunning": 2, "tasksHealthy": 1, "healthChecks": [{}]}
    target = WaitTarget("97c136bf-5a28-4821-9d94-480d9fbb01c8", "/foo")
    progress = compute_progress(target, dep, app)
    assert (progress.step, progress.total_steps, progress.actions) == (1, 1, ("ScaleApplication",))
    assert (progress.running, progress.healthy, progress.wanted) == (2, 1, 3)
    assert str(progress) == "/foo: deploying, step 1/1 (ScaleApplication), 2/3 running, 1/3 healthy"
    assert find_deployment(deployments, "nope") is None


def test_progress_of_a_finished_deployment_is_done() -> None:
    app = {"id": "/foo", "instances": 2, "tasksRunning": 2}
    progress = compute_progress(WaitTarget("d", "/foo"), None, app)
    assert progress.phase == DONE
    assert str(progress) == "/foo: done, 2/2 running"


def test_counts_met() -> None:
    assert counts_met({"instances": 2, "tasksRunning": 2})
    assert not counts_met({"instances": 2, "tasksRunning": 1})
    assert counts_met({"instances": 0})
    checked = {"instances": 2, "tasksRunning": 2, "healthChecks": [{"protocol": "HTTP"}]}
    assert not counts_met({**checked, "tasksHealthy": 1})
    assert counts_met({**checked, "tasksHealthy": 2})


def test_outcome_problem() -> None:
    target = WaitTarget("d1", "/a")
    assert outcome_problem(target, {"instances": 1, "tasksRunning": 1}) == ""
    assert "cancelled or superseded" in outcome_problem(target, {"instances": 2, "tasksRunning": 1})
    assert "no longer exists" in outcome_problem(target, None)
    assert outcome_problem(WaitTarget("d1", "/a", expect="gone"), None) == ""


def test_previous_version_uses_last_config_change_and_sorts() -> None:
    versions = ["2021-01-03T00:00:00.000Z", "2021-01-01T00:00:00.000Z", "2021-01-02T00:00:00.000Z"]
    app = {
        "version": "2021-01-03T00:00:00.000Z",
        "versionInfo": {"lastConfigChangeAt": "2021-01-02T00:00:00.000Z"},
    }
    assert previous_version(versions, app) == "2021-01-01T00:00:00.000Z"
    assert previous_version(versions, {"version": "2021-01-03T00:00:00.000Z"}) == (
        "2021-01-02T00:00:00.000Z"
    )
    assert previous_version(versions[1:2], {"version": "2021-01-01T00:00:00.000Z"}) is None


def test_absolute_id() -> None:
    assert deploy.absolute_id("foo") == "/foo"
    assert deploy.absolute_id("/a//b/") == "/a/b"


# --- waiting and deploying ----------------------------------------------------------------


def test_deploy_new_app_waits_and_reports_progress() -> None:
    fake = FakeMarathon()
    seen: list[DeployProgress] = []
    result = deploy_apps(
        fake, [{"id": "web", "cmd": "x", "instances": 2}], progress=seen.append, **fast()
    )
    assert [(a.app_id, a.action, a.deployment_id) for a in result.apps] == [
        ("/web", "created", "dep-1")
    ]
    assert result.deployment_ids == ["dep-1"]
    assert seen[-1].phase == DONE and seen[-1].running == 2
    assert [p.step for p in seen[:-1]] == [1, 2]
    assert len(seen) == len(set(seen))  # only changes are reported


def test_no_wait_returns_after_submitting() -> None:
    fake = FakeMarathon()
    result = deploy_apps(fake, [{"id": "/web", "cmd": "x"}], wait=False)
    assert not result.waited and list(fake.deployments) == ["dep-1"]


def test_wait_times_out_naming_the_deployment() -> None:
    fake = FakeMarathon()
    fake.create_app({"id": "/web", "cmd": "x", "instances": 1})
    fake.stuck.add("/web")
    clock = FakeClock(start=0.0)
    with pytest.raises(DeploymentTimeout) as caught:
        wait_for_deployments(
            fake, [WaitTarget("dep-1", "/web")], timeout=5, clock=clock, sleep=clock.sleep
        )
    assert caught.value.deployment_id == "dep-1"
    assert caught.value.app_ids == ["/web"]
    assert "dep-1 of /web (0/1 running)" in str(caught.value)
    assert clock.now >= 5


def test_timeout_without_rollback_leaves_the_deployment_alone() -> None:
    fake = FakeMarathon()
    fake.stuck.add("/web")
    with pytest.raises(DeploymentTimeout):
        deploy_apps(fake, [{"id": "/web", "cmd": "x"}], timeout=0.0, **fast())
    assert not [c for c in fake.calls if c[0] == "delete_deployment"]
    assert "dep-1" in fake.deployments


def test_timeout_with_rollback_uses_marathons_rollback_deployment() -> None:
    fake = FakeMarathon()
    fake.stuck.add("/web")
    seen: list[DeployProgress] = []
    with pytest.raises(DeploymentTimeout) as caught:
        deploy_apps(
            fake,
            [{"id": "/web", "cmd": "x"}],
            timeout=0.0,
            rollback_on_failure=True,
            progress=seen.append,
            **fast(),
        )
    assert ("delete_deployment", ("dep-1", False)) in fake.calls
    assert "rolled back" in str(caught.value)
    assert "/web" not in fake.apps  # the deploy created it, so the rollback removed it
    assert any(p.phase == ROLLING_BACK for p in seen)


def test_rollback_falls_back_to_deleting_a_created_app_when_the_deployment_is_gone() -> None:
    fake = FakeMarathon()
    fake.stuck.add("/web")
    fake.missing_deployments = True
    with pytest.raises(DeploymentTimeout) as caught:
        deploy_apps(
            fake, [{"id": "/web", "cmd": "x"}], timeout=0.0, rollback_on_failure=True, **fast()
        )
    assert ("delete_app", "/web") in fake.calls
    assert "removed (the deploy created it)" in str(caught.value)


def test_cancelled_deployment_is_a_failure() -> None:
    fake = FakeMarathon()
    fake.create_app({"id": "/web", "cmd": "x", "instances": 3})
    fake.deployments["dep-1"]["final"] = {"id": "/web", "instances": 3, "tasksRunning": 1}
    fake._finish = lambda dep: fake.apps.__setitem__(dep["app"], dep["final"])  # type: ignore[method-assign]
    with pytest.raises(DeploymentError, match="cancelled or superseded") as caught:
        wait_for_deployments(fake, [WaitTarget("dep-1", "/web")], poll_interval=0.0)
    assert not isinstance(caught.value, DeploymentTimeout)


def test_conflict_is_raised_with_its_deployment_ids() -> None:
    fake = FakeMarathon()
    body = {"message": "App is locked by one or more deployments.", "deployments": [{"id": "d-9"}]}

    def locked(app: Mapping[str, Any]) -> tuple[dict, Ref]:
        raise Conflict(body["message"], status=409, body=body)

    fake.create_app = locked  # type: ignore[method-assign]
    with pytest.raises(Conflict) as caught:
        deploy_apps(fake, [{"id": "/web", "cmd": "x"}])
    assert caught.value.deployment_ids == ["d-9"]


def test_rollback_helper_picks_the_previous_version() -> None:
    fake = FakeMarathon()
    fake.apps["/web"] = {
        "id": "/web",
        "version": "2021-01-03T00:00:00.000Z",
        "versions": ["2021-01-03T00:00:00.000Z", "2021-01-01T00:00:00.000Z"],
    }
    version, ref = deploy.rollback(fake, "web")
    assert version == "2021-01-01T00:00:00.000Z"
    assert ("rollback_app", ("/web", version, False)) in fake.calls
    assert ref.deployment_id == "dep-1"
    fake.apps["/web"]["versions"] = ["2021-01-03T00:00:00.000Z"]
    with pytest.raises(DeploymentError, match="no earlier version"):
        deploy.rollback(fake, "/web")


def live_app(**extra: Any) -> dict:
    return {
        "id": "/web",
        "cmd": "x",
        "instances": 1,
        "version": "2021-01-01T00:00:00.000Z",
        "tasksRunning": 1,
        "tasksHealthy": 0,
        **extra,
    }


def test_update_uses_a_full_replace_and_records_the_previous_version() -> None:
    fake = FakeMarathon()
    fake.apps["/web"] = live_app()
    result = deploy_apps(fake, [{"id": "/web", "cmd": "y", "instances": 1}], **fast())
    [item] = result.apps
    assert (item.action, item.previous_version) == ("updated", "2021-01-01T00:00:00.000Z")
    assert ("update", ("/web", False, False)) in fake.calls  # partialUpdate=false, no force


def test_unchanged_app_sends_nothing() -> None:
    fake = FakeMarathon()
    fake.apps["/web"] = live_app()
    result = deploy_apps(fake, [{"id": "web", "cmd": "x"}], **fast())
    assert [a.action for a in result.apps] == ["unchanged"]
    assert fake.calls == []


def test_force_is_passed_to_the_update() -> None:
    fake = FakeMarathon()
    fake.apps["/web"] = live_app()
    deploy_apps(fake, [{"id": "/web", "cmd": "y"}], force=True, **fast())
    assert ("update", ("/web", False, True)) in fake.calls


def test_failed_update_rolls_back_to_the_previous_definition() -> None:
    fake = FakeMarathon()
    fake.apps["/web"] = live_app()
    fake.stuck.add("/web")
    with pytest.raises(DeploymentTimeout) as caught:
        deploy_apps(
            fake, [{"id": "/web", "cmd": "y"}], timeout=0.0, rollback_on_failure=True, **fast()
        )
    assert "rolled back: /web to version 2021-01-01T00:00:00.000Z" in str(caught.value)
    assert fake.apps["/web"]["cmd"] == "x"


def test_failed_update_whose_deployment_vanished_is_put_back_by_version() -> None:
    fake = FakeMarathon()
    fake.apps["/web"] = live_app()
    fake.stuck.add("/web")
    fake.missing_deployments = True
    with pytest.raises(DeploymentTimeout) as caught:
        deploy_apps(
            fake, [{"id": "/web", "cmd": "y"}], timeout=0.0, rollback_on_failure=True, **fast()
        )
    assert ("rollback_app", ("/web", "2021-01-01T00:00:00.000Z", True)) in fake.calls
    assert "rolled back" in str(caught.value)


def test_scale_and_restart_of_a_missing_app_raise_not_found() -> None:
    fake = FakeMarathon()
    with pytest.raises(NotFound, match="App '/nope' does not exist"):
        deploy.scale(fake, "nope", 2)
    with pytest.raises(NotFound):
        deploy.restart(fake, "/nope")
    assert fake.calls == []


def test_waiting_survives_a_briefly_unavailable_marathon() -> None:
    fake = FakeMarathon()
    fake.create_app({"id": "/web", "cmd": "x"})
    real_list = fake.list_deployments
    failures = [Unavailable("no Marathon answered", status=503)] * 2

    def flaky() -> list[dict]:
        if failures:
            raise failures.pop()
        return real_list()

    fake.list_deployments = flaky  # type: ignore[method-assign]
    clock = FakeClock(start=0.0)
    wait_for_deployments(
        fake, [WaitTarget("dep-1", "/web")], timeout=60, clock=clock, sleep=clock.sleep
    )
    assert failures == [] and "dep-1" not in fake.deployments


def test_request_body_drops_only_what_marathon_writes() -> None:
    saved = {
        "id": "/web",
        "cmd": "x",
        "version": "2021-01-01T00:00:00.000Z",
        "versionInfo": {},
        "tasks": [],
        "tasksRunning": 1,
        "deployments": [],
        "x-unknown": 1,
        "killSelection": "OLDEST_FIRST",
    }
    assert deploy.request_body(saved) == {
        "id": "/web",
        "cmd": "x",
        "x-unknown": 1,
        "killSelection": "OLDEST_FIRST",
    }
