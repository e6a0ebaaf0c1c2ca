"""render_config and server_line_options: content, determinism, templates."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from sidecar.desired import BuildCache, build_model
from sidecar.haproxy_model import (
    BackendSpec,
    HAProxyModel,
    HealthCheckSpec,
    PassiveCheckSpec,
    ServerSpec,
)
from sidecar.render import (
    RenderCache,
    default_template,
    duration,
    render_config,
    server_line,
    server_line_options,
)
from sidecar.render_settings import RenderSettings
from sidecar.sources.marathon.model import MarathonState
from sidecar.sources.marathon.translate import MarathonTranslator, catalog_from_apps

HOSTS = {"agent1": "10.0.0.1", "agent2": "10.0.0.2"}


def host_app(app_id: str, port: int, tasks: Any = (), **extra: Any) -> dict[str, Any]:
    app = {"id": app_id, "portDefinitions": [{"port": port}], "tasks": list(tasks)}
    app.update(extra)
    return app


def running(task_id: str, host: str = "agent1", port: int = 31000, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "host": host, "ports": [port], "state": "TASK_RUNNING", **extra}


def cluster() -> list[dict[str, Any]]:
    return [
        host_app(
            "/web",
            10000,
            [running("web.1"), running("web.2", "agent2", 31001)],
            labels={"HAPROXY_0_VHOST": "web.example.com", "HAPROXY_0_STICKY": "true"},
        ),
        host_app(
            "/db", 10001, [running("db.1", "::1", 5432)], labels={"HAPROXY_0_BALANCE": "source"}
        ),
        host_app("/empty", 10002, []),
        host_app(
            "/checked",
            10003,
            [running("c.1", healthCheckResults=[{"alive": True}])],
            healthChecks=[{"protocol": "HTTP", "path": "/health", "intervalSeconds": 10}],
            labels={"HAPROXY_0_HEALTHCHECK": "true"},
        ),
    ]


def render(
    settings: RenderSettings,
    apps: list[dict[str, Any]] | None = None,
    previously_in: frozenset[str] = frozenset(),
) -> str:
    catalog = catalog_from_apps(cluster() if apps is None else apps, previously_in)
    model = build_model(catalog, settings, HOSTS.get)
    return render_config(model, settings)


def section(text: str, header: str) -> list[str]:
    lines = text.split("\n")
    start = lines.index(header)
    end = lines.index("", start)
    return lines[start:end]


def test_default_config_sections(
    tmp_settings: Callable[..., RenderSettings], assert_grammar: Callable[[str], None]
) -> None:
    settings = tmp_settings(vhost_port=8080)
    text = render(settings)
    assert_grammar(text)
    stats = f"    stats socket {settings.admin_socket} mode 600 level admin expose-fd listeners"
    assert stats in text
    assert "    hard-stop-after 30s" in text and "daemon" not in text
    assert f"    server-state-file {settings.server_state_file}" in text
    assert "    load-server-state-from-file global" in text
    assert "    option redispatch" in text and "    retries 3" in text
    assert section(text, "frontend fe_10001") == [
        "frontend fe_10001",
        "    mode tcp",
        "    bind 127.0.0.1:10001",
        "    default_backend be_db_10001",
    ]
    assert section(text, "backend be_db_10001") == [
        "backend be_db_10001",
        "    mode tcp",
        "    balance source",
        "    hash-type consistent",
        "    server db.1 [::1]:5432 weight 1 check inter 24h fastinter 10s downinter 10s"
        " rise 1 fall 2 observe layer4 error-limit 3 on-error mark-down",
    ]
    web = section(text, "backend be_web_10000")
    assert "    mode http" in web and "    cookie MBSRV insert indirect nocache dynamic" in web
    assert section(text, "frontend fe_vhost_8080") == [
        "frontend fe_vhost_8080",
        "    mode http",
        "    option idle-close-on-response",
        "    bind 127.0.0.1:8080",
        "    use_backend be_web_10000 if { req.hdr(host),host_only -m str web.example.com }",
    ]
    checked = section(text, "backend be_checked_10003")
    assert "    option httpchk GET /health" in checked and "    timeout check 10s" in checked
    assert any(" check inter 10s " in line for line in checked)


def test_backend_without_servers_is_still_rendered(
    tmp_settings: Callable[..., RenderSettings],
) -> None:
    text = render(tmp_settings())
    assert section(text, "backend be_empty_10002") == [
        "backend be_empty_10002",
        "    mode tcp",
        "    balance roundrobin",
    ]
    assert "    default_backend be_empty_10002" in text


def test_unchanged_model_gives_a_byte_identical_file(
    tmp_settings: Callable[..., RenderSettings],
) -> None:
    settings = tmp_settings(vhost_port=8080)
    first = render(settings)
    assert render(settings) == first
    assert render(settings, list(reversed(cluster()))) == first
    shuffled = [dict(a, tasks=list(reversed(a["tasks"]))) for a in cluster()]
    assert render(settings, shuffled) == first


def test_draining_server_is_written_disabled(tmp_settings: Callable[..., RenderSettings]) -> None:
    apps = [host_app("/a", 10000, [running("k", state="TASK_KILLING")])]
    text = render(tmp_settings(), apps, frozenset({"k"}))
    assert next(line for line in text.split("\n") if "server k " in line).endswith(" disabled")


def test_passive_checks_can_be_turned_off(tmp_settings: Callable[..., RenderSettings]) -> None:
    text = render(tmp_settings(passive_checks=False), [host_app("/a", 10000, [running("t")])])
    assert "    server t 10.0.0.1:31000 weight 1" in text.split("\n")


def test_server_line_options() -> None:
    server = ServerSpec("s", "10.0.0.1", 80, "s", weight=2)
    plain = BackendSpec("be", "/a", 1, "tcp", "roundrobin")
    assert server_line_options(plain, server) == ["weight", "2"]
    passive = BackendSpec(
        "be",
        "/a",
        1,
        "tcp",
        "roundrobin",
        passive_check=PassiveCheckSpec(30000, 1500, 2000, 2, 3, 5),
    )
    assert " ".join(server_line_options(passive, server)) == (
        "weight 2 check inter 30s fastinter 1500ms downinter 2s rise 2 fall 3"
        " observe layer4 error-limit 5 on-error mark-down"
    )
    active = BackendSpec(
        "be",
        "/a",
        1,
        "tcp",
        "roundrobin",
        health_check=HealthCheckSpec("http", "/h", 10000, 2000, 2, 4, port=8081),
    )
    assert (
        " ".join(server_line_options(active, server))
        == "weight 2 check inter 10s rise 2 fall 4 port 8081"
    )
    both = replace(active, passive_check=PassiveCheckSpec())  # transitions at the down interval
    assert " ".join(server_line_options(both, server)) == (
        "weight 2 check inter 10s fastinter 2s downinter 2s rise 2 fall 4 port 8081"
        " observe layer4 error-limit 3 on-error mark-down"
    )
    assert [duration(ms) for ms in (86_400_000, 7_200_000, 60_000, 90_000, 1_500)] == [
        "24h", "2h", "1m", "90s", "1500ms"
    ]  # fmt: skip
    assert server_line(active, ServerSpec("s", "::1", 80, "s", state="drain")).startswith(
        "server s [::1]:80 weight 1 check"
    )
    # "cookie" is refused by runtime `add server`, so it never appears on a server line
    sticky = BackendSpec(
        "be", "/a", 1, "http", "roundrobin", sticky=True, passive_check=PassiveCheckSpec()
    )
    assert "cookie" not in server_line_options(sticky, server)


def test_custom_template_sees_the_model(tmp_settings: Callable[..., RenderSettings]) -> None:
    template = "{% for b in backends %}{{ b.name }}:{{ b.servers|length }}\n{% endfor %}"
    model = build_model(catalog_from_apps(cluster()), tmp_settings(), HOSTS.get)
    assert (
        render_config(model, tmp_settings(), template)
        == "be_checked_10003:1\nbe_db_10001:1\nbe_empty_10002:0\nbe_web_10000:2\n"
    )
    custom = default_template().replace("    option dontlognull\n", "")
    assert "dontlognull" not in render_config(model, tmp_settings(), custom)


def test_empty_model_renders(
    tmp_settings: Callable[..., RenderSettings], assert_grammar: Callable[[str], None]
) -> None:
    text = render_config(HAProxyModel(), tmp_settings())
    assert_grammar(text)
    assert text.endswith("load-server-state-from-file global\n")


def test_render_cache_gives_the_same_text(tmp_settings: Callable[..., RenderSettings]) -> None:
    settings = tmp_settings(vhost_port=8080)
    translator, build_cache, text_cache = MarathonTranslator(), BuildCache(), RenderCache()
    state = MarathonState.from_apps(cluster())
    events = [
        ("status_update_event", {"appId": "/web", "taskId": "web.1", "taskStatus": "TASK_KILLED"}),
        (
            "status_update_event",
            {
                "appId": "/db",
                "taskId": "db.2",
                "taskStatus": "TASK_RUNNING",
                "host": "agent2",
                "ports": [5433],
            },
        ),
        ("app_terminated_event", {"appId": "/empty"}),
    ]
    for event_type, data in [("none", {}), *events]:
        if event_type != "none":
            state = state.apply_event(event_type, data).state
        model = build_model(translator.translate(state), settings, HOSTS.get, build_cache)
        assert render_config(model, settings, cache=text_cache) == render_config(model, settings)


def test_http_backends_resend_safe_requests_that_got_no_answer(
    tmp_settings: Callable[..., RenderSettings],
) -> None:
    http = BackendSpec("be_web_10000", "/web", 10000, "http", "roundrobin")
    tcp = BackendSpec("be_db_10001", "/db", 10001, "tcp", "roundrobin")
    text = render_config(HAProxyModel(backends=(http, tcp)), tmp_settings())
    retry = [
        "    retry-on conn-failure empty-response",
        "    http-request disable-l7-retry if !METH_GET",
    ]
    web = section(text, "backend be_web_10000")
    assert all(line in web for line in retry)
    assert not any(line in section(text, "backend be_db_10001") for line in retry)


# --- what operators tune (sidecar/tuning.py) ---------------------------------------------------


def frontend_log_options(text: str) -> dict[str, list[str]]:
    """Frontend name -> its ``option httplog``/``option tcplog`` lines."""
    out: dict[str, list[str]] = {}
    name = ""
    for line in text.split("\n"):
        if line.startswith("frontend "):
            name = line.split()[1]
            out[name] = []
        elif line.startswith("backend "):
            name = ""
        elif line in ("    option httplog", "    option tcplog") and name:
            out[name].append(line.split()[1])
    return out


def test_access_log_off_keeps_errors_on_stdout_and_no_log_format(
    tmp_settings: Callable[..., RenderSettings], assert_grammar: Callable[[str], None]
) -> None:
    text = render(tmp_settings(vhost_port=8080))
    assert_grammar(text)
    assert "    log stdout format raw local0 notice" in text.split("\n")
    assert "    log global" in section(text, "defaults")
    assert set(map(tuple, frontend_log_options(text).values())) == {()}


def test_access_log_on_stdout_gives_each_frontend_the_format_of_its_mode(
    tmp_settings: Callable[..., RenderSettings], assert_grammar: Callable[[str], None]
) -> None:
    text = render(tmp_settings(vhost_port=8080, access_log="stdout"))
    assert_grammar(text)
    assert section(text, "global")[2] == "    log stdout format raw local0 info"
    assert "notice" not in text
    assert frontend_log_options(text) == {
        "fe_10000": ["httplog"],
        "fe_10001": ["tcplog"],
        "fe_10002": ["tcplog"],
        "fe_10003": ["tcplog"],
        "fe_vhost_8080": ["httplog"],
    }


def test_access_log_to_syslog_keeps_errors_on_stdout_too(
    tmp_settings: Callable[..., RenderSettings], assert_grammar: Callable[[str], None]
) -> None:
    for target in ("127.0.0.1:514", "[::1]:5140", "/dev/log"):
        text = render(tmp_settings(access_log=target))
        assert_grammar(text)
        logs = [line for line in section(text, "global") if line.startswith("    log ")]
        assert logs == ["    log stdout format raw local0 notice", f"    log {target} local0 info"]
        assert frontend_log_options(text)["fe_10001"] == ["tcplog"]


def test_render_cache_follows_the_access_log_setting(
    tmp_settings: Callable[..., RenderSettings],
) -> None:
    model = build_model(catalog_from_apps(cluster()), tmp_settings(), HOSTS.get)
    cache = RenderCache()
    for access_log in (None, "stdout", None):
        settings = tmp_settings(access_log=access_log)
        assert render_config(model, settings, cache=cache) == render_config(model, settings)


def test_frontend_maxconn_and_timeouts_go_to_defaults(
    tmp_settings: Callable[..., RenderSettings], assert_grammar: Callable[[str], None]
) -> None:
    settings = tmp_settings(frontend_maxconn=1500, timeout_connect="3s", timeout_tunnel="2h")
    text = render(settings)
    assert_grammar(text)
    defaults = section(text, "defaults")
    assert "    maxconn 1500" in defaults
    assert "    timeout connect 3s" in defaults and "    timeout tunnel 2h" in defaults
    assert "    maxconn 4096" in section(text, "global")  # the global limit is not this one
    assert "    maxconn" not in "\n".join(section(render(tmp_settings()), "defaults"))


def test_frontend_maxconn_never_exceeds_the_global_maxconn_the_budget_left(
    tmp_settings: Callable[..., RenderSettings], assert_grammar: Callable[[str], None]
) -> None:
    settings = tmp_settings(frontend_maxconn=1500)
    model = build_model(catalog_from_apps(cluster()), settings, HOSTS.get)
    lowered = render_config(replace(model, maxconn=300), settings)  # the budget lowered it
    assert_grammar(lowered)
    assert "    maxconn 300" in section(lowered, "global")
    assert "    maxconn 300" in section(lowered, "defaults")
    roomy = render_config(replace(model, maxconn=8000), settings)
    assert "    maxconn 1500" in section(roomy, "defaults")


def test_metrics_listener_serves_the_exporter_and_optionally_the_stats_page(
    tmp_settings: Callable[..., RenderSettings], assert_grammar: Callable[[str], None]
) -> None:
    exporter = [
        "frontend sidecar_metrics",
        "    mode http",
        "    bind 127.0.0.1:9101",
        "    no log",
        "    http-request use-service prometheus-exporter if { path /metrics }",
    ]
    text = render(tmp_settings(metrics_listen="127.0.0.1:9101"))
    assert_grammar(text)
    assert section(text, "frontend sidecar_metrics") == exporter
    with_stats = render(tmp_settings(metrics_listen="127.0.0.1:9101", stats_page=True))
    assert section(with_stats, "frontend sidecar_metrics") == [
        *exporter,
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 10s",
    ]
    assert "sidecar_metrics" not in render(tmp_settings(stats_page=True))


def test_the_metrics_port_is_never_given_to_an_app(
    tmp_settings: Callable[..., RenderSettings],
) -> None:
    settings = tmp_settings(metrics_listen="127.0.0.1:10001")
    model = build_model(catalog_from_apps(cluster()), settings, HOSTS.get)
    assert "fe_10001" not in {f.name for f in model.frontends}
    assert any(s.app_id == "/db" for s in model.skipped)
    assert settings.fixed_listeners == ("127.0.0.1:10001",)


def test_haproxy_accepts_every_tuning_setting(
    tmp_settings: Callable[..., RenderSettings],
    haproxy_check: Callable[[str], Any],
) -> None:
    for access_log in ("stdout", "127.0.0.1:514", "[::1]:514", "/dev/log"):
        settings = tmp_settings(
            vhost_port=8080,
            access_log=access_log,
            frontend_maxconn=100,
            metrics_listen="[::1]:9101",
            stats_page=True,
            timeout_connect="500ms",
            timeout_check="2s",
        )
        result = haproxy_check(render(settings))
        assert result.returncode == 0, result.stderr
        assert "WARNING" not in result.stderr, result.stderr
