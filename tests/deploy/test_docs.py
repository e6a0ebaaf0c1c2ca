"""docs/operations.md and docs/migrating-from-marathon-lb.md stay true to the code.

Metric names, flags, environment variables and labels named in the operator docs are checked
against the sidecar's and the publisher's metrics registries and argument parsers and the label
registry, so renaming one of them fails here until the docs follow. The suggested Prometheus
rules must parse and only use metrics that exist.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from marathon_bridge.cli import build_parser as cli_parser
from publisher import settings as publisher_settings
from publisher.metrics import PublisherFigures, PublisherMetrics
from sidecar.haproxy_model import HAProxyModel
from sidecar.metrics import SidecarMetrics
from sidecar.render import template_context
from sidecar.render_settings import RenderSettings
from sidecar.settings import CONFIG_ENV, OPTIONS
from sidecar.sources.marathon.labels import DEPLOYMENT_LABELS, LABELS, NOT_HONORED

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
MIGRATING = ROOT / "docs" / "migrating-from-marathon-lb.md"

# Flags of other programs the docs mention on purpose (Docker, Mesos, Marathon, HAProxy, ss).
FOREIGN_FLAGS = {
    "--init",
    "--cap-drop",
    "--ulimit",
    "--resources",
    "--build-arg",
    "--local_port_min",
    "--local_port_max",
    "--help",
}
# marathon-lb's flags, named in the left column of the migration guide's flag table.
MARATHON_LB_FLAGS = {
    "--marathon", "--haproxy-config", "--group", "--command", "--reload-interval",
    "--max-reload-retries", "--sse", "--health-check", "--lru-cache-capacity", "--strict-mode",
    "--dont-bind-http-https", "--ssl-certs", "--group-https-by-vhost", "--haproxy-map",
    "--skip-validation", "--skip-config-cleanup", "--archive-versions", "--dry",
    "--max-backoff", "--auth-credentials", "--marathon-auth-credential-file",
    "--dcos-auth-credentials", "--marathon-ca-cert", "--syslog-socket", "--log-format",
    "--log-level", "--longhelp",
}  # fmt: skip


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def family_names(registry: CollectorRegistry) -> dict[str, str]:
    """Family name as written in the docs (counters with _total) -> Prometheus type."""
    names: dict[str, str] = {}
    for family in registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        names[name] = family.type
    return names


def exposed_metric_names() -> dict[str, str]:
    return family_names(SidecarMetrics(registry=CollectorRegistry()).registry)


def publisher_metric_names() -> dict[str, str]:
    idle = PublisherFigures(False, 0, False, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return family_names(PublisherMetrics(lambda: idle, registry=CollectorRegistry()).registry)


def documented_metrics(markdown: str, prefix: str = "marathon_sidecar_") -> set[str]:
    names = set(re.findall(rf"\b{prefix}[a-z_]+", markdown))
    # histogram series (_bucket, _sum, _count) name their family
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def sidecar_flags() -> set[str]:
    return {option.flag for option in OPTIONS} | {"--config", "--help"}


def publisher_flags() -> set[str]:
    return {option.flag for option in publisher_settings.OPTIONS} | {"--config", "--help"}


def marathon_bridge_flags() -> set[str]:
    flags: set[str] = set()
    parser = cli_parser()
    for action in parser._actions:  # argparse keeps no public list of sub-command flags
        flags.update(a for a in action.option_strings if a.startswith("--"))
        subparsers = action.choices if isinstance(action.choices, dict) else {}
        for subparser in subparsers.values():
            for sub_action in subparser._actions:
                flags.update(a for a in sub_action.option_strings if a.startswith("--"))
    return flags


def flags_in(markdown: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*[a-z0-9]", markdown))


def test_every_metric_the_sidecar_exposes_is_documented() -> None:
    missing = set(exposed_metric_names()) - documented_metrics(text(OPERATIONS))
    assert missing == set()


def test_every_metric_the_operations_guide_names_exists() -> None:
    exposed = set(exposed_metric_names())
    for path in (OPERATIONS, MIGRATING):
        unknown = documented_metrics(text(path)) - exposed
        assert unknown == set(), path.name


def test_metrics_table_gives_the_right_type() -> None:
    rows = re.findall(
        r"^\| `(marathon_sidecar_[a-z_]+)(?:\{[a-z]+\})?` \| (\w+) \|", text(OPERATIONS), re.M
    )
    assert rows
    types = exposed_metric_names()
    assert {name: kind for name, kind in rows} == types


def test_the_publishers_metrics_are_documented_with_their_type_and_no_others() -> None:
    rows = re.findall(
        r"^\| `(marathon_publisher_[a-z_]+)(?:\{[a-z]+\})?` \| (\w+) \|", text(OPERATIONS), re.M
    )
    assert {name: kind for name, kind in rows} == publisher_metric_names()
    assert documented_metrics(text(OPERATIONS), "marathon_publisher_") == set(
        publisher_metric_names()
    )


def test_suggested_alerts_parse_and_use_real_metrics() -> None:
    block = re.search(r"```yaml\n(groups:.*?)```", text(OPERATIONS), re.S)
    assert block is not None
    rules = yaml.safe_load(block.group(1))
    alerts = rules["groups"][0]["rules"]
    assert len(alerts) >= 8
    exposed = set(exposed_metric_names())
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
        assert re.fullmatch(r"[A-Z][A-Za-z]+", alert["alert"])
        assert alert["annotations"]["summary"]
        used = documented_metrics(str(alert["expr"]))
        assert used <= exposed, alert["alert"]


def healthcheck_flags() -> set[str]:
    """The flags of the image's probe, marathon-sidecar-healthcheck (deploy/docker)."""
    spec = importlib.util.spec_from_file_location("sidecar_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = module.build_parser()
    return {flag for action in parser._actions for flag in action.option_strings}


def test_operations_guide_names_only_real_flags() -> None:
    known = (
        sidecar_flags()
        | publisher_flags()
        | marathon_bridge_flags()
        | healthcheck_flags()
        | FOREIGN_FLAGS
    )
    assert flags_in(text(OPERATIONS)) - known == set()


def test_the_publishers_section_lists_every_flag_and_variable() -> None:
    section = text(OPERATIONS).split("## The publisher", 1)[1].split("\n## ", 1)[0]
    assert publisher_flags() - {"--help"} <= flags_in(section)
    for option in publisher_settings.OPTIONS:
        assert f"`{option.env_var}`" in section, option.name
    assert f"`{publisher_settings.TABLE.config_env}`" in section


def test_environment_variables_in_the_docs_exist() -> None:
    publisher = {option.env_var for option in publisher_settings.OPTIONS}
    known = {option.env_var for option in OPTIONS} | {CONFIG_ENV} | publisher
    known.add(publisher_settings.TABLE.config_env)
    for path in (OPERATIONS, MIGRATING):
        named = set(
            re.findall(
                r"\b(?:MARATHON_(?:SIDECAR|PUBLISHER)_[A-Z_]+|MARATHON_(?:URL|USER|PASSWORD|TOKEN))\b",
                text(path),
            )
        )
        assert named - known == set(), path.name


def section_of(markdown: str, title: str) -> str:
    """The text under a ``## title`` heading up to the next heading of that level."""
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_template_section_names_everything_a_template_receives() -> None:
    section = section_of(text(OPERATIONS), "Tuning HAProxy").split("**Your own template.**")[1]
    rows = re.findall(r"^\| (`.*?) \|", section, re.M)
    documented = {name for row in rows for name in re.findall(r"`([a-z_]+)(?:\(.*?\))?`", row)}
    assert documented == set(template_context(HAProxyModel(), RenderSettings()))
    assert "sidecar/templates/haproxy.cfg.j2" in section


def test_the_tuning_table_lists_every_timeout_and_maxconn_flag() -> None:
    table = section_of(text(OPERATIONS), "Tuning HAProxy").split("**Your own template.**")[0]
    tuning = {o.flag for o in OPTIONS if o.name.startswith("timeout-") or "maxconn" in o.name}
    assert len(tuning) == 10
    assert tuning <= set(re.findall(r"^\| `(--[a-z-]+)", table, re.M))


def flag_table_rows() -> list[tuple[str, str]]:
    section = text(MIGRATING).split("## Flags and environment", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and not set(cells[0]) <= {"-", " "} and cells[0] != "marathon-lb":
            rows.append((cells[0], cells[1]))
    return rows


def test_migration_flag_table_maps_to_real_sidecar_flags() -> None:
    rows = flag_table_rows()
    assert len(rows) >= 25
    ours = sidecar_flags()
    for left, right in rows:
        assert flags_in(right) <= ours, right
        assert flags_in(left) <= MARATHON_LB_FLAGS, left


def test_migration_guide_covers_marathon_lbs_flags() -> None:
    left_column = " ".join(left for left, _ in flag_table_rows())
    assert flags_in(left_column) == MARATHON_LB_FLAGS


def test_migration_guide_lists_every_label_the_code_knows() -> None:
    markdown = text(MIGRATING)
    for spec in LABELS:
        assert f"`{spec.key}`" in markdown, spec.key
    for key in NOT_HONORED:
        assert f"`{key}`" in markdown, key


def labels_in_section(title: str) -> set[str]:
    section = text(MIGRATING).split(f"### {title}", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| (`HAPROXY_.*?) \|", section, re.M)
    return {key for row in rows for key in re.findall(r"`(HAPROXY_[A-Za-z{}_]+)`", row)}


def test_migration_guide_sorts_labels_as_the_code_does() -> None:
    assert labels_in_section("Honored") == {spec.key for spec in LABELS}
    assert labels_in_section("Deployment groups (blue/green and canary)") == set(DEPLOYMENT_LABELS)
    assert labels_in_section("Recognized but not honored") == set(NOT_HONORED)


def test_docs_link_to_each_other_and_to_files_that_exist() -> None:
    for path in (OPERATIONS, MIGRATING):
        for target in re.findall(r"\]\(([^)#]+\.md)(?:#[^)]*)?\)", text(path)):
            assert (path.parent / target).is_file(), target
        for repo_path in re.findall(r"`(deploy/[^`]+)`", text(path)):
            assert (ROOT / repo_path.rstrip("/")).exists(), repo_path
