"""The emulated cluster's records: task states, agents, options, tasks, apps, deployments, errors.

Plain data; the behaviour lives in the other modules of :mod:`marathon_bridge.testing.state`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from marathon_bridge.errors import Issue
from marathon_bridge.testing.health import HealthResult
from marathon_bridge.testing.tasks import TaskProcess

Json = dict[str, Any]

STAGING = "TASK_STAGING"
RUNNING = "TASK_RUNNING"
KILLING = "TASK_KILLING"
KILLED = "TASK_KILLED"
FAILED = "TASK_FAILED"
FINISHED = "TASK_FINISHED"
UNREACHABLE = "TASK_UNREACHABLE"
ACTIVE_STATES = (STAGING, RUNNING)
CONDITIONS = {
    STAGING: "Staging",
    RUNNING: "Running",
    KILLING: "Killing",
    KILLED: "Killed",
    FAILED: "Failed",
    FINISHED: "Finished",
    UNREACHABLE: "Unreachable",
}
LOCKED_MESSAGE = (
    "App is locked by one or more deployments. Override with the option '?force=true'. "
    "View details at '/v2/deployments/<DEPLOYMENT_ID>'."
)
MAX_VERSIONS = 50


class PortsExhausted(Exception):
    """The emulated agent has no free host port left."""


class ApiError(Exception):
    """An error answer: HTTP status and Marathon's JSON body."""

    def __init__(
        self, status: int, body: Json, headers: Optional[Mapping[str, str]] = None
    ) -> None:
        super().__init__(f"{status} {body.get('message', '')}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def not_found_app(app_id: str) -> ApiError:
    return ApiError(404, {"message": f"App '{app_id}' does not exist"})


def issues_body(issues: Sequence[Issue]) -> ApiError:
    """422 for validation issues: type issues win ("Invalid JSON"), else "Object is not valid"."""
    type_issues = [i for i in issues if i.kind == "type"]
    chosen = type_issues or list(issues)
    grouped: dict[str, list[str]] = {}
    for issue in chosen:
        grouped.setdefault(issue.path or "/", []).append(issue.message)
    details = [{"path": path, "errors": errors} for path, errors in grouped.items()]
    message = "Invalid JSON" if type_issues else "Object is not valid"
    return ApiError(422, {"message": message, "details": details})


def invalid_json(path: str, key: str) -> ApiError:
    """422 "Invalid JSON" with one play-json error at ``path``."""
    return ApiError(422, {"message": "Invalid JSON", "details": [{"path": path, "errors": [key]}]})


@dataclass(frozen=True)
class Agent:
    """An emulated Mesos agent: the host name tasks report, its IP, its id."""

    host: str
    ip: str
    slave_id: str


@dataclass
class Options:
    """Behaviour knobs of the emulated cluster (see MarathonEmulator for their meaning)."""

    agent_host: str = "127.0.0.1"
    agent_ip: str = "127.0.0.1"
    slave_id: str = "emulated-agent-S0"
    task_start_delay: float = 0.05
    health_delay: float = 0.05
    health_grace: float = 1.0
    kill_grace: float = 0.2
    kill_timeout: float = 3.0
    deployment_delay: float = 0.0
    run_tasks: bool = False
    host_port_min: int = 31000
    host_port_max: int = 32000
    service_port_min: int = 10000
    service_port_max: int = 20000
    backoff_scale: float = 0.05
    keep_unknown_fields: bool = False
    kill_unhealthy: bool = False
    role: str = "*"
    agents: tuple[Agent, ...] = ()

    def agent_list(self) -> tuple[Agent, ...]:
        """The configured agents, or the single default one."""
        return self.agents or (Agent(self.agent_host, self.agent_ip, self.slave_id),)


@dataclass
class Task:
    """One task (one instance, incarnation 1)."""

    id: str
    instance_id: str
    app_id: str
    version: str
    config_version: str
    ports: list[int]
    staged_at: float
    staged_mono: float
    checks: list[Json]
    agent: Agent
    state: str = STAGING
    started_at: Optional[float] = None
    started_mono: Optional[float] = None
    killing_since: Optional[float] = None
    health: list[HealthResult] = field(default_factory=list)
    health_forced: bool = False
    healthy_reported: Optional[bool] = None
    process: Optional[TaskProcess] = None


@dataclass
class AppState:
    """An app with its history."""

    app: Json
    versions: dict[str, Json]
    last_failure: Optional[Json] = None
    launch_failures: int = 0
    next_launch_mono: float = 0.0
    since: float = field(default_factory=time.time)


@dataclass
class Deployment:
    """A deployment plan in progress."""

    id: str
    version: str
    steps: list[list[Json]]
    original: dict[str, Optional[Json]]
    started_mono: float
    current_step: int = 1

    @property
    def affected_apps(self) -> list[str]:
        seen: list[str] = []
        for step in self.steps:
            for action in step:
                if action["app"] not in seen:
                    seen.append(action["app"])
        return seen

    def plan_json(self) -> Json:
        return {
            "id": self.id,
            "steps": [{"actions": list(s)} for s in self.steps],
            "version": self.version,
        }
