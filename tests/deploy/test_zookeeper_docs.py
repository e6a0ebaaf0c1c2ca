"""docs/zookeeper.md stays true to the code: its examples are what the code writes and reads.

The synapse snippet is valid YAML whose discovery path is the publisher's name for the app it
names; the sidecar snippet for nerve services loads with the sidecar's own loader; the layout's
paths, node names and the instance JSON shown are what the layout module produces; the
deployment files it names exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from sidecar.catalog import HealthCheck, Service, ServiceOptions, service_key
from sidecar.settings import load_settings
from sidecar.sources.zookeeper import layout, mapping

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "zookeeper.md"


def text() -> str:
    return DOC.read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text(), re.S)


def yaml_block(first_key: str) -> dict[str, Any]:
    for block in blocks("yaml"):
        loaded = yaml.safe_load(block)
        if isinstance(loaded, dict) and next(iter(loaded)) == first_key:
            return loaded
    raise AssertionError(f"no YAML example starting with {first_key}: in {DOC.name}")


def test_the_synapse_example_points_at_the_path_the_publisher_writes() -> None:
    (name, service), *_ = yaml_block("services")["services"].items()
    discovery = service["discovery"]
    assert discovery["method"] == "zookeeper"
    assert len(discovery["hosts"]) == 3
    expected = layout.service_path(layout.DEFAULT_ZK_PATH, mapping.service_name("/shop/web", 0))
    assert discovery["path"] == expected
    assert name == "shop_web" and service["haproxy"]["port"] > 0


def test_the_nerve_services_example_loads_with_the_sidecars_loader(tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text(yaml.safe_dump(yaml_block("source")), encoding="utf-8")
    settings = load_settings(["--config", str(config)], {})
    assert settings.source == "zookeeper" and settings.zk_path == layout.DEFAULT_ZK_PATH
    ports = {entry.name: entry.options.service_port for entry in settings.services}
    assert ports == {"legacy-api": 10100, "search": 10101}


def test_the_layout_shown_is_the_layout_modules() -> None:
    doc = text()
    bridge = layout.bridge_root(layout.DEFAULT_ZK_PATH)
    assert f"`/smartstack/services` -> `{bridge}`" in doc
    for path in (layout.leader_path, layout.heartbeat_path, layout.options_root):
        assert path("/x").replace(layout.bridge_root("/x"), "<bridge>") in doc
    assert f"`{mapping.service_name('/shop/web', 0)}`" in doc


def test_the_instance_json_shown_has_the_fields_the_publisher_writes() -> None:
    (example,) = [b for b in blocks("json") if '"host"' in b]
    document = json.loads(example.replace("...", ""))
    assert set(document) == {"host", "port", "name", "weight", "labels"}
    assert document["labels"]["source"] == layout.SOURCE_VALUE
    assert set(document["labels"]) == {
        layout.SOURCE_LABEL,
        mapping.APP_ID_LABEL,
        mapping.TASK_ID_LABEL,
        mapping.VERSION_LABEL,
    }
    compact = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert layout.instance_json(layout.parse_instance(compact)) == compact  # the written form


def test_the_files_it_names_exist() -> None:
    for name in re.findall(r"`((?:deploy|bench|testkit|tests)/[\w./-]+)`", text()):
        assert (ROOT / name).exists(), name


def test_the_options_example_is_what_the_publisher_writes_for_that_service() -> None:
    (example,) = [b for b in blocks("json") if '"port_index"' in b]
    document = json.loads(example)
    check = HealthCheck("http", "/health", 5000, 2000, 3)
    options = ServiceOptions(10000, 10000, mode="http", vhosts=("shop.example.com",),
                             groups=("external",), health_check=check)  # fmt: skip
    service = Service(service_key("/shop/web", 0), "/shop/web", 0, options)
    assert document == mapping.options_document(service)
