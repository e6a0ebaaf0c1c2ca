"""deploy/prometheus: the rules load in Prometheus's own checker and their unit tests pass.

``promtool`` (Debian's ``prometheus`` package; scripts/setup.sh installs it) checks the rule file
and the example configuration, and runs ``marathon-sidecar.rules.test.yml``. The unit tests must
cover every alert (a case where it fires and one where it does not) and every recording rule, and
they must bite: a copy of the rules with one threshold changed fails them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "marathon-sidecar.rules.yml"
RULE_TESTS = PROMETHEUS / "marathon-sidecar.rules.test.yml"
EXAMPLE_CONFIG = PROMETHEUS / "prometheus.example.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed (Debian's prometheus package): run scripts/setup.sh")
    return path


def run_promtool(
    promtool: str, *args: str, cwd: Path = PROMETHEUS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule_tests() -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
    return tests


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_accepts_the_example_configuration(promtool: str) -> None:
    result = run_promtool(promtool, "check", "config", EXAMPLE_CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert RULES.name in result.stdout  # the config loads the rules beside it


def test_the_rules_unit_tests_pass(promtool: str) -> None:
    result = run_promtool(promtool, "test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rules_unit_tests_fail_when_a_threshold_changes(promtool: str, tmp_path: Path) -> None:
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    original = RULES.read_text(encoding="utf-8")
    changed = original.replace(
        "marathon_sidecar_haproxy_old_workers > 3", "marathon_sidecar_haproxy_old_workers > 30"
    )
    assert changed != original
    (tmp_path / RULES.name).write_text(changed, encoding="utf-8")
    result = run_promtool(promtool, "test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "MarathonSidecarOldWorkersPilingUp" in result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases: dict[str, set[bool]] = {}
    for test in rule_tests():
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    alerts = [rule["alert"] for rule in rules() if "alert" in rule]
    assert alerts
    untested = [name for name in alerts if cases.get(name) != {True, False}]
    assert untested == []


def test_every_recording_rule_has_an_expected_value() -> None:
    checked = {case["expr"] for test in rule_tests() for case in test.get("promql_expr_test", [])}
    recorded = [rule["record"] for rule in rules() if "record" in rule]
    assert recorded
    assert [name for name in recorded if name not in checked] == []


def test_every_alert_says_how_bad_and_what_happened() -> None:
    for rule in (r for r in rules() if "alert" in r):
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
