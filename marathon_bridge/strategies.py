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
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Protocol

from marathon_bridge.deploy import (
    EXPECT_GONE,
    EXPECT_RUNNING,
    WaitTarget,
    absolute_id,
    counts_met,
    request_body,
    wait_for_deployments,
)
from marathon_bridge.errors import MarathonBridgeError, NotFound

log = logging.getLogger(__name__)

GROUP_LABEL = "HAPROXY_DEPLOYMENT_GROUP"
ALT_PORT_LABEL = "HAPROXY_DEPLOYMENT_ALT_PORT"
COLOUR_LABEL = "HAPROXY_DEPLOYMENT_COLOUR"
STARTED_AT_LABEL = "HAPROXY_DEPLOYMENT_STARTED_AT"
TARGET_INSTANCES_LABEL = "HAPROXY_DEPLOYMENT_TARGET_INSTANCES"
SHARED_PORT_LABEL = "HAPROXY_0_PORT"
COLOURS = ("blue", "green")
DEFAULT_CANARY_STEPS = (5, 25, 50, 100)


class StrategyError(MarathonBridgeError):
    """A blue/green or canary deploy cannot start, or failed (and was rolled back)."""


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


# --- pure parts -----------------------------------------------------------------------------


def canary_plan(target: int, steps: Sequence[int]) -> list[tuple[int, int, int]]:
    """(share %, new instances, old instances) per step, the total staying ``target``.

    The new count is the smallest that gives *at least* the share: ``ceil(share * target / 100)``,
    and at least 1. Steps that give the same counts as the one before are dropped; the last step
    is always 100 % (all new, no old).
    """
    if target < 1:
        raise StrategyError("a canary needs at least 1 target instance")
    shares = sorted({int(s) for s in steps})
    if not shares or shares[0] < 1 or shares[-1] > 100:
        raise StrategyError("canary steps must be percentages 1..100")
    if shares[-1] != 100:
        shares.append(100)
    plan: list[tuple[int, int, int]] = []
    for share in shares:
        new = max(1, math.ceil(share * target / 100))
        if plan and plan[-1][1] == new:
            continue
        plan.append((share, new, target - new))
    return plan


def base_id(app_id: str) -> str:
    """The app id without a ``-blue``/``-green`` suffix."""
    app_id = absolute_id(app_id)
    for colour in COLOURS:
        if app_id.endswith("-" + colour):
            return app_id[: -len(colour) - 1]
    return app_id


def group_of(app: Mapping[str, Any]) -> str:
    """The app's deployment group: its label, or its base id with ``/`` turned into ``.``."""
    label = (app.get("labels") or {}).get(GROUP_LABEL)
    if isinstance(label, str) and label.strip():
        return label.strip()
    return base_id(str(app.get("id") or "")).strip("/").replace("/", ".")


def service_port(app: Mapping[str, Any]) -> int:
    """The first Marathon service port of an app definition (0 when it has none)."""
    for key in ("portDefinitions",):
        for entry in app.get(key) or []:
            return int(entry.get("port") or 0)
    container = app.get("container") or {}
    for entry in container.get("portMappings") or []:
        return int(entry.get("servicePort") or 0)
    for entry in (container.get("docker") or {}).get("portMappings") or []:
        return int(entry.get("servicePort") or 0)
    return 0


def shared_port(app: Mapping[str, Any]) -> int:
    """The port clients use: ``HAPROXY_0_PORT`` when set, else the app's first service port."""
    label = (app.get("labels") or {}).get(SHARED_PORT_LABEL)
    if isinstance(label, str) and label.strip().isdigit():
        return int(label.strip())
    return service_port(app)


def _with_service_port(app: dict[str, Any], port: int) -> None:
    if app.get("portDefinitions"):
        app["portDefinitions"] = [dict(p) for p in app["portDefinitions"]]
        app["portDefinitions"][0]["port"] = port
        return
    container = app.get("container") or {}
    mappings = container.get("portMappings")
    if mappings:
        container = dict(container)
        container["portMappings"] = [dict(m) for m in mappings]
        container["portMappings"][0]["servicePort"] = port
        app["container"] = container
        return
    raise StrategyError(f"{app.get('id')}: the app has no service port to share")


def colour_of(app: Mapping[str, Any]) -> str:
    colour = (app.get("labels") or {}).get(COLOUR_LABEL)
    if colour in COLOURS:
        return str(colour)
    app_id = str(app.get("id") or "")
    return next((c for c in COLOURS if app_id.endswith("-" + c)), "")


def label_int(app: Mapping[str, Any], key: str, default: int) -> int:
    value = (app.get("labels") or {}).get(key)
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if text.isdigit() else default


def new_version_app(
    app: Mapping[str, Any],
    *,
    old: Optional[Mapping[str, Any]],
    instances: int,
    started_at: str,
) -> dict[str, Any]:
    """The definition of the new colour: derived id, group labels, its own service port.

    The group's shared port is the original service port of the user's definition (or its
    ``HAPROXY_0_PORT``); the new app binds it through ``HAPROXY_0_PORT``. Its own Marathon service
    port is whichever of (shared, ``HAPROXY_DEPLOYMENT_ALT_PORT``) the old app does not use.
    """
    body = request_body(app)
    labels = dict(body.get("labels") or {})
    shared = shared_port(app)
    alt = label_int(app, ALT_PORT_LABEL, 0)
    if not shared:
        raise StrategyError(f"{app.get('id')}: the app needs a fixed service port (not 0)")
    if not alt or alt == shared:
        raise StrategyError(
            f"{app.get('id')}: set label {ALT_PORT_LABEL} to a second free service port"
        )
    old_colour = colour_of(old) if old is not None else ""
    colour = COLOURS[1] if old_colour == COLOURS[0] else COLOURS[0]
    own_port = shared
    if old is not None and service_port(old) == shared:
        own_port = alt
    labels.update(
        {
            GROUP_LABEL: group_of(app),
            ALT_PORT_LABEL: str(alt),
            COLOUR_LABEL: colour,
            STARTED_AT_LABEL: started_at,
            TARGET_INSTANCES_LABEL: str(int(app.get("instances", 1))),
            SHARED_PORT_LABEL: str(shared),
        }
    )
    body["labels"] = labels
    body["id"] = f"{base_id(str(app['id']))}-{colour}"
    body["instances"] = instances
    _with_service_port(body, own_port)
    return body


def order_members(apps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group members, oldest first (by started-at label, then id)."""
    return [
        dict(a)
        for a in sorted(
            apps,
            key=lambda a: (str((a.get("labels") or {}).get(STARTED_AT_LABEL, "")), str(a["id"])),
        )
    ]


def is_healthy(app: Mapping[str, Any]) -> bool:
    """Every wanted instance runs (and is healthy, for a health-checked app)."""
    return counts_met(app)


def start_guard(old: Mapping[str, Any], target: int, min_healthy: int) -> Optional[str]:
    """Why a run must not start, or ``None``."""
    if old.get("deployments"):
        return f"{old['id']} is in a deployment; wait for it or cancel it first"
    if not is_healthy(old):
        return f"{old['id']} is not healthy (every instance must run and pass its checks)"
    if target < min_healthy:
        return f"target instances {target} is below the minimum healthy {min_healthy}"
    return None


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the runner -----------------------------------------------------------------------------


class _Run:
    """One blue/green or canary run; every Marathon change goes through here and is reported."""

    def __init__(
        self,
        client: StrategyClient,
        report: Report,
        *,
        timeout: float,
        drain_delay: float,
        progress: Optional[Progress],
        poll_interval: float,
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self.report = report
        self.timeout = timeout
        self.drain_delay = drain_delay
        self.progress = progress
        self.poll_interval = poll_interval
        self.sleep = sleep

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
            self.client,  # type: ignore[arg-type]
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


def _runner(client: StrategyClient, group: str, **kwargs: Any) -> _Run:
    return _Run(client, Report(group=group), **kwargs)


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
    run = _runner(
        client,
        group,
        timeout=timeout,
        drain_delay=drain_delay,
        progress=progress,
        poll_interval=poll_interval,
        sleep=sleep,
    )
    target = int(app.get("instances", 1))
    plan = canary_plan(target, steps)
    members = _members(client, group)
    if len(members) > 1:
        raise StrategyError(
            f"group {group} has an unfinished run ({', '.join(m['id'] for m in members)}); "
            "use resume or rollback"
        )
    old = members[0] if members else None
    if old is not None:
        problem = start_guard(old, target, min_healthy)
        if problem:
            raise StrategyError(f"not started: {problem}")
    elif target < min_healthy:
        raise StrategyError(f"not started: target {target} is below the minimum {min_healthy}")
    first_new = plan[0][1] if old is not None else target
    new = new_version_app(app, old=old, instances=first_new, started_at=now_iso())
    run.report.old_app = str(old["id"]) if old else ""
    run.report.new_app = str(new["id"])
    if old is None:
        _refuse_unmanaged(client, str(app["id"]))
        run.say(f"no running version in group {group}: first deploy")
        try:
            run.create(new)
        except MarathonBridgeError as error:
            _undo(run, None, str(new["id"]), 0, error)
        return run.finish("completed")
    old_id, new_id = str(old["id"]), str(new["id"])
    old_instances = int(old.get("instances", 1))
    old_now = old_instances
    try:
        run.create(new)
        for number, (share, new_count, old_count) in enumerate(plan):
            if number:
                run.scale(new_id, new_count)
            run.settle("every sidecar has the new instances in rotation")
            if 0 < old_count < old_now:
                _check_minimum(client, new_id, old_count, min_healthy)
                run.scale(old_id, old_count)
                old_now = old_count
            run.say(f"step {number + 1}/{len(plan)}: {share}% -> {new_count} new, {old_count} old")
            if number + 1 < len(plan):
                if pause > 0:
                    sleep(pause)
                if confirm is not None and not confirm(share, new_count, old_count):
                    raise StrategyError(f"aborted at {share}%")
        _check_minimum(client, new_id, 0, min_healthy)
    except MarathonBridgeError as error:
        _undo(run, old_id, new_id, old_instances, error)
    run.retire(old_id)
    return run.finish("completed")


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


def _take_over(
    client: StrategyClient, group: str, **run_options: Any
) -> tuple[_Run, dict[str, Any], dict[str, Any], int]:
    """An interrupted run's two apps, a runner that reports on them, and its target instances."""
    old, new = _interrupted(client, group)
    run = _runner(client, group, **run_options)
    run.report.old_app, run.report.new_app = str(old["id"]), str(new["id"])
    target = label_int(new, TARGET_INSTANCES_LABEL, int(new.get("instances", 1)))
    return run, old, new, target


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
    run, old, new, target = _take_over(
        client,
        group,
        timeout=timeout,
        drain_delay=drain_delay,
        progress=progress,
        poll_interval=poll_interval,
        sleep=sleep,
    )
    try:
        run.scale(str(new["id"]), target)
    except MarathonBridgeError as error:
        _undo(run, str(old["id"]), str(new["id"]), _old_target(old, target), error)
    run.settle("every sidecar has the new instances in rotation")
    run.retire(str(old["id"]))
    return run.finish("completed")


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
    run, old, new, target = _take_over(
        client,
        group,
        timeout=timeout,
        drain_delay=drain_delay,
        progress=progress,
        poll_interval=poll_interval,
        sleep=sleep,
    )
    run.scale(str(old["id"]), _old_target(old, target))
    run.settle("every sidecar has the old instances in rotation")
    run.retire(str(new["id"]))
    return run.finish("rolled back")


def _old_target(old: Mapping[str, Any], fallback: int) -> int:
    """How many instances the old app had before the run: its own target label."""
    return max(1, label_int(old, TARGET_INSTANCES_LABEL, fallback))


__all__ = [
    "DEFAULT_CANARY_STEPS",
    "Report",
    "StrategyError",
    "blue_green_deploy",
    "canary_deploy",
    "canary_plan",
    "new_version_app",
    "resume",
    "rollback",
]
