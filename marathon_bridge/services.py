"""Marathon state -> services and their endpoints (pure functions on plain data).

Input is Marathon's own JSON: app dicts as ``GET /v2/apps?embed=apps.tasks`` returns them (each
with a ``tasks`` list). Output is one :class:`Service` per (app, service port), each listing the
:class:`Endpoint` of every task that the ``accept`` predicate lets in. The sidecar passes its own
predicate (health rules); the default keeps ``TASK_RUNNING`` tasks only.

Networking modes covered:
- host (``portDefinitions``; legacy ``ports``): endpoint = task ``host`` : task ``ports[i]``
- container/bridge (``container.portMappings`` or legacy ``container.docker.portMappings``):
  endpoint = task ``host`` : task host port of mapping i
- container (IP-per-task; legacy ``ipAddress``): endpoint = task ``ipAddresses[0]`` :
  ``containerPort`` of mapping i, or task ``host`` : host port when the mapping has a ``hostPort``
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

App = Mapping[str, Any]
Task = Mapping[str, Any]
TaskPredicate = Callable[[App, Task], bool]

HOST = "host"
BRIDGE = "container/bridge"
CONTAINER = "container"


@dataclass(frozen=True)
class PortSpec:
    """One port of an app definition, in the order Marathon numbers them (``portIndex``)."""

    index: int
    service_port: int
    protocol: str = "tcp"
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    container_port: Optional[int] = None
    host_port: Optional[int] = None


@dataclass(frozen=True)
class Endpoint:
    """Where one task serves one port. ``address`` is what to connect to (host name or IP)."""

    task_id: str
    address: str
    port: int
    host: str = ""
    state: str = ""
    healthy: Optional[bool] = None
    version: str = ""


@dataclass(frozen=True)
class Service:
    """One service port of one app and the endpoints behind it."""

    app_id: str
    service_port: int
    port_index: int
    network_mode: str
    protocol: str = "tcp"
    port_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    port_labels: Mapping[str, str] = field(default_factory=dict)
    endpoints: tuple[Endpoint, ...] = ()
