"""Runtime API plans: the commands that bring a backend's running servers to the model (pure).

Additions come first, so a backend never passes through an empty state while one server replaces
another. A new server is ``add server`` + ``enable health`` (when it has a check) + ``set server
... state ready`` (dynamic servers start in maintenance); a weight change is ``set weight``; a
server the model no longer wants ready is set to ``drain`` (``maint`` on sticky backends) and
handed to the drain registry (:mod:`sidecar.apply.drains`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Callable, NamedTuple, Union

from sidecar.grammar import BALANCES
from sidecar.haproxy.runtime import (
    ServerState,
    add_server_command,
    parse_servers_state,
    set_state_command,
)
from sidecar.haproxy_model import BackendSpec, HAProxyModel, ServerSpec

# balance algorithms that accept "add server" in 2.6; source/uri only with "hash-type consistent",
# which sidecar.render emits for them (with another template a refused add falls back to a reload)
DYNAMIC_BALANCE = frozenset(BALANCES)

ServerOptions = Callable[[BackendSpec, ServerSpec], Union[str, Sequence[str]]]


class BackendPlan(NamedTuple):
    """What :func:`plan_backend` decided for one backend."""

    commands: list[str]
    to_drain: list[ServerState]  # running servers the model no longer wants ready
    ready: set[str]  # names now wanted in rotation


def supports_dynamic_servers(backend: BackendSpec) -> bool:
    """Can HAProxy 2.6 ``add server`` to this backend (a dynamic load-balancing algorithm)?

    Sticky backends qualify: the renderer uses dynamic cookies, not a ``cookie`` per server.
    """
    words = backend.balance.split()
    return bool(words) and words[0] in DYNAMIC_BALANCE


def options_text(options: Union[str, Sequence[str]]) -> str:
    return options if isinstance(options, str) else " ".join(options)


def plan_backend(
    backend: BackendSpec, running: Sequence[ServerState], options_for: ServerOptions
) -> BackendPlan:
    """The runtime commands that bring ``running`` to ``backend``'s servers."""
    have = {s.name: s for s in running}
    commands: list[str] = []
    ready: set[str] = set()
    added = False
    be = backend.name
    for spec in sorted(backend.servers, key=lambda s: s.name):
        if spec.state != "ready":
            continue
        ready.add(spec.name)
        current = have.get(spec.name)
        if current is None:
            commands += _add_commands(backend, spec, options_for)
            added = True
        else:
            commands += _update_commands(be, spec, current)
    # "drain" keeps a server out of load balancing, but requests carrying its persistence cookie
    # still reach it: on sticky backends a going server goes to "maint" at once, and
    # "option redispatch" sends such requests elsewhere. Requests in flight finish either way.
    going = "maint" if backend.sticky else "drain"
    to_drain: list[ServerState] = []
    for name, current in sorted(have.items()):
        if name in ready:
            continue
        if current.admin == "ready" or (going == "maint" and current.admin == "drain"):
            commands.append(set_state_command(be, name, going))
        to_drain.append(current)
    if added and backend.sticky:
        commands.append(f"enable dynamic-cookie backend {be}")  # cookies for the new servers
    return BackendPlan(commands, to_drain, ready)


def _add_commands(backend: BackendSpec, spec: ServerSpec, options_for: ServerOptions) -> list[str]:
    be, name = backend.name, spec.name
    options = options_text(options_for(backend, spec))
    commands = [add_server_command(be, name, spec.address, spec.port, options)]
    if spec.check:
        commands.append(f"enable health {be}/{name}")
    commands.append(set_state_command(be, name, "ready"))
    return commands


def _update_commands(be: str, spec: ServerSpec, current: ServerState) -> list[str]:
    name = spec.name
    commands = []
    if current.address != spec.address or current.port != spec.port:
        commands.append(f"set server {be}/{name} addr {spec.address} port {spec.port}")
    if current.uweight != spec.weight:
        commands.append(f"set server {be}/{name} weight {spec.weight}")
    if current.admin != "ready":
        commands.append(set_state_command(be, name, "ready"))
    return commands


def wanted_admin_states(model: HAProxyModel) -> dict[tuple[str, str], str]:
    """(backend, server) -> the admin state the model wants: ``ready``, ``drain`` or ``maint``
    (a going server of a sticky backend, see :func:`plan_backend`)."""
    out: dict[tuple[str, str], str] = {}
    for backend in model.backends:
        going = "maint" if backend.sticky else "drain"
        for server in backend.servers:
            out[(backend.name, server.name)] = "ready" if server.state == "ready" else going
    return out


def passive_backends(model: HAProxyModel) -> frozenset[str]:
    """The backends checked passively only (a passive check and no active one)."""
    return frozenset(
        b.name for b in model.backends if b.passive_check is not None and b.health_check is None
    )


def server_state_for_reload(
    dump: str, wanted: Mapping[tuple[str, str], str], passive: Collection[str] = ()
) -> str:
    """The ``show servers state`` dump with only the lines whose admin state is what the new
    config wants, less the servers of ``passive`` backends (:func:`passive_backends`) that are
    ready and running.

    HAProxy restores a server's admin state from this file after a reload; a stale drain or
    maint would keep a server the new model wants ready out of rotation until the runtime sync
    after the reload (a moment with no server at all when it was the last one). A server the
    new config does not have, or whose state differs, loses its line: the new worker then
    starts it as the config says (no ``disabled``: ready; ``disabled``: maint). Lines that
    match keep the old worker's operational and health-check state (a server that was DOWN
    stays down), but for the running servers of passively checked backends: HAProxy 2.6
    restores a running server at full health whatever the file says, and schedules the first
    check of each server at ``interval x position / servers`` in an ``int`` of milliseconds,
    which overflows with the passive ``inter`` (24 h): about half the servers would be probed
    at once after every reload (measured: bench/bench_probes.py). Without its line such a
    server starts as at a start, up and one good check short of full health, where its
    interval is ``fastinter`` (10 s): the first checks spread over it (docs/health.md).
    """
    out: list[str] = []
    header: list[str] = []
    for line in dump.splitlines():
        if line.startswith("#"):
            header = line.lstrip("#").split()
        if not header or line.startswith("#") or not line.strip():
            out.append(line)
            continue
        parsed = parse_servers_state("# " + " ".join(header) + "\n" + line)
        if not parsed:
            continue
        state = parsed[0]
        if wanted.get((state.backend, state.name)) != state.admin:
            continue
        if state.backend in passive and state.admin == "ready" and state.operational == "running":
            continue  # started as at a start: its first probe within fastinter
        out.append(line)
    return "\n".join(out) + "\n"
