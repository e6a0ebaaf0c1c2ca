"""Which listening ports are free: probing before a reload (imperative, one bind per port).

A port another process holds breaks a reload for every port (~2 s), so before one the applier
leaves out the *new* frontends whose port is taken (:func:`leave_out_taken_ports`) and checks
again right before swapping (:func:`taken_ports`). Ports HAProxy already serves are not probed.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
from typing import Callable, NamedTuple, Optional

from sidecar.catalog import Skipped
from sidecar.haproxy_model import FrontendSpec, HAProxyModel

from .model_subsets import without_frontends

log = logging.getLogger(__name__)

ANY_ADDRESS = "0.0.0.0"  # noqa: S104 -- what an empty or "*" bind address means, never bound here
Endpoint = tuple[str, int]
Probe = Callable[[str, int], Optional[str]]

_BIND_LINE = re.compile(r"^\s*bind\s+(\S+)")


class PortCheck(NamedTuple):
    """A model without the frontends whose ports are taken, what it left out, and why."""

    model: HAProxyModel
    skipped: tuple[Skipped, ...] = ()
    problems: tuple[str, ...] = ()


def bind_endpoints(frontend: FrontendSpec) -> list[Endpoint]:
    """The (address, port) pairs a frontend listens on."""
    out: list[Endpoint] = []
    for bind in frontend.binds or ("127.0.0.1",):
        host, port = bind, frontend.port
        if bind.startswith("["):
            host, _, rest = bind[1:].partition("]")
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        elif bind.count(":") == 1:
            head, _, tail = bind.partition(":")
            if tail.isdigit():
                host, port = head, int(tail)
        if host in ("", "*"):
            host = ANY_ADDRESS
        out.append((host, port))
    return out


def model_binds(model: HAProxyModel) -> frozenset[Endpoint]:
    return frozenset(ep for fe in model.frontends for ep in bind_endpoints(fe))


def binds_in_config(text: str) -> frozenset[Endpoint]:
    """``bind addr:port`` lines of a config file (for an HAProxy we did not start)."""
    out = set()
    for line in text.splitlines():
        m = _BIND_LINE.match(line)
        if not m:
            continue
        addr, _, port = m.group(1).rpartition(":")
        if port.isdigit():
            out.add((addr.strip("[]") or ANY_ADDRESS, int(port)))
    return frozenset(out)


def port_problem(host: str, port: int) -> Optional[str]:
    """Try to bind ``host:port`` the way a plain listener would; None when it is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use"
            return f"{host}:{port} cannot be bound: {exc.strerror or exc}"
    return None


def taken_ports(
    model: HAProxyModel, current: frozenset[Endpoint], probe: Probe = port_problem
) -> list[str]:
    """Why the new listeners of ``model`` (not in ``current``) cannot bind; [] when all can."""
    problems = []
    for host, port in sorted(model_binds(model) - current):
        problem = probe(host, port)
        if problem:
            problems.append(problem)
    return problems


def leave_out_taken_ports(
    model: HAProxyModel, current: frozenset[Endpoint], probe: Probe = port_problem
) -> PortCheck:
    """The model without the new frontends whose ports another process holds.

    Only those frontends (and the apps behind them) wait; the daemon applies again later.
    """
    checked: dict[Endpoint, Optional[str]] = {}
    blocked: dict[str, str] = {}
    for fe in model.frontends:
        for endpoint in bind_endpoints(fe):
            if endpoint in current:
                continue
            if endpoint not in checked:
                checked[endpoint] = probe(*endpoint)
            problem = checked[endpoint]
            if problem:
                blocked[fe.name] = problem
                break
    if not blocked:
        return PortCheck(model)
    reduced = without_frontends(model, blocked)
    problems = tuple(sorted(set(blocked.values())))
    log.warning(
        "listeners left out, their ports are taken",
        extra={"frontends": sorted(blocked), "problems": list(problems)},
    )
    return PortCheck(reduced, reduced.skipped[len(model.skipped) :], problems)
