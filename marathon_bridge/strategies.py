"""Blue/green and canary deploys through a deployment group (see docs/deploys.md).

The new version runs as a second Marathon app, ``<base id>-blue`` or ``<base id>-green``
(alternating), with the group labels, so every marathon-sidecar merges both apps into one
frontend and one backend on the group's shared port (``sidecar/deployment_groups.py``). Traffic
then moves by *instance counts* only: scaling keeps the tasks, whereas changing any label would
make Marathon restart them. Old instances leave through Marathon's kill (``TASK_KILLING``: every
sidecar drains them), and only after a drain delay during which every sidecar can have put the new
instances into rotation.

State lives in the apps' labels (group, colour, started-at, target instances), so an interrupted
run can be finished (:func:`resume`) or undone (:func:`rollback`) from Marathon alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from marathon_bridge.deploy import (
    EXPECT_GONE,
    EXPECT_RUNNING,
    WaitTarget,
    absolute_id,
    wait_for_deployments,
)
from marathon_bridge.deployment_groups import (
    ALT_PORT_LABEL,
    COLOUR_LABEL,
    COLOURS,
    DEFAULT_CANARY_STEPS,
    GROUP_LABEL,
    SHARED_PORT_LABEL,
    STARTED_AT_LABEL,
    TARGET_INSTANCES_LABEL,
    StrategyError,
    base_id,
    canary_plan,
    colour_of,
    group_of,
    label_int,
    new_version_app,
    now_iso,
    order_members,
    service_port,
    shared_port,
    start_guard,
    unfinished_run,
)
from marathon_bridge.errors import MarathonBridgeError, NotFound

log = logging.getLogger(__name__)


class StrategyClient(Protocol):
    """The part of :class:`~marathon_bridge.client.MarathonClient` the strategies use."""

    def list_apps(
        self, embed: Sequence[str] = (), app_id: str = "", label: str = "", cmd: str = ""
    ) -> list[dict]: ...

    def get_app(self, app_id: str, embed: Sequence[str] = ()) -> dict: ...

    def create_app(self, app: Mapping[str, Any]) -> tuple[dict, Any]: ...

    def scale_app(self, app_id: str, instances: int, *, force: bool = False) -> Any: ...

    def delete_app(self, app_id: str, *, force: bool = True) -> Any: ...

    def list_deployments(self) -> list[dict]: ...

    def get_queue(self) -> list[dict]: ...


Progress = Callable[[str], None]
Confirm = Callable[[int, int, int], bool]  # (share %, new instances, old instances) -> go on?


@dataclass
class Report:
    """What a run did: the apps involved, each step, and where the service runs at the end."""

    group: str
    old_app: str = ""
    new_app: str = ""
    outcome: str = ""  # completed | rolled back | nothing to do
    steps: list[str] = field(default_factory=list)
    serving: dict[str, int] = field(default_factory=dict)  # app id -> instances at the end
    placement: dict[str, list[str]] = field(default_factory=dict)  # app id -> ["host:port", ...]

    def __str__(self) -> str:
        lines = [f"group {self.group}: {self.outcome}"]
        lines += [f"  {n}. {step}" for n, step in enumerate(self.steps, 1)]
        where = ", ".join(f"{a} x{n}" for a, n in sorted(self.serving.items())) or "nothing"
        lines.append(f"  serving: {where}")
        for app_id, places in sorted(self.placement.items()):
            lines.append(f"  {app_id} runs on: {', '.join(places) or '-'}")
        return "\n".join(lines)


# --- the runner -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunOptions:
    """How every run waits and reports: the keyword options the public functions share."""

    timeout: float
    drain_delay: float
    progress: Optional[Progress]
    poll_interval: float
    sleep: Callable[[float], None]


class _Run:
    """One blue/green or canary run; every Marathon change goes through here and is reported."""

    def __init__(
        self,
        client: StrategyClient,
        report: Report,
        options: _RunOptions,
    ) -> None:
        self.client = client
        self.report = report
        self.timeout = options.timeout
        self.drain_delay = options.drain_delay
        self.progress = options.progress
        self.poll_interval = options.poll_interval
        self.sleep = options.sleep

    def say(self, text: str) -> None:
        self.report.steps.append(text)
        log.info("deploy strategy step", extra={"group": self.report.group, "step": text})
        if self.progress is not None:
            self.progress(text)

    def wait(self, ref: Any, app_id: str, expect: str = EXPECT_RUNNING) -> None:
        deployment_id = str(getattr(ref, "deployment_id", "") or "")
        if not deployment_id:
            return
        wait_for_deployments(
            self.client,
            [WaitTarget(deployment_id, app_id, expect)],
            timeout=self.timeout,
            poll_interval=self.poll_interval,
            sleep=self.sleep,
        )

    def create(self, app: Mapping[str, Any]) -> None:
        _body, ref = self.client.create_app(app)
        self.say(f"created {app['id']} with {app['instances']} instance(s)")
        self.wait(ref, str(app["id"]))

    def scale(self, app_id: str, instances: int) -> None:
        ref = self.client.scale_app(app_id, instances, force=True)
        self.say(f"scaled {app_id} to {instances}")
        self.wait(ref, app_id)

    def settle(self, why: str) -> None:
        if self.drain_delay > 0:
            self.say(f"waited {self.drain_delay:g}s ({why})")
            self.sleep(self.drain_delay)

    def retire(self, app_id: str) -> None:
        """Scale to 0 (each task drains in every sidecar while Marathon kills it), then delete."""
        try:
            self.scale(app_id, 0)
        except NotFound:
            return
        self.settle("every sidecar has dropped the killed instances")
        try:
            ref = self.client.delete_app(app_id, force=True)
        except NotFound:
            return
        self.say(f"deleted {app_id}")
        self.wait(ref, app_id, EXPECT_GONE)

    def finish(self, outcome: str) -> Report:
        self.report.outcome = outcome
        apps = self.client.list_apps(
            embed=["apps.tasks"], label=f"{GROUP_LABEL}=={self.report.group}"
        )
        for app in apps:
            self.report.serving[str(app["id"])] = int(app.get("instances", 0))
            self.report.placement[str(app["id"])] = sorted(
                f"{t.get('host')}:{(t.get('ports') or ['-'])[0]}" for t in app.get("tasks") or []
            )
        return self.report


def _members(client: StrategyClient, group: str) -> list[dict[str, Any]]:
    apps = client.list_apps(
        embed=["apps.counts", "apps.deployments"], label=f"{GROUP_LABEL}=={group}"
    )
    return order_members(apps)


def _runner(client: StrategyClient, group: str, options: _RunOptions) -> _Run:
    return _Run(client, Report(group=group), options)


def canary_deploy(
    client: StrategyClient,
    app: Mapping[str, Any],
    *,
    steps: Sequence[int] = DEFAULT_CANARY_STEPS,
    pause: float = 0.0,
    confirm: Optional[Confirm] = None,
    drain_delay: float = 5.0,
    timeout: float = 300.0,
    min_healthy: int = 1,
    progress: Optional[Progress] = None,
    poll_interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Move traffic to the new version in steps of instance share; see :func:`canary_plan`.

    Each step first scales the new app up and waits until its instances are healthy, waits the
    drain delay (every sidecar puts them in rotation), then scales the old app down, so the
    service port never has fewer healthy instances than the step's total. Between steps: ``pause``
    seconds, then ``confirm(share, new, old)`` if given (False aborts). A failure or an abort rolls
    back: the old app back to its instances, the new app retired. Raises :class:`StrategyError`
    after a rollback; returns the report when the run completed.
    """
    group = group_of(app)
    run = _runner(client, group, _RunOptions(timeout, drain_delay, progress, poll_interval, sleep))
    target = int(app.get("instances", 1))
    plan = canary_plan(target, steps)
    old = _running_version(client, group, target, min_healthy)
    first_new = plan[0][1] if old is not None else target
    new = new_version_app(app, old=old, instances=first_new, started_at=now_iso())
    run.report.old_app = str(old["id"]) if old else ""
    run.report.new_app = str(new["id"])
    if old is None:
        return _first_deploy(run, str(app["id"]), new)
    old_id, new_id = str(old["id"]), str(new["id"])
    try:
        run.create(new)
        _walk(run, plan, old_id, new_id, int(old.get("instances", 1)), pause, confirm, min_healthy)
    except MarathonBridgeError as error:
        _undo(run, old_id, new_id, int(old.get("instances", 1)), error)
    run.retire(old_id)
    return run.finish("completed")


def _running_version(
    client: StrategyClient, group: str, target: int, min_healthy: int
) -> Optional[dict[str, Any]]:
    """The group's one running app (None on a first deploy), checked fit to start a run."""
    members = _members(client, group)
    if len(members) > 1:
        raise StrategyError(f"not started: {unfinished_run(group, members)}")
    old = members[0] if members else None
    if old is not None:
        problem = start_guard(old, target, min_healthy)
        if problem:
            raise StrategyError(f"not started: {problem}")
    elif target < min_healthy:
        raise StrategyError(f"not started: target {target} is below the minimum {min_healthy}")
    return old


def _first_deploy(run: _Run, app_id: str, new: Mapping[str, Any]) -> Report:
    """No version runs yet: create the new colour with all its instances."""
    _refuse_unmanaged(run.client, app_id)
    run.say(f"no running version in group {run.report.group}: first deploy")
    try:
        run.create(new)
    except MarathonBridgeError as error:
        _undo(run, None, str(new["id"]), 0, error)
    return run.finish("completed")


def _walk(
    run: _Run,
    plan: Sequence[tuple[int, int, int]],
    old_id: str,
    new_id: str,
    old_instances: int,
    pause: float,
    confirm: Optional[Confirm],
    min_healthy: int,
) -> None:
    """Each step: the new app up (the first step created it), the drain delay, the old app down."""
    old_now = old_instances
    for number, (share, new_count, old_count) in enumerate(plan):
        if number:
            run.scale(new_id, new_count)
        run.settle("every sidecar has the new instances in rotation")
        if 0 < old_count < old_now:
            _check_minimum(run.client, new_id, old_count, min_healthy)
            run.scale(old_id, old_count)
            old_now = old_count
        run.say(f"step {number + 1}/{len(plan)}: {share}% -> {new_count} new, {old_count} old")
        if number + 1 < len(plan):
            if pause > 0:
                run.sleep(pause)
            if confirm is not None and not confirm(share, new_count, old_count):
                raise StrategyError(f"aborted at {share}%")
    _check_minimum(run.client, new_id, 0, min_healthy)


def blue_green_deploy(
    client: StrategyClient,
    app: Mapping[str, Any],
    *,
    drain_delay: float = 5.0,
    timeout: float = 300.0,
    min_healthy: int = 1,
    progress: Optional[Progress] = None,
    poll_interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Start every instance of the new version, wait until all are healthy, then retire the old.

    A canary with a single 100 % step: the new app starts with all its instances; nothing of the
    old app is touched until they are all healthy (then both serve, then the drain delay, then the
    old app is scaled to 0, the drain delay again, and deleted).
    """
    return canary_deploy(
        client,
        app,
        steps=(100,),
        drain_delay=drain_delay,
        timeout=timeout,
        min_healthy=min_healthy,
        progress=progress,
        poll_interval=poll_interval,
        sleep=sleep,
    )


def _check_minimum(client: StrategyClient, new_id: str, old_after: int, min_healthy: int) -> None:
    """Refuse a scale-down that would leave fewer healthy instances than the minimum."""
    new = client.get_app(new_id)
    healthy = int(new.get("tasksHealthy" if new.get("healthChecks") else "tasksRunning", 0))
    if healthy + old_after < min_healthy:
        raise StrategyError(
            f"only {healthy} healthy new + {old_after} old instances would remain "
            f"(minimum {min_healthy})"
        )


def _refuse_unmanaged(client: StrategyClient, app_id: str) -> None:
    """An app with the base id but no group labels would keep the shared port: refuse."""
    try:
        client.get_app(absolute_id(app_id))
    except NotFound:
        return
    raise StrategyError(
        f"not started: {absolute_id(app_id)} runs without the {GROUP_LABEL} label; deploy it "
        f"once with the group labels and {SHARED_PORT_LABEL} (docs/deploys.md, 'First deploy')"
    )


def _undo(
    run: _Run, old_id: Optional[str], new_id: str, old_instances: int, error: Exception
) -> None:
    run.say(f"failed: {error}; rolling back")
    if old_id is not None:
        run.scale(old_id, old_instances)
    run.retire(new_id)
    run.finish("rolled back")
    raise StrategyError(f"{error}; rolled back\n{run.report}") from error


def _interrupted(client: StrategyClient, group: str) -> tuple[dict[str, Any], dict[str, Any]]:
    members = _members(client, group)
    if len(members) != 2:
        ids = ", ".join(str(m["id"]) for m in members) or "no app"
        raise StrategyError(f"group {group} has no interrupted run ({ids})")
    return members[0], members[1]


def resume(
    client: StrategyClient,
    group: str,
    *,
    drain_delay: float = 5.0,
    timeout: float = 300.0,
    progress: Optional[Progress] = None,
    poll_interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Finish an interrupted run: the newer app to its target instances, then retire the older."""
    options = _RunOptions(timeout, drain_delay, progress, poll_interval, sleep)
    return _end_interrupted(client, group, options, finish=True)


def rollback(
    client: StrategyClient,
    group: str,
    *,
    drain_delay: float = 5.0,
    timeout: float = 300.0,
    progress: Optional[Progress] = None,
    poll_interval: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Undo an interrupted run: the older app back to its instances, the newer app retired."""
    options = _RunOptions(timeout, drain_delay, progress, poll_interval, sleep)
    return _end_interrupted(client, group, options, finish=False)


def _end_interrupted(
    client: StrategyClient, group: str, options: _RunOptions, *, finish: bool
) -> Report:
    """An interrupted run's two apps: finish it (the newer one serves) or undo it (the older)."""
    old, new = _interrupted(client, group)
    run = _runner(client, group, options)
    old_id, new_id = str(old["id"]), str(new["id"])
    run.report.old_app, run.report.new_app = old_id, new_id
    target = label_int(new, TARGET_INSTANCES_LABEL, int(new.get("instances", 1)))
    if not finish:
        run.scale(old_id, _old_target(old, target))
        run.settle("every sidecar has the old instances in rotation")
        run.retire(new_id)
        return run.finish("rolled back")
    try:
        run.scale(new_id, target)
    except MarathonBridgeError as error:
        _undo(run, old_id, new_id, _old_target(old, target), error)
    run.settle("every sidecar has the new instances in rotation")
    run.retire(old_id)
    return run.finish("completed")


def _old_target(old: Mapping[str, Any], fallback: int) -> int:
    """How many instances the old app had before the run: its own target label."""
    return max(1, label_int(old, TARGET_INSTANCES_LABEL, fallback))


__all__ = [
    "ALT_PORT_LABEL",
    "COLOURS",
    "COLOUR_LABEL",
    "DEFAULT_CANARY_STEPS",
    "GROUP_LABEL",
    "SHARED_PORT_LABEL",
    "STARTED_AT_LABEL",
    "TARGET_INSTANCES_LABEL",
    "Report",
    "StrategyError",
    "base_id",
    "blue_green_deploy",
    "canary_deploy",
    "canary_plan",
    "colour_of",
    "group_of",
    "new_version_app",
    "order_members",
    "resume",
    "rollback",
    "service_port",
    "shared_port",
    "start_guard",
]
