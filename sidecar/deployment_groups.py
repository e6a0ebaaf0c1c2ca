"""Deployment groups: two origin apps, one frontend and one backend (pure, source neutral).

Blue/green and canary deploys run the new version as a second app next to the old one. Each app
has its own service port, and both ask to bind the group's *shared* port (``bind_port``) and name
the same :class:`~sidecar.catalog.DeploymentGroup`. Every service that names the same group and
binds the same port is merged here: one frontend on the shared port, one backend named after the
group, holding the servers of every member. Traffic therefore splits by instance counts (every
server has weight 1), or by the member's group ``weight`` (0..256), which sets the weight of every
server of that member -- a server change the sidecar makes through the runtime API, without a
reload.

The member with the oldest ``started_at`` (then the lowest app id) is the *primary*: its options
(mode, balance, checks) are the backend's. The backend name depends on the group and the port
only, so it does not change when members come and go.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from sidecar.catalog import DeploymentGroup
from sidecar.haproxy_model import ServerSpec

ClaimKey = tuple[str, int]  # (app id, port index)


class Claim(NamedTuple):
    """A group member that wants a listener: its service and the port it binds."""

    app_id: str
    port_index: int
    bind_port: int
    group: DeploymentGroup


@dataclass(frozen=True)
class MergePlan:
    """How the builder merges group members.

    ``joined`` maps a member (app id, port index) to the primary it joins; ``backend_names`` gives
    each primary its group backend name; ``weights`` is the server weight per member app id.
    """

    joined: Mapping[ClaimKey, ClaimKey] = field(default_factory=dict)
    backend_names: Mapping[ClaimKey, str] = field(default_factory=dict)
    weights: Mapping[str, int] = field(default_factory=dict)

    def members_of(self, primary: ClaimKey) -> list[ClaimKey]:
        """The (app id, port index) pairs that joined ``primary``, sorted."""
        return sorted(key for key, target in self.joined.items() if target == primary)


def group_backend_name(group: str, bind_port: int) -> str:
    """The backend of a group on one port (group names are already HAProxy-safe)."""
    return f"be_dg_{group}_{bind_port}"


def plan_merges(claims: Iterable[Claim]) -> MergePlan:
    """Group the claims by (group, bind port): the oldest member of each is the primary."""
    by_key: dict[tuple[str, int], list[tuple[str, str, int]]] = {}
    weights: dict[str, int] = {}
    for claim in claims:
        group = claim.group
        by_key.setdefault((group.name, claim.bind_port), []).append(
            (group.started_at, claim.app_id, claim.port_index)
        )
        if group.weight is not None:
            weights[claim.app_id] = group.weight
    joined: dict[ClaimKey, ClaimKey] = {}
    names: dict[ClaimKey, str] = {}
    for (group_name, bind_port), entries in sorted(by_key.items()):
        ordered = sorted(entries)
        primary = (ordered[0][1], ordered[0][2])
        names[primary] = group_backend_name(group_name, bind_port)
        for _started, app_id, index in ordered[1:]:
            joined[(app_id, index)] = primary
    return MergePlan(joined, names, dict(sorted(weights.items())))


def merge_servers(
    parts: Sequence[tuple[str, Sequence[ServerSpec]]], weights: Mapping[str, int]
) -> tuple[ServerSpec, ...]:
    """The servers of every member app in one backend, sorted by name.

    ``parts`` is (app id, that app's servers); an app with a weight in ``weights`` gets it on every
    server. Names are task ids, unique across apps; a duplicate keeps the first.
    """
    out: dict[str, ServerSpec] = {}
    for app_id, servers in parts:
        weight = weights.get(app_id)
        for server in servers:
            if server.name in out:
                continue
            if weight is not None and server.weight != weight:
                server = server._replace(weight=weight)
            out[server.name] = server
    return tuple(out[name] for name in sorted(out))
