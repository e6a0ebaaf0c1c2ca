"""deploy/grafana and deploy/prometheus name only metrics that exist.

A real sidecar (the ``marathon-sidecar`` command, a real HAProxy with its Prometheus exporter on,
the Marathon emulator with two echo tasks) and a real publisher (the ``marathon-publisher``
command, leading on a real ZooKeeper) are scraped on ``/metrics``; every metric name in the
dashboard's queries and in the rules' expressions must be one of them exports, one the rules
record, or ``up`` (Prometheus's own). No name is reserved for later work any more: the
descriptor budget's and the publisher's are exported, and each has a test below.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing.emulator import MarathonEmulator
from marathon_bridge.testing.tasks import echo_server_cmd
from testkit import free_ports, wait_until
from testkit.publisher import PublisherProcess
from testkit.zookeeper import ZooKeeperServer

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "marathon-sidecar.json"
RULES = ROOT / "deploy" / "prometheus" / "marathon-sidecar.rules.yml"

# The descriptor budget's names (issue 12): the sidecar must export them, its alerts read them.
DESCRIPTOR_BUDGET = frozenset(
    {
        "marathon_sidecar_fd_limit",
        "marathon_sidecar_fd_needed",
        "marathon_sidecar_maxconn_wanted",
        "marathon_sidecar_maxconn_effective",
    }
)
PROMETHEUS_OWN = frozenset({"up"})  # made by Prometheus for every target

PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "inf", "nan"}
)  # fmt: skip
STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.$])[A-Za-z_:][A-Za-z0-9_:]*")
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords or label names)."""
    text = STRINGS.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = LABEL_LISTS.sub(" ", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if word.lower() not in PROMQL_WORDS:
            names.add(word)
    return names


def variable_query_names(query: str) -> set[str]:
    """Names in a Grafana variable query: ``label_values(<selector>, label)`` or plain PromQL."""
    match = LABEL_VALUES.match(query)
    return metric_names(match.group(1) if match else query)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def dashboard_names() -> set[str]:
    names = set()
    for panel in dashboard_panels():
        for target in panel["targets"]:
            names |= metric_names(target["expr"])
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            names |= variable_query_names(query["query"] if isinstance(query, dict) else query)
    return names


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule_names() -> set[str]:
    return {name for rule in rules() for name in metric_names(str(rule["expr"]))}


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def exported_names(exposition: str) -> set[str]:
    """Every series name the exposition can carry, including families without samples yet."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                "_created"), "summary": ("_sum", "_count", "_created")}  # fmt: skip
    names = set()
    for family in text_string_to_metric_families(exposition):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
    return names


# --- the PromQL name reader itself ------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job="marathon-sidecar"} == 0', {"up"}),
        ('sum by (job) (rate(a_total{x=~"$instance"}[$__rate_interval]))', {"a_total"}),
        ("histogram_quantile(0.99, rate(d_bucket[5m]))", {"d_bucket"}),
        ('count by (job) (up{job="p"}) unless on (job) (leader == 1)', {"up", "leader"}),
        ("a / on(instance) group_left(version) b offset 5m > 1e3", {"a", "b"}),
        ("instance:x:rate5m > 0 and sum(y) without (op)", {"instance:x:rate5m", "y"}),
        ('max(z{l="by (x)"})', {"z"}),
    ],
)
def test_metric_names_reads_selectors_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_variable_queries_name_the_selector_not_the_label() -> None:
    assert variable_query_names("label_values(marathon_sidecar_haproxy_up, instance)") == {
        "marathon_sidecar_haproxy_up"
    }


# --- the dashboard as Grafana loads it ------------------------------------------------------------


def test_the_dashboard_is_a_loadable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_every_dashboard_query_uses_the_chosen_prometheus() -> None:
    for panel in dashboard_panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert metric_names(target["expr"]), (panel["title"], target["expr"])


def test_every_recorded_name_used_is_recorded() -> None:
    used = dashboard_names() | rule_names()
    assert {n for n in used if ":" in n} <= recorded_names()


# --- a running sidecar --------------------------------------------------------------------------


def http_text(url: str) -> str:
    """The body of a 200 answer; empty while nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode("utf-8"))
    except OSError:
        return ""


def sidecar_command() -> str:
    command = Path(sys.executable).with_name("marathon-sidecar")
    if not command.exists():
        pytest.fail(f"{command} is missing: the package is not installed (scripts/setup.sh)")
    return str(command)


@pytest.fixture(scope="module")
def exposition(
    haproxy_bin: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """/metrics of a sidecar routing one http app (two echo tasks) through a real HAProxy, followed
    by what HAProxy's own exporter serves on ``--haproxy-metrics-listen``."""
    work = tmp_path_factory.mktemp("metrics-sidecar")
    status, service, haproxy_metrics = free_ports(3)
    with MarathonEmulator(run_tasks=True, heartbeat_interval=1.0) as marathon:
        client = MarathonClient(marathon.url, timeout=(3.0, 10.0))
        app = {"id": "/metrics/web", "cmd": echo_server_cmd(), "instances": 2, "cpus": 0.01,
               "mem": 16, "portDefinitions": [{"port": service, "protocol": "tcp"}],
               "labels": {"HAPROXY_0_MODE": "http"}}  # fmt: skip
        client.create_app(app)
        env = {**os.environ, "MARATHON_SIDECAR_HAPROXY_BIN": haproxy_bin}
        argv = [sidecar_command(), "--marathon", marathon.url, "--state-dir", str(work / "state"),
                "--status-listen", f"127.0.0.1:{status}",
                "--haproxy-metrics-listen", f"127.0.0.1:{haproxy_metrics}"]  # fmt: skip
        with (work / "sidecar.log").open("wb") as log:
            proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                url = f"http://127.0.0.1:{status}/metrics"
                serving = 'marathon_sidecar_servers{state="ready"} 2.0'
                wait_until(lambda: serving in http_text(url), timeout=60)
                exporter = f"http://127.0.0.1:{haproxy_metrics}/metrics"
                yield http_text(url) + "\n" + wait_until(lambda: http_text(exporter), timeout=30)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                client.close()


@pytest.fixture(scope="module")
def publisher_exposition(
    zk_server: ZooKeeperServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """/metrics of a publisher that leads and has written one app's catalog into ZooKeeper."""
    work = tmp_path_factory.mktemp("metrics-publisher")
    with MarathonEmulator(heartbeat_interval=1.0) as marathon:
        with MarathonClient(marathon.url, timeout=(3.0, 10.0)) as client:
            client.create_app({"id": "/metrics/web", "cmd": "sleep 100", "instances": 1,
                               "cpus": 0.01, "mem": 16})  # fmt: skip
        zk_path = f"/t/{work.name}/services"  # this module's own catalog on the shared server
        publisher = PublisherProcess(work, "publisher", marathon.url, zk_server.address, zk_path)
        try:
            publisher.wait_health("leading", role="leader")
            written = "marathon_publisher_instances 1.0"
            wait_until(lambda: written in publisher.metrics_text(), timeout=60)
            yield publisher.metrics_text()
        finally:
            publisher.stop()


@pytest.mark.haproxy
def test_every_dashboard_and_rule_metric_is_exported(
    exposition: str, publisher_exposition: str
) -> None:
    exported = exported_names(exposition) | exported_names(publisher_exposition)
    used = dashboard_names() | rule_names()
    allowed = exported | recorded_names() | PROMETHEUS_OWN
    assert sorted(used - allowed) == []


def test_the_publisher_exports_what_the_rules_reserved_for_it(publisher_exposition: str) -> None:
    exported = exported_names(publisher_exposition)
    assert {"marathon_publisher_leader", "marathon_publisher_leader_changes_total"} <= exported
    used = {n for n in dashboard_names() | rule_names() if n.startswith("marathon_publisher_")}
    assert used <= exported


@pytest.mark.haproxy
def test_the_sidecar_exports_its_descriptor_budget(exposition: str) -> None:
    exported = exported_names(exposition)
    assert sorted(DESCRIPTOR_BUDGET - exported) == []
    assert dashboard_names() | rule_names() >= DESCRIPTOR_BUDGET, "a budget name nothing reads"


def source_names(names: set[str]) -> set[str]:
    """Recorded names replaced by the metrics their rules read."""
    recorded = {r["record"]: metric_names(str(r["expr"])) for r in rules() if "record" in r}
    return {source for name in names for source in recorded.get(name, {name})}


def test_the_dashboard_shows_every_alerting_metric() -> None:
    """What an alert fires on can be looked at on the dashboard (directly or recorded)."""
    alerting = {n for rule in rules() if "alert" in rule for n in metric_names(str(rule["expr"]))}
    missing = source_names(alerting) - source_names(dashboard_names()) - PROMETHEUS_OWN
    assert sorted(missing) == []
