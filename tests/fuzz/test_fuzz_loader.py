"""Hostile app definition files: any bytes, hostile YAML structures, and combined bombs.

``tests/definitions/test_load.py`` covers each limit alone (alias bombs, deep nesting, size,
non-UTF-8). Here they are mixed and generated. Properties: :func:`load_definitions` returns apps
or raises :class:`~marathon_bridge.errors.DefinitionError` (nothing else), every refusal names
the file (and a line where it has one) and says what was wrong, loading ends in bounded time
(``pytest-timeout``) and bounded memory (the combined cases run in a child process under an
address-space limit), and whatever loads validates to issues that each name a field.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marathon_bridge.definitions import load_definitions, validate_apps
from marathon_bridge.errors import DefinitionError
from testkit.fuzz import hostile_text, profile, time_limit

MEMORY_LIMIT = 768 * 1024 * 1024  # bytes of address space for a child loading a hostile file


def load_or_refusal(path: Path) -> tuple[list[Any], list[Any]]:
    """(apps, issues): exactly one of them is empty."""
    try:
        return load_definitions(path), []
    except DefinitionError as error:
        assert error.issues, "a refusal without an issue"
        return [], list(error.issues)


def assert_refusal_names_the_file(issues: list[Any], path: Path) -> None:
    for issue in issues:
        assert issue.message.strip(), issue
        assert str(path) in issue.source, issue


# ----------------------------------------------------------------------------- any bytes


@pytest.mark.timeout(time_limit())
@profile()
@given(
    raw=st.one_of(
        st.binary(max_size=400),
        st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass")),
    ),
    suffix=st.sampled_from([".yaml", ".yml", ".json"]),
)
def test_any_bytes_load_or_are_refused_with_the_file_named(
    raw: bytes, suffix: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("bytes") / f"apps{suffix}"
    path.write_bytes(raw)
    apps, issues = load_or_refusal(path)
    assert_refusal_names_the_file(issues, path)
    for app in apps:
        assert isinstance(app.app, dict) and str(path) in app.source


# ----------------------------------------------------------------------------- hostile YAML


@st.composite
def hostile_yaml(draw: st.DrawFn) -> bytes:
    """An app list whose values nest deeply, alias each other and carry hostile text."""
    depth = draw(st.integers(1, 160))
    nested = "x"
    for level in range(depth):
        nested = f"[{nested}]" if level % 2 else f"{{k: {nested}}}"
    aliases = draw(st.integers(0, 130))
    lines = ["base: &base {cpus: 0.1, mem: 32}", "apps:"]
    lines.append(f"  - id: {json.dumps(draw(hostile_text))}")
    lines.append(f"    cmd: {json.dumps(draw(hostile_text))}")
    lines.append(f"    labels: {{HAPROXY_0_VHOST: {json.dumps(draw(hostile_text))}}}")
    lines.append(f"    env: {{DEEP: {nested}}}")
    lines += [f"  - id: /alias{i}\n    <<: *base" for i in range(aliases)]
    text = "\n".join(lines) + "\n"
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # a stray byte somewhere (not UTF-8)
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"])) + raw[at:]
    if draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw
    return raw


@pytest.mark.timeout(time_limit())
@profile()
@given(raw=hostile_yaml())
def test_hostile_yaml_loads_or_is_refused_and_loaded_apps_validate(
    raw: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("yaml") / "apps.yaml"
    path.write_bytes(raw)
    apps, issues = load_or_refusal(path)
    assert_refusal_names_the_file(issues, path)
    for issue in validate_apps(apps):
        assert issue.path and issue.message.strip(), issue


# ----------------------------------------------------------------------------- combined bombs

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    from marathon_bridge.definitions import load_definitions
    from marathon_bridge.errors import DefinitionError
    started = time.monotonic()
    try:
        apps = load_definitions(sys.argv[1])
        out = {{"apps": len(apps), "issues": []}}
    except DefinitionError as error:
        out = {{"apps": 0, "issues": [[i.source, i.message] for i in error.issues]}}
    out["seconds"] = time.monotonic() - started
    out["max_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(out))
    """
)


def load_in_child(path: Path) -> dict[str, Any]:
    """Load ``path`` in a child process with limited memory; its JSON report."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD.format(limit=MEMORY_LIMIT), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(json.loads(result.stdout))


def alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines)


def combined_cases(tmp: Path) -> dict[str, bytes]:
    deep = "[" * 5000 + "]" * 5000
    bomb = alias_bomb()
    many = json.dumps([{"id": f"/many/app{i}", "cmd": "x" * 200} for i in range(50_000)])
    return {
        "bomb-in-a-group.yaml": (
            "id: /g\napps:\n  - id: /g/a\n    cmd: sleep 1\n    labels:\n"
            + textwrap.indent(bomb, "      ")
            + "\n"
        ).encode(),
        "bomb-under-deep-nesting.yaml": ("x: " + "[" * 90 + "\n" + bomb).encode(),
        "deep-json-then-garbage.json": (deep + "\n\xff").encode("latin-1"),
        "deep-yaml-flow.yaml": ("apps: " + "{a: " * 3000 + "1" + "}" * 3000).encode(),
        "bom-and-invalid-utf8.yaml": b"\xef\xbb\xbfid: /ok\ncmd: sleep 1\nx: \xc3\x28\n",
        "many-apps-under-the-limit.json": many.encode(),
        "over-the-limit.json": b"[" + b" " * (17 * 1024 * 1024) + b"]",
        "long-single-line.yaml": b"id: /x\ncmd: " + b"y" * (8 * 1024 * 1024) + b"\n",
    }


@pytest.mark.timeout(600)
def test_combined_hostile_files_end_quickly_in_bounded_memory(tmp_path: Path) -> None:
    for name, raw in combined_cases(tmp_path).items():
        path = tmp_path / name
        path.write_bytes(raw)
        report = load_in_child(path)
        assert report["max_rss_kb"] * 1024 < MEMORY_LIMIT, (name, report)
        if name.startswith("many-apps") or name.startswith("long-single"):
            assert report["apps"] >= 1 and not report["issues"], (name, report)
            continue
        assert report["apps"] == 0 and report["issues"], (name, report)
        for source, message in report["issues"]:
            assert str(path) in source and message.strip(), (name, source, message)
