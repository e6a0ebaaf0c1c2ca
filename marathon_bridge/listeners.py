"""Where each service is listened for on every node, as its labels say (pure).

What ``marathon-bridge services`` shows next to Marathon's view: the port clients use
(``HAPROXY_{n}_PORT``, a deployment group's shared port, else the service port), HAProxy's mode
(``HAPROXY_{n}_MODE``; ``http`` when ``HAPROXY_{n}_VHOST`` is set, else ``tcp``), the deployment
group and colour of group members, and the ports more than one app claims. The sidecar reads the
same labels (``sidecar/labels.py``, docs/labels.md); a label it would refuse shows here as
written, and ``/services`` on a node says what it really routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from marathon_bridge.deployment_groups import COLOUR_LABEL, GROUP_LABEL
from marathon_bridge.services import Service


@dataclass(frozen=True)
class Listener:
    """One service as HAProxy serves it: the port clients use, the mode, the group."""

    service: Service
    port: int
    mode: str  # http | tcp
    group: str = ""
    colour: str = ""


def _port_label(service: Service, suffix: str) -> str:
    return service.labels.get(f"HAPROXY_{service.port_index}_{suffix}", "").strip()


def listener(service: Service) -> Listener:
    port_text = _port_label(service, "PORT")
    port = int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else 0
    mode = _port_label(service, "MODE").lower()
    if mode not in ("http", "tcp"):
        mode = "http" if _port_label(service, "VHOST") else "tcp"
    return Listener(
        service=service,
        port=port or service.service_port,
        mode=mode,
        group=service.labels.get(GROUP_LABEL, "").strip(),
        colour=service.labels.get(COLOUR_LABEL, "").strip(),
    )


def listeners(services: Iterable[Service]) -> list[Listener]:
    """Every service's listener, by port then app id."""
    found = [listener(s) for s in services]
    return sorted(found, key=lambda x: (x.port, x.service.app_id, x.service.port_index))


def clashes(found: Sequence[Listener]) -> dict[int, list[str]]:
    """Ports claimed by more than one app (members of one deployment group share theirs):
    port -> the app ids. On every node only one of them gets the port."""
    claims: dict[int, dict[str, str]] = {}
    for item in found:
        owner = f"group:{item.group}" if item.group else item.service.app_id
        claims.setdefault(item.port, {}).setdefault(owner, item.service.app_id)
    return {
        port: sorted({x.service.app_id for x in found if x.port == port})
        for port, owners in sorted(claims.items())
        if len(owners) > 1
    }
