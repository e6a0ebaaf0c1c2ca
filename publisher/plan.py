"""What to write for one service: the diff between the wanted catalog and what ZooKeeper holds.

Pure. The writer reads a service's state (`ServiceState`), asks `plan_service` for the operations
and commits them in transactions of at most `MAX_TRANSACTION_BYTES` (`batches`).

Rules (see sidecar/sources/zookeeper/layout.py for the layout):
- an instance is a child named after its JSON: an unchanged instance keeps its name and is never
  touched; a changed one is a delete of the old name plus a create of the new one, never set_data;
- only children whose decoded labels say `source: marathon-bridge` are ours to delete; plain
  (nerve) children and `base64_` children of other writers are left alone;
- a service is ours while its options node exists: it is created with the service's first write
  and deleted with its last, together with the service znode when no foreign child remains;
- in a split change, creates come before deletes, so a reader between two transactions sees the
  old and the new instances, never neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.layout import Instance, LayoutError

# jute.maxbuffer is 0xfffff bytes for a whole request; leave room for the multi's framing and the
# fencing check
MAX_TRANSACTION_BYTES = 900_000
OP_OVERHEAD_BYTES = 64  # op header, path and data lengths, the open ACL, flags


@dataclass(frozen=True)
class ServiceSpec:
    """What the catalog should hold for one service."""

    instances: frozenset[Instance]
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, instances: Iterable[Instance], options: Mapping[str, Any]) -> ServiceSpec:
        return cls(frozenset(instances), dict(options))


@dataclass(frozen=True)
class ServiceState:
    """What ZooKeeper holds for one service, as far as the publisher cares."""

    exists: bool = False
    children: frozenset[str] = frozenset()
    options: Optional[bytes] = None  # None: no options node (not ours)

    @property
    def owned_children(self) -> frozenset[str]:
        return frozenset(name for name in self.children if _is_owned(name))


@dataclass(frozen=True)
class Create:
    path: str
    data: bytes = b""


@dataclass(frozen=True)
class Delete:
    path: str


@dataclass(frozen=True)
class SetData:
    path: str
    data: bytes


Op = Union[Create, Delete, SetData]


def _is_owned(name: str) -> bool:
    decoded = layout.decode_child_name("", name)
    return isinstance(decoded, Instance) and decoded.owned


def plan_service(
    zk_path: str, service: str, current: ServiceState, wanted: Optional[ServiceSpec]
) -> list[Op]:
    """The operations that turn `current` into `wanted` (None: the service goes away)."""
    if wanted is None:
        return _plan_removal(zk_path, service, current)
    base = layout.service_path(zk_path, service)
    options = layout.options_json(wanted.options)
    names = {layout.child_name(i): checked(i) for i in wanted.instances}
    ops: list[Op] = []
    if not current.exists:
        ops.append(Create(base))
    options_at = layout.options_path(zk_path, service)
    if current.options is None:
        ops.append(Create(options_at, options))
    elif current.options != options:
        ops.append(SetData(options_at, options))
    for name in sorted(set(names) - current.children):
        ops.append(Create(f"{base}/{name}", layout.instance_json(names[name])))
    for name in sorted(current.owned_children - set(names)):
        ops.append(Delete(f"{base}/{name}"))
    return ops


def checked(instance: Instance) -> Instance:
    """An instance exactly as every reader will read it back, or LayoutError naming it."""
    try:
        read_back = layout.parse_instance(layout.instance_json(instance))
    except LayoutError as exc:
        raise LayoutError(f"instance {instance.name!r:.80}: {exc}") from exc
    if read_back != instance:
        raise LayoutError(f"instance {instance.name!r:.80} does not read back as written")
    return instance


def _plan_removal(zk_path: str, service: str, current: ServiceState) -> list[Op]:
    if current.options is None:
        return []  # never ours
    base = layout.service_path(zk_path, service)
    owned = current.owned_children
    ops: list[Op] = [Delete(f"{base}/{name}") for name in sorted(owned)]
    ops.append(Delete(layout.options_path(zk_path, service)))
    if current.exists and not current.children - owned:
        ops.append(Delete(base))
    return ops


def state_after(current: ServiceState, ops: Sequence[Op], service_path: str) -> ServiceState:
    """The service's state once `ops` are committed (what the writer caches)."""
    exists, children, options = current.exists, set(current.children), current.options
    prefix = service_path + "/"
    for op in ops:
        if op.path == service_path:
            exists = isinstance(op, Create)
        elif op.path.startswith(prefix):
            name = op.path[len(prefix) :]
            (children.add if isinstance(op, Create) else children.discard)(name)
        elif isinstance(op, (Create, SetData)):
            options = op.data
        else:
            options = None
    return ServiceState(exists, frozenset(children), options)


def op_size(op: Op) -> int:
    data = op.data if isinstance(op, (Create, SetData)) else b""
    return len(op.path.encode()) + len(data) + OP_OVERHEAD_BYTES


def batches(ops: Sequence[Op], limit: int = MAX_TRANSACTION_BYTES) -> list[list[Op]]:
    """`ops` in order, cut into transactions whose estimated size stays under `limit`."""
    result: list[list[Op]] = []
    current: list[Op] = []
    size = 0
    for op in ops:
        cost = op_size(op)
        if current and size + cost > limit:
            result.append(current)
            current, size = [], 0
        current.append(op)
        size += cost
    if current:
        result.append(current)
    return result
