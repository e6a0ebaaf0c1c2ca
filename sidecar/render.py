"""HAProxyModel -> haproxy.cfg text (pure).

The default template (``templates/haproxy.cfg.j2``) is rendered by Jinja2 with ``StrictUndefined``
and no autoescaping: every value that reaches the file was derived and checked by the builder
(:mod:`sidecar.desired`), so there is nothing to escape. The same output for the same model, byte
for byte: everything is sorted before it gets here.

:func:`server_line_options` is the single source of a server's keywords: the config file and the
runtime ``add server`` commands both use it (HAProxy 2.6 does not apply ``default-server`` to
dynamic servers, so every keyword is on the line, and only keywords ``add server`` accepts).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache, partial
from importlib import resources
from typing import Any, Callable, Optional

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sidecar.grammar import duration
from sidecar.haproxy_model import BackendSpec, FrontendSpec, HAProxyModel, RouteSpec, ServerSpec
from sidecar.render_settings import RenderSettings

TEMPLATE_NAME = "haproxy.cfg.j2"
STICKY_COOKIE = "MBSRV"
ACTIVE_TRANSITION_MS = 2000  # fastinter and downinter of an active check observing traffic


def default_template() -> str:
    """The text of the template shipped with the package."""
    return (resources.files("sidecar") / "templates" / TEMPLATE_NAME).read_text("utf-8")


@lru_cache(maxsize=8)
def _compile(template_text: str) -> jinja2.Template:
    # sandboxed: a user template (--template) must not reach Python internals or files
    env = ImmutableSandboxedEnvironment(
        autoescape=False,  # every value is derived and checked (module docstring)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    return env.from_string(template_text)


class RenderCache:
    """Optional memory between :func:`render_config` calls: the text of each section.

    A frontend or backend that :func:`sidecar.desired.build_model` reused (the same object, as
    it does with a :class:`~sidecar.desired.BuildCache`) is not formatted again. The text is
    identical with or without a cache.
    """

    def __init__(self) -> None:
        self._frontends: dict[int, tuple[FrontendSpec, str]] = {}
        self._backends: dict[int, tuple[BackendSpec, str]] = {}
        self._access_log = False  # what the cached frontend texts were rendered with

    def frontend_sections(self, frontends: tuple[FrontendSpec, ...], access_log: bool) -> str:
        if access_log != self._access_log:
            self._frontends, self._access_log = {}, access_log
        lines = partial(frontend_lines, access_log=access_log)
        self._frontends, text = _cached_sections(self._frontends, frontends, lines)
        return text

    def backend_sections(self, backends: tuple[BackendSpec, ...]) -> str:
        self._backends, text = _cached_sections(self._backends, backends, backend_lines)
        return text


def _cached_sections(
    known: dict[int, tuple[Any, str]], specs: tuple[Any, ...], lines: Callable[[Any], list[str]]
) -> tuple[dict[int, tuple[Any, str]], str]:
    kept: dict[int, tuple[Any, str]] = {}
    for spec in specs:
        hit = known.get(id(spec))
        if hit is None or hit[0] is not spec:
            hit = (spec, _section(spec.name, lines(spec)))
        kept[id(spec)] = hit
    return kept, "".join(text for _spec, text in kept.values())


def render_config(
    model: HAProxyModel,
    settings: RenderSettings,
    template: Optional[str] = None,
    cache: Optional[RenderCache] = None,
) -> str:
    """The config text for ``model``; ``template`` (Jinja2 source) replaces the default one."""
    compiled = _compile(template if template is not None else default_template())
    return compiled.render(**template_context(model, settings, cache))


def template_context(
    model: HAProxyModel, settings: RenderSettings, cache: Optional[RenderCache] = None
) -> dict[str, Any]:
    """What a template sees. Custom templates may use the objects or the pre-built lines."""
    access_log = settings.access_log is not None
    if cache is not None:
        frontend_sections = cache.frontend_sections(model.frontends, access_log)
        backend_sections = cache.backend_sections(model.backends)
    else:
        frontend_sections = "".join(_frontend_section(f, access_log) for f in model.frontends)
        keywords: _KeywordMemo = {}  # the server keywords of one render, shared by backends
        backend_sections = "".join(
            _section(b.name, _backend_lines(b, keywords)) for b in model.backends
        )
    return {
        "model": model,
        "settings": settings,
        "frontends": model.frontends,
        "backends": model.backends,
        "duration": duration,
        "address": address,
        "server_line": server_line,
        "frontend_lines": partial(frontend_lines, access_log=access_log),
        "backend_lines": backend_lines,
        "frontend_sections": frontend_sections,
        "backend_sections": backend_sections,
        "cookie_name": STICKY_COOKIE,
        "maxconn": model.maxconn if model.maxconn is not None else settings.maxconn,
    }


def _section(_name: str, lines: list[str]) -> str:
    return "\n" + "\n".join(lines) + "\n"


# --- pieces -----------------------------------------------------------------------------------


def address(ip: str, port: int) -> str:
    """``ip:port``, with brackets for IPv6."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def server_line_options(backend: BackendSpec, server: ServerSpec) -> list[str]:
    """Every keyword of the server's line after ``server <name> <addr>:<port>``.

    Used for the config file and, unchanged, for runtime ``add server``. The server's state is not
    a keyword: a dynamic server starts in maintenance and the applier sets ready/drain; in the
    file a draining server gets ``disabled`` (see :func:`server_line`). Sticky backends use
    HAProxy's dynamic cookies (``cookie ... dynamic``), since ``add server`` refuses ``cookie``;
    after adding servers to one, run ``enable dynamic-cookie backend <name>`` to give them theirs.
    """
    options = ["weight", str(server.weight)]
    active = backend.health_check
    passive = backend.passive_check
    if active is not None:
        options += ["check", "inter", duration(active.interval_ms)]
        if passive is not None:  # an active check's transitions go faster than its interval
            transition = duration(ACTIVE_TRANSITION_MS)
            options += ["fastinter", transition, "downinter", transition]
        options += ["rise", str(active.rise), "fall", str(active.fall)]
        if active.port is not None:
            options += ["port", str(active.port)]
    elif passive is not None:
        options += [
            "check",
            "inter",
            duration(passive.inter_ms),
            "fastinter",
            duration(passive.fastinter_ms),
            "downinter",
            duration(passive.downinter_ms),
            "rise",
            str(passive.rise),
            "fall",
            str(passive.fall),
        ]
    if passive is not None:
        options += ["observe", "layer4", "error-limit", str(passive.error_limit)]
        options += ["on-error", "mark-down"]
    return options


def server_line(backend: BackendSpec, server: ServerSpec) -> str:
    parts = ["server", server.name, address(server.address, server.port)]
    parts += server_line_options(backend, server)
    if server.state != "ready":
        parts.append("disabled")
    return " ".join(parts)


def cookie_key(backend: BackendSpec) -> str:
    """The dynamic-cookie key of a sticky backend: derived from its name, stable across reloads."""
    return hashlib.sha256(("marathon-sidecar:" + backend.name).encode()).hexdigest()[:32]


def frontend_lines(frontend: FrontendSpec, access_log: bool = False) -> list[str]:
    """The lines of a frontend section; ``access_log``: with HAProxy's http or tcp log format."""
    lines = [f"frontend {frontend.name}", f"    mode {frontend.mode}"]
    if frontend.mode == "http":
        lines.append("    option idle-close-on-response")
    if access_log:
        lines.append(f"    option {frontend.mode}log")
    lines += [f"    bind {address(ip, frontend.port)}" for ip in frontend.binds]
    for route in frontend.routes:
        lines.append(f"    use_backend {route.backend} if {route_condition(route)}")
    if frontend.default_backend is not None:
        lines.append(f"    default_backend {frontend.default_backend}")
    return lines


def _frontend_section(frontend: FrontendSpec, access_log: bool = False) -> str:
    """``_section(frontend.name, frontend_lines(frontend, access_log))``, in one step for the
    usual frontend (tcp, one bind address, a default backend, no routes)."""
    binds = frontend.binds
    ip = binds[0] if len(binds) == 1 else ":"
    if frontend.mode == "tcp" and ":" not in ip and not frontend.routes:
        default = frontend.default_backend
        if default is not None:
            log = "    option tcplog\n" if access_log else ""
            return (
                f"\nfrontend {frontend.name}\n    mode tcp\n{log}    bind {ip}:{frontend.port}\n"
                f"    default_backend {default}\n"
            )
    return _section(frontend.name, frontend_lines(frontend, access_log))


def route_condition(route: RouteSpec) -> str:
    """Anonymous ACLs for a vhost route: the Host (port removed, lowercased) and a path prefix."""
    condition = "{ req.hdr(host),host_only -m str " + " ".join(route.hosts) + " }"
    if route.path:
        condition += " { path_beg " + route.path + " }"
    return condition


def backend_lines(backend: BackendSpec) -> list[str]:
    return _backend_lines(backend, {})


# (server weight, id of the backend's health check, id of its passive check) -> the keywords of
# server_line_options(): nothing else decides them. Ids are only compared while the model that
# holds those objects is alive (one render).
_KeywordMemo = dict[tuple[int, int, int], str]


def _backend_lines(backend: BackendSpec, keywords: _KeywordMemo) -> list[str]:
    lines = [
        f"backend {backend.name}",
        f"    mode {backend.mode}",
        f"    balance {backend.balance}",
    ]
    if backend.balance in ("source", "uri"):
        lines.append("    hash-type consistent")
    if backend.mode == "http":
        # a task that stopped before its drain landed answers nothing: resend safe requests
        lines.append("    retry-on conn-failure empty-response")
        lines.append("    http-request disable-l7-retry if !METH_GET")
    if backend.sticky:
        lines.append(f"    cookie {STICKY_COOKIE} insert indirect nocache dynamic")
        lines.append(f"    dynamic-cookie-key {cookie_key(backend)}")
    check = backend.health_check
    if check is not None:
        if check.kind == "http":
            lines.append(f"    option httpchk GET {check.path}")
        lines.append(f"    timeout check {duration(check.timeout_ms)}")
    checks = (id(backend.health_check), id(backend.passive_check))
    for server in backend.servers:
        key = (server.weight, *checks)
        options = keywords.get(key)
        if options is None:
            options = keywords[key] = " ".join(server_line_options(backend, server))
        disabled = "" if server.state == "ready" else " disabled"
        ip = server.address
        where = f"{ip}:{server.port}" if ":" not in ip else f"[{ip}]:{server.port}"  # address()
        lines.append(f"    server {server.name} {where} {options}{disabled}")
    return lines
