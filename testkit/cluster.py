"""Generated Marathon clusters (apps with their tasks, as ``GET /v2/apps?embed=apps.tasks``
gives them) for render tests and benchmarks; agents' names resolve through :data:`AGENTS`.

- :func:`generated_cluster`: ``count`` valid apps with running tasks, every one served: all
  host networking with the same labels (the benchmark's shape), ``unique_labels`` (a vhost
  each), or ``mixed`` networking modes, labels and health checks.
- :func:`messy_cluster`: seeded and deliberately messy, for equivalence checks of the render
  path. Every branch of labels, port specs, task selection and naming that build_model has shows
  up: each networking mode (current and legacy), several ports, every honored label with good
  and bad values, raw template and not-honored labels, health checks of each protocol, task
  states and health results, hosts that do not resolve, IPv6, odd task ids, port and name
  collisions.
- :func:`emulator_apps`: definitions for the emulator (simulated tasks), the same shape.
- :func:`wire_tasks`: a big ``GET /v2/tasks`` list shaped like Marathon 1.10's.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any, Callable, Optional

from testkit.examples import EXAMPLES

AGENT_COUNT = 100
AGENTS = {f"agent-{n}.example.com": f"10.1.{n // 200}.{n % 200 + 1}" for n in range(AGENT_COUNT)}
AGENTS["v6-agent.example.com"] = "fd00::17"

LABEL_VALUES: dict[str, list[Any]] = {
    "MODE": ["http", "tcp", "HTTP", " tcp ", "udp", "", 7],
    "BALANCE": ["roundrobin", "leastconn", "first", "random", "source", "uri", "static-rr", "x"],
    "PORT": ["0", "1", "65535", "65536", "12a", " 8080 ", "", "-1"],
    "BIND_ADDR": ["127.0.0.1", "10.0.0.9", "::1", "0.0.0.0", "nope", " 127.0.0.1 "],
    "VHOST": [
        "a.example.com",
        "A.Example.COM.",
        "a.example.com,b.example.com",
        "*.x.com",
        "",
        "bad_host.com",
        "1.2.3.4",
        "x" * 300,
    ],
    "PATH": ["/api", "/", "/a b", "api", "/v1/~x", "/" + "p" * 250],
    "BACKEND_WEIGHT": ["0", "5", "1000", "1001", "w"],
    "STICKY": ["true", "false", "TRUE", "yes"],
    "ENABLED": ["true", "false", " False ", "0"],
    "HEALTHCHECK": ["true", "false", "maybe"],
    "GROUP": ["internal", "external", "internal,external", ",,", "bad group", "a" * 70],
}
APP_LABELS: list[tuple[str, Any]] = [
    ("HAPROXY_GROUP", "internal"),
    ("HAPROXY_GROUP", "external"),
    ("HAPROXY_GROUP", "internal, external"),
    ("HAPROXY_GROUP", "bad group!"),
    ("HAPROXY_GROUP", 3),
    ("HAPROXY_DEPLOYMENT_GROUP", "blue"),
    ("HAPROXY_0_FRONTEND_HEAD", "bind *:80\n"),
    ("HAPROXY_0_SSL_CERT", "/etc/cert"),
    ("HAPROXY_12345_MODE", "http"),
    ("HAPROXY_1001_MODE", "http"),
    ("HAPROXY_7_MODE", "http"),
    ("HAPROXY_x_MODE", "http"),
    ("HAPROXYISH", "y"),
    ("OTHER_LABEL", "z"),
]
TASK_STATES = ["TASK_RUNNING"] * 8 + [
    "TASK_KILLING",
    "TASK_UNREACHABLE",
    "TASK_STAGING",
    "TASK_FAILED",
    None,
]


def _ports(rng: random.Random, n_ports: int, next_port: Callable[[], int]) -> list[int]:
    return [
        next_port() if rng.random() > 0.05 else rng.choice([0, 10005, 10010])
        for _ in range(n_ports)
    ]


def _app_shape(rng: random.Random, n_ports: int, next_port: Callable[[], int]) -> dict[str, Any]:
    service = _ports(rng, n_ports, next_port)
    kind = rng.randrange(8)
    protocol = rng.choice(["tcp"] * 6 + ["udp", "tcp,udp", "UDP,TCP"])
    if kind == 0:
        return {
            "networks": [{"mode": "host"}],
            "portDefinitions": [
                {"port": p, "protocol": protocol, "name": f"p{i}", "labels": {"VIP_0": "/x:80"}}
                for i, p in enumerate(service)
            ],
            "requirePorts": rng.random() < 0.2,
        }
    if kind == 1:
        return {"ports": service}  # legacy host ports
    if kind == 2:
        return {
            "networks": [{"mode": "container/bridge"}],
            "container": {
                "type": "DOCKER",
                "portMappings": [
                    {
                        "containerPort": 80 + i,
                        "hostPort": rng.choice([0, 0, None, 31555]),
                        "servicePort": p,
                        "protocol": protocol,
                    }
                    for i, p in enumerate(service)
                ],
            },
        }
    if kind == 3:
        return {
            "networks": [{"mode": "container", "name": "overlay"}],
            "container": {
                "type": "MESOS",
                "portMappings": [
                    {
                        "containerPort": 8080 + i,
                        "servicePort": p,
                        **({"hostPort": 0} if rng.random() < 0.3 else {}),
                    }
                    for i, p in enumerate(service)
                ],
            },
        }
    if kind == 4:
        return {
            "container": {
                "type": "DOCKER",
                "docker": {
                    "network": rng.choice(["BRIDGE", "USER", "HOST", "bridge"]),
                    "portMappings": [
                        {"containerPort": 90 + i, "hostPort": 0, "servicePort": float(p)}
                        for i, p in enumerate(service)
                    ],
                },
            }
        }
    if kind == 5:
        return {
            "ipAddress": {
                "discovery": {
                    "ports": [
                        {"number": 7000 + i, "name": f"d{i}", "protocol": "tcp"}
                        for i in range(n_ports)
                    ]
                }
            },
            "ports": service,
        }
    if kind == 6:
        return {
            "portDefinitions": [{"port": p} for p in service],
            "networks": "not a list" if rng.random() < 0.5 else [],
        }
    return {
        "portDefinitions": "broken" if rng.random() < 0.5 else [{"port": True}],
        "container": {"portMappings": None},
    }


def _labels(rng: random.Random, n_ports: int) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    if rng.random() < 0.3:
        return labels
    for key, value in rng.sample(APP_LABELS, rng.randrange(3)):
        labels[key] = value
    for index in range(n_ports + 1):
        for suffix in rng.sample(sorted(LABEL_VALUES), rng.randrange(5)):
            labels[f"HAPROXY_{index}_{suffix}"] = rng.choice(LABEL_VALUES[suffix])
    if rng.random() < 0.3:
        labels["HAPROXY_0_MODE"] = "http"
        labels["HAPROXY_0_VHOST"] = f"svc-{rng.randrange(50)}.example.com"
    return labels


def _health_checks(rng: random.Random) -> Optional[list[Any]]:
    roll = rng.random()
    if roll < 0.5:
        return None
    if roll < 0.55:
        return []
    checks: list[Any] = []
    for _ in range(rng.randrange(1, 3)):
        check: dict[str, Any] = {
            "protocol": rng.choice(["HTTP", "TCP", "MESOS_HTTP", "COMMAND", "HTTPS", None]),
            "path": rng.choice(["/health", "/ping?x=1", "/bad path", 5, "/"]),
            "intervalSeconds": rng.choice([30, 0, 1, 2.5, 100000, "x"]),
            "timeoutSeconds": rng.choice([20, 5, 60, None]),
            "maxConsecutiveFailures": rng.choice([3, 0, 7, 200, True]),
        }
        which = rng.random()
        if which < 0.6:
            check["portIndex"] = rng.choice([0, 0, 1])
        elif which < 0.8:
            check["port"] = 8080
        checks.append(check)
    if rng.random() < 0.1:
        checks.append("not a dict")
    return checks


def _task(rng: random.Random, app_id: str, t: int, n_ports: int, checked: bool) -> Any:
    stem = app_id.strip("/").replace("/", "_")
    roll = rng.random()
    if roll < 0.03:
        task_id: Any = f"{stem} weird#id{t}"
    elif roll < 0.05:
        task_id = "x" * 70 + str(t)
    elif roll < 0.06:
        task_id = None
    elif roll < 0.07:
        task_id = f"{stem}.same"
    else:
        task_id = f"{stem}.instance-{rng.getrandbits(40):010x}-{t}._app.{rng.randrange(1, 4)}"
    host_roll = rng.random()
    if host_roll < 0.04:
        host: Any = "unknown.example.com"
    elif host_roll < 0.06:
        host = "10.9.9." + str(rng.randrange(1, 255))
    elif host_roll < 0.07:
        host = "v6-agent.example.com"
    elif host_roll < 0.08:
        host = ""
    elif host_roll < 0.085:
        host = "bad host!"
    else:
        host = f"agent-{rng.randrange(40)}.example.com"
    ports: Any = [rng.randrange(31000, 32000) for _ in range(n_ports)]
    if rng.random() < 0.05:
        ports = ports[:-1]
    if rng.random() < 0.03:
        ports = [float(p) for p in ports]
    if rng.random() < 0.02:
        ports = [True] * n_ports
    task: dict[str, Any] = {
        "id": task_id,
        "appId": app_id,
        "host": host,
        "ports": ports,
        "startedAt": "2021-02-10T12:00:02.456Z",
    }
    state = rng.choice(TASK_STATES)
    if state is not None:
        task["state"] = state
    if rng.random() < 0.8:
        task["ipAddresses"] = [
            {
                "ipAddress": rng.choice(
                    [f"172.16.{rng.randrange(250)}.{rng.randrange(1, 250)}", "fd00::1:2", "garbage"]
                )
            }
        ]
    if checked:
        r = rng.random()
        if r < 0.6:
            task["healthCheckResults"] = [{"alive": True}]
        elif r < 0.75:
            task["healthCheckResults"] = [{"alive": False}]
        elif r < 0.9:
            task["healthCheckResults"] = []
        else:
            task["healthCheckResults"] = [{"alive": True}, "junk", {"alive": "yes"}]
    return task


def messy_cluster(count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` apps (with a few broken entries), reproducible from ``seed``."""
    rng = random.Random(seed)
    counter = iter(range(10000, 60000))

    def next_port() -> int:
        return next(counter)

    apps: list[dict[str, Any]] = []
    for i in range(count):
        n_ports = rng.choice([1, 1, 1, 2, 3])
        app = _app_shape(rng, n_ports, next_port)
        group = f"team-{i % 17}"
        app["id"] = (
            rng.choice(
                [
                    f"/{group}/svc-{i}",
                    f"/{group}/svc_{i}",
                    f"/{group}/a b {i}",
                    f"/{group}/" + "long" * 20 + str(i),
                ]
            )
            if rng.random() < 0.1
            else (f"/{group}/svc-{i}")
        )
        labels = _labels(rng, n_ports)
        if labels or rng.random() < 0.5:
            app["labels"] = labels
        checks = _health_checks(rng)
        if checks is not None:
            app["healthChecks"] = checks
        app["tasks"] = [
            _task(rng, app["id"], t, n_ports, bool(checks))
            for t in range(rng.choice([0, 1, 3, 3, 3, 5]))
        ]
        apps.append(app)
    # a couple of name collisions: "/a/b" and "/a_b" give the same backend stem
    apps.append({"id": "/coll/x", "portDefinitions": [{"port": 61000}], "tasks": []})
    apps.append(
        {
            "id": "/coll_x",
            "portDefinitions": [{"port": 61000}],
            "labels": {"HAPROXY_0_PORT": "61002"},
            "tasks": [],
        }
    )
    apps.extend(_deployment_groups(rng))
    return apps


def _deployment_groups(rng: random.Random) -> list[dict[str, Any]]:
    """Blue/green pairs sharing a bind port, with weights, start times and bad values."""
    apps: list[dict[str, Any]] = []
    for g in range(12):
        for member in range(rng.choice([1, 2, 2, 3])):
            labels: dict[str, Any] = {
                "HAPROXY_DEPLOYMENT_GROUP": rng.choice([f"dg{g}", f"dg{g}", "bad group"]),
                "HAPROXY_0_PORT": str(62000 + g),
                "HAPROXY_DEPLOYMENT_STARTED_AT": rng.choice(
                    ["2021-02-10T12:00:02.456Z", "2021-03-10T12:00:02.456Z", "garbage!", 5]
                ),
            }
            if rng.random() < 0.5:
                labels["HAPROXY_DEPLOYMENT_WEIGHT"] = rng.choice(["0", "10", "256", "300", "x"])
            app_id = f"/dg/app-{g}-{member}"
            apps.append(
                {
                    "id": app_id,
                    "portDefinitions": [{"port": 63000 + g * 10 + member}],
                    "labels": labels,
                    "tasks": [_task(rng, app_id, t, 1, False) for t in range(2)],
                }
            )
    for member, weight in enumerate(("0", "3")):  # one group with known weights, always
        app_id = f"/dg/fixed-{member}"
        labels = {
            "HAPROXY_DEPLOYMENT_GROUP": "fixed",
            "HAPROXY_0_PORT": "62999",
            "HAPROXY_DEPLOYMENT_WEIGHT": weight,
        }
        apps.append(
            {
                "id": app_id,
                "portDefinitions": [{"port": 63900 + member}],
                "labels": labels,
                "tasks": [_task(rng, app_id, t, 1, False) for t in range(2)],
            }
        )
    apps.append(
        {
            "id": "/checked/http",
            "portDefinitions": [{"port": 63990}],
            "labels": {"HAPROXY_0_HEALTHCHECK": "true", "HAPROXY_0_MODE": "http"},
            "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0}],
            "tasks": [_task(rng, "/checked/http", t, 1, True) for t in range(3)],
        }
    )
    apps.append(
        {
            "id": "/dg/weight-only",
            "portDefinitions": [{"port": 63999}],
            "labels": {"HAPROXY_DEPLOYMENT_WEIGHT": "5"},
            "tasks": [],
        }
    )
    return apps


def previously_in_of(apps: list[dict[str, Any]], seed: int) -> frozenset[str]:
    rng = random.Random(seed + 1)
    return frozenset(
        t["id"] for a in apps for t in a["tasks"] if isinstance(t["id"], str) and rng.random() < 0.5
    )


# ----------------------------------------------------------------------------- valid clusters


def generated_cluster(
    count: int, *, tasks_per_app: int = 3, unique_labels: bool = False, mixed: bool = False
) -> list[dict[str, Any]]:
    """``count`` apps on service ports 10000 and up, ``tasks_per_app`` running tasks each on
    the agents of :data:`AGENTS`; every app is valid and served (see the module's text)."""
    apps = []
    for i in range(count):
        app = _mixed_shape(i) if mixed else _host_shape(i, unique_labels)
        app["id"] = f"/team-{i // 100}/svc-{i}"
        app["instances"] = tasks_per_app
        app["tasks"] = [_running_task(app["id"], i, t, mixed) for t in range(tasks_per_app)]
        apps.append(app)
    return apps


# Marathon-level health checks the emulator does not probe: it reports them passing once a task
# runs, and a test sets them with ``set_task_health`` (simulated tasks run no process)
COMMAND_HEALTH_CHECK: dict[str, Any] = {
    "protocol": "COMMAND",
    "command": {"value": "true"},
    "gracePeriodSeconds": 10,
    "intervalSeconds": 30,
    "maxConsecutiveFailures": 0,
}


def emulator_apps(count: int, *, first_port: int, instances: int = 3) -> list[dict[str, Any]]:
    """``count`` app definitions for the emulator, shaped as :func:`generated_cluster`'s (host
    networking, the same labels), on service ports ``first_port`` and up: ``args`` and no ``cmd``
    (the emulator runs only a ``cmd``: these tasks are simulated) and a COMMAND health check
    (:data:`COMMAND_HEALTH_CHECK`)."""
    apps = []
    for i in range(count):
        app = _host_shape(i, unique_labels=False)
        app["portDefinitions"][0]["port"] = first_port + i
        app["id"] = f"/team-{i // 100}/svc-{i}"
        app["instances"] = instances
        app["args"] = ["sleep", "infinity"]
        app["healthChecks"] = [dict(COMMAND_HEALTH_CHECK)]
        apps.append(app)
    return apps


def _host_shape(i: int, unique_labels: bool) -> dict[str, Any]:
    labels = {"HAPROXY_GROUP": "internal", "HAPROXY_0_BALANCE": "leastconn"}
    if unique_labels:
        labels["HAPROXY_0_VHOST"] = f"app-{i}.group-{i // 100}.example.com"
    return {
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 10000 + i, "protocol": "tcp", "name": "http"}],
        "labels": labels,
    }


def _mixed_shape(i: int) -> dict[str, Any]:
    """Host, bridge, container networking and legacy ports with HTTP checks, in turn."""
    kind = i % 4
    if kind == 0:
        return {"networks": [{"mode": "host"}], "portDefinitions": [{"port": 10000 + i}]}
    if kind == 1:
        mapping = {"containerPort": 80, "hostPort": 0, "servicePort": 10000 + i}
        return {
            "networks": [{"mode": "container/bridge"}],
            "container": {"type": "DOCKER", "portMappings": [mapping]},
        }
    if kind == 2:
        return {
            "networks": [{"mode": "container", "name": "overlay"}],
            "container": {
                "type": "MESOS",
                "portMappings": [{"containerPort": 8080, "servicePort": 10000 + i}],
            },
            "labels": {"HAPROXY_0_MODE": "http", "HAPROXY_0_VHOST": f"svc-{i}.example.com"},
        }
    return {
        "portDefinitions": [{"port": 10000 + i}],
        "labels": {
            "HAPROXY_0_BALANCE": "leastconn",
            "HAPROXY_0_HEALTHCHECK": "true",
            "HAPROXY_0_STICKY": "true",
            "HAPROXY_0_MODE": "http",
        },
        "healthChecks": [
            {"protocol": "HTTP", "path": "/health", "portIndex": 0, "intervalSeconds": 30}
        ],
    }


def _running_task(app_id: str, i: int, t: int, mixed: bool) -> dict[str, Any]:
    """A running task; with container addresses and a passing check in a ``mixed`` cluster."""
    stem = app_id.strip("/").replace("/", "_")
    task = {
        "id": f"{stem}.instance-{i:06d}-{t}._app.1",
        "appId": app_id,
        "host": f"agent-{(i + t) % AGENT_COUNT}.example.com",
        "ports": [31000 + (i * 3 + t) % 1000],
        "ipAddresses": [{"ipAddress": f"172.{16 + t}.{i // 250 % 250}.{i % 250 + 1}"}],
        "state": "TASK_RUNNING",
        "startedAt": "2021-02-10T12:00:02.456Z",
        "version": "2021-02-10T11:59:59.000Z",
        "healthCheckResults": [{"alive": True}] if mixed else [],
    }
    if not mixed:
        del task["ipAddresses"]
    return task


# ----------------------------------------------------------------------------- /v2/tasks

TASK_TEMPLATE = EXAMPLES / "derived-from-code" / "task.running.with-health.v1.10.json"


def wire_tasks(count: int, apps: int = 500) -> list[dict[str, Any]]:
    """``count`` distinct running tasks shaped like Marathon 1.10's (with health results),
    spread over ``apps`` apps, from the example task in tests/fixtures."""
    template = json.loads(TASK_TEMPLATE.read_text())
    tasks = []
    for i in range(count):
        app = i % apps
        task = copy.deepcopy(template)
        uuid = f"{i:08x}-6c8e-11eb-9c2c-0242ac110002"
        instance = f"team{app % 20}_svc{app}.instance-{uuid}"
        task["appId"] = f"/team{app % 20}/svc{app}"
        task["id"] = f"{instance}._app.1"
        task["host"] = f"agent{i % 300}.mesos"
        task["slaveId"] = f"abcd-{i % 300:04d}-S0"
        task["ports"] = [31000 + i % 1000, 32000 + i % 1000]
        task["servicePorts"] = [10000 + app, 10500 + app]
        task["ipAddresses"] = [
            {"ipAddress": f"10.0.{i // 250 % 250}.{i % 250}", "protocol": "IPv4"}
        ]
        task["healthCheckResults"][0]["instanceId"] = instance
        tasks.append(task)
    return tasks
