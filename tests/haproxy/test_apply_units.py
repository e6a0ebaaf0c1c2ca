"""Pure parts of sidecar.apply: error-to-app mapping (on real ``haproxy -c`` output), runtime
plans, bind endpoints, model subsets."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import replace
from pathlib import Path

from sidecar.apply import Applier
from sidecar.apply.model_subsets import without_apps, without_frontends
from sidecar.apply.ports import bind_endpoints, binds_in_config, port_problem
from sidecar.apply.runtime_plan import (
    passive_backends,
    plan_backend,
    server_state_for_reload,
    supports_dynamic_servers,
    wanted_admin_states,
)
from sidecar.apply.validation import blame_apps, config_sections
from sidecar.haproxy.runtime import (
    CMAINT,
    FDRAIN,
    FMAINT,
    ProcStatus,
    ReloadResult,
    RuntimeAPI,
    ServerState,
)
from sidecar.haproxy_model import (
    BackendSpec,
    FrontendSpec,
    HAProxyModel,
    HealthCheckSpec,
    PassiveCheckSpec,
    RouteSpec,
    ServerSpec,
    listener_signature,
)
from sidecar.render import render_config
from sidecar.render_settings import RenderSettings
from testkit import free_port
from testkit.fakes import FakeHAProxy


def backend(app: str, port: int, *servers: ServerSpec, **kw: object) -> BackendSpec:
    return BackendSpec(
        name=f"be_{port}",
        app_id=app,
        service_port=port,
        mode="http",
        balance=str(kw.pop("balance", "roundrobin")),
        servers=servers,
        **kw,  # type: ignore[arg-type]
    )


def frontend(port: int, default: str = "", routes: tuple[RouteSpec, ...] = ()) -> FrontendSpec:
    return FrontendSpec(
        name=f"fe_{port}",
        port=port,
        binds=("127.0.0.1",),
        mode="http",
        default_backend=default or None,
        routes=routes,
    )


def srv(name: str, port: int = 9000, **kw: object) -> ServerSpec:
    return ServerSpec(name=name, address="127.0.0.1", port=port, task_id=f"t.{name}", **kw)  # type: ignore[arg-type]


def state(name: str, admin: int = 0, weight: int = 1, port: int = 9000) -> ServerState:
    return ServerState(1, "be", 1, name, "127.0.0.1", 2, admin, weight, weight, 0, port)


def haproxy_check(haproxy_bin: str, tmp_path: Path, text: str) -> str:
    path = tmp_path / "candidate.cfg"
    path.write_text(text)
    proc = subprocess.run(
        [haproxy_bin, "-c", "-f", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    return proc.stderr


def model_with_bad_parts() -> HAProxyModel:
    good = backend("/good", 8001, srv("a"))
    bad_balance = backend("/bad-balance", 8002, srv("a"), balance="nope")
    dup = backend("/dup", 8003, srv("a"), srv("a", 9001))
    return HAProxyModel(
        frontends=(
            frontend(8001, good.name),
            frontend(8002, bad_balance.name),
            frontend(8003, dup.name),
        ),
        backends=(good, bad_balance, dup),
    )


def test_blame_maps_real_haproxy_errors_to_apps(haproxy_bin: str, tmp_path: Path) -> None:
    model = model_with_bad_parts()
    text = render_config(model, RenderSettings())
    errors = haproxy_check(haproxy_bin, tmp_path, text)
    blamed, complete = blame_apps(model, text, errors)
    assert "/good" not in blamed
    assert "/bad-balance" in blamed  # "parsing [file:LINE] : balance only supports ..."
    assert complete
    # the next round finds the duplicate server (reported by proxy name and line)
    rest = without_apps(model, blamed)
    text = render_config(rest, RenderSettings())
    errors = haproxy_check(haproxy_bin, tmp_path, text)
    assert blame_apps(rest, text, errors)[0] == {"/dup"}


def test_blame_narrows_a_shared_frontend_line_to_the_backend_it_names() -> None:
    a = backend("/a", 8001, srv("x"))
    b = backend("/b", 8002, srv("x"))
    shared = FrontendSpec(
        name="fe_vhost",
        port=80,
        binds=("127.0.0.1",),
        mode="http",
        routes=(RouteSpec(a.name, ("a.example",)), RouteSpec(b.name, ("b.example",))),
    )
    model = HAProxyModel(frontends=(shared,), backends=(a, b))
    text = render_config(model, RenderSettings())
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "use_backend be_8002" in t)
    errors = f"[ALERT]    (1) : config : parsing [x.cfg:{line}] : error detected while parsing"
    assert blame_apps(model, text, errors) == ({"/b"}, True)
    unmapped = "[ALERT]    (1) : config : parsing [x.cfg:2] : unknown keyword 'x' in 'global'"
    assert blame_apps(model, text, unmapped) == (set(), False)


def test_config_sections() -> None:
    text = "global\n    a\n\ndefaults\n    b\nfrontend fe_1\n    bind x\nbackend be_1\n    s\n"
    assert [(s.first_line, s.kind, s.name) for s in config_sections(text)] == [
        (1, "global", ""),
        (4, "defaults", ""),
        (6, "frontend", "fe_1"),
        (8, "backend", "be_1"),
    ]


def test_without_apps_drops_routes_and_empty_frontends() -> None:
    a = backend("/a", 8001, srv("x"))
    b = backend("/b", 8002, srv("x"))
    shared = FrontendSpec(
        name="fe_vhost",
        port=80,
        binds=("127.0.0.1",),
        mode="http",
        routes=(RouteSpec(a.name, ("a.example",)), RouteSpec(b.name, ("b.example",))),
    )
    model = HAProxyModel(frontends=(shared, frontend(8001, a.name)), backends=(a, b))
    rest = without_apps(model, ["/a"], reason="refused")
    assert [b.app_id for b in rest.backends] == ["/b"]
    assert [f.name for f in rest.frontends] == ["fe_vhost"]
    assert [r.backend for r in rest.frontends[0].routes] == ["be_8002"]
    assert [(s.app_id, s.reason) for s in rest.skipped] == [("/a", "refused")]
    assert without_apps(model, []) is model


def test_without_frontends_keeps_backends_another_frontend_serves() -> None:
    a = backend("/a", 8001, srv("x"))
    b = backend("/b", 8002, srv("x"))
    shared = FrontendSpec(
        name="fe_vhost",
        port=80,
        binds=("127.0.0.1",),
        mode="http",
        routes=(RouteSpec(a.name, ("a.example",)), RouteSpec(b.name, ("b.example",))),
    )
    model = HAProxyModel(
        frontends=(shared, frontend(8001, a.name), frontend(8002, b.name)), backends=(a, b)
    )
    own_port = without_frontends(model, {"fe_8002": "127.0.0.1:8002 is already in use"})
    assert [f.name for f in own_port.frontends] == ["fe_vhost", "fe_8001"]
    assert [b.app_id for b in own_port.backends] == ["/a", "/b"]  # still routed by the vhost
    assert [(s.app_id, s.reason) for s in own_port.skipped] == [
        ("/b", "its service port cannot be bound: 127.0.0.1:8002 is already in use")
    ]
    both = without_frontends(model, {"fe_8002": "taken", "fe_vhost": "taken too"})
    assert [b.app_id for b in both.backends] == ["/a"]
    assert [s.app_id for s in both.skipped] == ["/a", "/b"]
    assert without_frontends(model, {}) is model


def test_plan_adds_enables_and_drains() -> None:
    be = backend("/a", 8001, srv("new", check=True), srv("same"), srv("heavier", weight=3))
    running = [state("same"), state("heavier"), state("gone"), state("old", admin=FMAINT)]
    commands, drains, ready = plan_backend(be, running, lambda b, s: ["weight", str(s.weight)])
    assert commands == [
        "set server be_8001/heavier weight 3",
        "add server be_8001/new 127.0.0.1:9000 weight 1",
        "enable health be_8001/new",
        "set server be_8001/new state ready",
        "set server be_8001/gone state drain",
    ]
    assert [d.name for d in drains] == ["gone", "old"]  # "old" is in maintenance already
    assert ready == {"new", "same", "heavier"}


def test_plan_brings_back_a_drained_server_and_moves_a_changed_address() -> None:
    be = backend("/a", 8001, srv("back"), srv("moved", port=9100))
    running = [state("back", admin=FDRAIN | CMAINT), state("moved")]
    commands, drains, _ = plan_backend(be, running, lambda b, s: "")
    assert commands == [
        "set server be_8001/back state ready",
        "set server be_8001/moved addr 127.0.0.1 port 9100",
    ]
    assert drains == []


def test_plan_keeps_drain_state_servers_out_and_gives_sticky_backends_cookies() -> None:
    be = backend("/a", 8001, srv("going", state="drain"), srv("fresh"), sticky=True)
    commands, drains, ready = plan_backend(be, [state("going")], lambda b, s: "")
    assert commands[-1] == "enable dynamic-cookie backend be_8001"
    assert "set server be_8001/going state maint" in commands  # cookies must not reach it
    assert [d.name for d in drains] == ["going"] and ready == {"fresh"}
    idle = backend("/a", 8001, srv("going", state="drain"))
    assert plan_backend(idle, [], lambda b, s: "") == ([], [], set())


def test_dynamic_server_support_by_algorithm() -> None:
    assert supports_dynamic_servers(backend("/a", 1, balance="roundrobin"))
    assert supports_dynamic_servers(backend("/a", 1, balance="leastconn"))
    assert supports_dynamic_servers(
        backend("/a", 1, balance="source")
    )  # render: hash-type consistent
    assert not supports_dynamic_servers(backend("/a", 1, balance="static-rr"))
    assert not supports_dynamic_servers(backend("/a", 1, balance="hdr(host)"))


def test_bind_endpoints_and_binds_in_config() -> None:
    fe = FrontendSpec("fe", 8080, ("127.0.0.1", "10.0.0.1:9090", "[::1]", "*"), "http")
    assert bind_endpoints(fe) == [
        ("127.0.0.1", 8080),
        ("10.0.0.1", 9090),
        ("::1", 8080),
        ("0.0.0.0", 8080),
    ]
    text = "frontend fe\n    bind 127.0.0.1:8080\n    bind [::1]:81\nbackend b\n"
    assert binds_in_config(text) == {("127.0.0.1", 8080), ("::1", 81)}


def test_port_problem_sees_a_taken_port() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        assert port_problem("127.0.0.1", port) == f"127.0.0.1:{port} is already in use"
    assert port_problem("127.0.0.1", port) is None
    assert "cannot be bound" in (port_problem("192.0.2.77", port) or "")


def test_the_applier_signature_ignores_servers_only() -> None:
    model = HAProxyModel(
        frontends=(frontend(8001, "be_8001"),), backends=(backend("/a", 8001, srv("x")),)
    )
    more = replace(model, backends=(backend("/a", 8001, srv("x"), srv("y")),))
    other_mode = replace(model, backends=(replace(model.backends[0], mode="tcp"),))
    assert listener_signature(model) == listener_signature(more)
    assert listener_signature(model) != listener_signature(other_mode)


def test_no_reload_while_the_previous_one_is_unconfirmed(haproxy_bin: str, tmp_path: Path) -> None:
    port = free_port()
    be = backend("/a", port, srv("x"))
    model = HAProxyModel(frontends=(frontend(port, be.name),), backends=(be,))
    fake = FakeHAProxy(ReloadResult(False, message="reload not confirmed within 1.0s"))
    applier = Applier(
        fake,
        RuntimeAPI(str(tmp_path / "no-admin.sock"), timeout=0.5),
        str(tmp_path / "haproxy.cfg"),
        lambda m: render_config(m, RenderSettings()),
        haproxy_bin=haproxy_bin,
    )
    first = applier.apply(model)
    assert not first.ok and "not confirmed" in first.error and fake.reloads == 1
    second = applier.apply(model)
    assert not second.ok and "still unconfirmed" in second.error
    assert fake.reloads == 1  # no second reload on top of the unknown one
    fake.status = ProcStatus(None, (), (), 1, 0)  # the master answers again
    fake.reload_answer = ReloadResult(True, new_pid=4242)
    third = applier.apply(model)
    assert third.ok and third.reloaded and third.new_worker_pid == 4242
    assert fake.reloads == 2
    assert applier.counters.reloads == 1 and applier.counters.reload_failures == 1


def test_skip_reason_is_haproxys_message_without_file_and_line() -> None:
    from sidecar.apply.validation import first_alert

    error = (
        "[NOTICE]   (1) : haproxy version is 2.6.12\n"
        "[ALERT]    (1) : config : parsing [/tmp/.haproxy.cfg.x1.tmp:22] : balance only "
        "supports 'roundrobin', 'static-rr'.\n"
        "[ALERT]    (1) : config : Error(s) found in configuration file : /tmp/x\n"
    )
    assert first_alert(error) == "balance only supports 'roundrobin', 'static-rr'."
    other = "[ALERT]    (1) : config : Proxy 'fe_1': unable to find required default_backend: 'b'."
    assert first_alert(other) == "Proxy 'fe_1': unable to find required default_backend: 'b'."
    assert first_alert("") == "invalid configuration"


STATE_HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
    "srv_agent_port"
)


def state_line(backend: str, server: str, admin: int, health: int = 0, op: int = 2) -> str:
    return (
        f"3 {backend} 1 {server} 127.0.0.1 {op} {admin} 1 1 10 1 0 {health} 0 0 0 0 - 9000 - 0 0 "
        "- - 0"
    )


def test_running_passively_checked_servers_start_afresh_after_a_reload() -> None:
    """HAProxy 2.6 restores a running server at full health and then probes about half of
    them at once with the 24 h inter; without their lines they start as at a start."""
    passive = replace(
        backend("/p", 8001, srv("a"), srv("b"), srv("c", state="drain")),
        passive_check=PassiveCheckSpec(),
    )
    active = replace(
        backend("/h", 8002, srv("d")),
        passive_check=PassiveCheckSpec(),
        health_check=HealthCheckSpec(kind="http"),
    )
    model = HAProxyModel(backends=(passive, active))
    passive_names = passive_backends(model)
    assert passive_names == {passive.name}  # active checks keep their state: short intervals
    lines = [
        state_line(passive.name, "a", 0, health=2, op=2),  # up: started afresh
        state_line(passive.name, "b", 0, health=0, op=0),  # down: stays down
        state_line(passive.name, "c", FDRAIN, health=2, op=2),  # draining: keeps its line
        state_line(active.name, "d", 0, health=4, op=2),
    ]
    dump = "1\n" + STATE_HEADER + "\n" + "\n".join(lines) + "\n"
    kept = server_state_for_reload(dump, wanted_admin_states(model), passive_names)
    assert kept.splitlines() == ["1", STATE_HEADER, *lines[1:]]


def test_the_server_state_file_carries_only_admin_states_the_new_model_wants() -> None:
    sticky = backend("/s", 8002, srv("going", state="drain"), sticky=True)
    model = HAProxyModel(
        backends=(
            backend(
                "/a",
                8001,
                srv("ready"),
                srv("was-drained"),
                srv("was-maint"),
                srv("going", state="drain"),
            ),
            sticky,
        )
    )
    wanted = wanted_admin_states(model)
    assert wanted[("be_8001", "going")] == "drain" and wanted[("be_8002", "going")] == "maint"
    lines = [
        state_line("be_8001", "ready", CMAINT),  # "disabled" once, enabled at runtime: ready
        state_line("be_8001", "was-drained", FDRAIN),
        state_line("be_8001", "was-maint", FMAINT),
        state_line("be_8001", "going", FDRAIN),
        state_line("be_8001", "tombstone", FMAINT),
        state_line("be_8002", "going", FMAINT),
    ]
    dump = "1\n" + STATE_HEADER + "\n" + "\n".join(lines) + "\n"
    kept = server_state_for_reload(dump, wanted)
    assert kept.splitlines() == ["1", STATE_HEADER, lines[0], lines[3], lines[5]]
    assert (
        server_state_for_reload("1\n" + STATE_HEADER + "\n", wanted) == "1\n" + STATE_HEADER + "\n"
    )
