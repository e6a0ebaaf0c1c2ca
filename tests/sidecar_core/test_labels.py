"""Strict label grammar: each label with good and bad values, ignored labels, the doc table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sidecar.catalog import Problem
from sidecar.sources.marathon.labels import (
    LABELS,
    NOT_HONORED,
    NOT_HONORED_REASON,
    RAW_TEMPLATE_REASON,
    PortOptions,
    parse_app_labels,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "labels.md"


def parse(labels: dict[str, Any]) -> tuple[Any, list[Problem]]:
    return parse_app_labels({"id": "/app", "labels": labels})


def port0(labels: dict[str, Any]) -> tuple[PortOptions, list[Problem]]:
    options, problems = parse(labels)
    assert options is not None
    return options.port(0), problems


def assert_value_not_in_problems(problems: list[Problem], value: str) -> None:
    needle = value.strip()
    if len(needle) < 2:
        return  # too short to tell
    for problem in problems:
        assert needle not in problem.reason
        assert needle not in problem.label


# --- defaults and ids ---------------------------------------------------------------------------


def test_no_labels_gives_defaults() -> None:
    options, problems = parse({})
    assert problems == []
    assert options.groups == ()
    assert options.port(0) == PortOptions()
    assert options.port(0).mode == "tcp" and options.port(0).balance == "roundrobin"


@pytest.mark.parametrize("app", [{}, {"id": ""}, {"id": 5}, {"id": None}])
def test_app_without_usable_id_is_skipped(app: dict) -> None:
    options, problems = parse_app_labels(app)
    assert options is None
    assert problems and problems[0].reason == "app has no usable id"


def test_labels_that_are_not_a_mapping_are_ignored() -> None:
    options, problems = parse_app_labels({"id": "/a", "labels": ["HAPROXY_0_MODE"]})
    assert options is not None and problems == []


# --- each honored label ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "groups"),
    [("internal", ("internal",)), ("b, a ,a", ("a", "b")), ("ext-1.x_y", ("ext-1.x_y",))],
)
def test_group_good(value: str, groups: tuple[str, ...]) -> None:
    options, problems = parse({"HAPROXY_GROUP": value})
    assert problems == [] and options.groups == groups


@pytest.mark.parametrize("value", ["", " , ", "a b", "in#ternal", "x\nfrontend evil", "-a", "é"])
def test_group_bad(value: str) -> None:
    options, problems = parse({"HAPROXY_GROUP": value})
    assert options.groups == ()
    assert [p.label for p in problems] == ["HAPROXY_GROUP"]
    assert_value_not_in_problems(problems, value)


def test_port_group_overrides_app_group() -> None:
    options, problems = parse({"HAPROXY_GROUP": "external", "HAPROXY_1_GROUP": "internal"})
    assert problems == []
    assert options.port_groups(0) == ("external",)
    assert options.port_groups(1) == ("internal",)


@pytest.mark.parametrize(("value", "mode"), [("http", "http"), ("TCP", "tcp"), (" http ", "http")])
def test_mode_good(value: str, mode: str) -> None:
    opts, problems = port0({"HAPROXY_0_MODE": value})
    assert problems == [] and opts.mode == mode


@pytest.mark.parametrize("value", ["", "udp", "http2", "http\n", "http # x"])
def test_mode_bad(value: str) -> None:
    opts, problems = port0({"HAPROXY_0_MODE": value})
    if value == "http\n":  # surrounding whitespace is stripped: still "http"
        assert problems == [] and opts.mode == "http"
        return
    assert opts.mode == "tcp"
    assert [p.label for p in problems] == ["HAPROXY_0_MODE"]
    assert_value_not_in_problems(problems, value)


@pytest.mark.parametrize("value", ["roundrobin", "leastconn", "first", "random", "source"])
def test_balance_good(value: str) -> None:
    opts, problems = port0({"HAPROXY_0_BALANCE": value.upper()})
    assert problems == [] and opts.balance == value


def test_balance_uri_needs_http_mode() -> None:
    opts, problems = port0({"HAPROXY_0_BALANCE": "uri", "HAPROXY_0_MODE": "http"})
    assert problems == [] and opts.balance == "uri"
    opts, problems = port0({"HAPROXY_0_BALANCE": "uri"})
    assert opts.balance == "roundrobin" and problems[0].reason == "algorithm needs http mode"


@pytest.mark.parametrize(
    "value", ["static-rr", "hdr(host)", "url_param(x)", "roundrobin\nbackend x", "rdp-cookie", ""]
)
def test_balance_bad(value: str) -> None:
    opts, problems = port0({"HAPROXY_0_BALANCE": value})
    assert opts.balance == "roundrobin"
    assert [p.reason for p in problems] == ["unsupported balance algorithm"]


@pytest.mark.parametrize(("value", "port"), [("1", 1), ("8080", 8080), ("65535", 65535)])
def test_port_good(value: str, port: int) -> None:
    opts, problems = port0({"HAPROXY_0_PORT": value})
    assert problems == [] and opts.bind_port == port and opts.skip_reason == ""


@pytest.mark.parametrize("value", ["0", "65536", "-1", "80a", "8 0", "١٢٣", "99999999", ""])
def test_port_bad_skips_the_port(value: str) -> None:
    opts, problems = port0({"HAPROXY_0_PORT": value})
    assert opts.bind_port is None and opts.skip_reason
    assert [p.label for p in problems] == ["HAPROXY_0_PORT"]
    assert_value_not_in_problems(problems, value)


@pytest.mark.parametrize(
    ("value", "addr"), [("127.0.0.2", "127.0.0.2"), ("::1", "::1"), ("0:0::1", "::1")]
)
def test_bind_addr_good(value: str, addr: str) -> None:
    opts, problems = port0({"HAPROXY_0_BIND_ADDR": value})
    assert problems == [] and opts.bind_addr == addr


@pytest.mark.parametrize(
    "value", ["*", "localhost", "1.2.3", "fe80::1%eth0", "1.2.3.4:80", "127.0.0.1\nlisten x"]
)
def test_bind_addr_bad(value: str) -> None:
    opts, problems = port0({"HAPROXY_0_BIND_ADDR": value})
    assert opts.bind_addr is None
    assert [p.label for p in problems] == ["HAPROXY_0_BIND_ADDR"]


def test_vhost_good_implies_http_and_is_lowercased_and_sorted() -> None:
    opts, problems = port0({"HAPROXY_0_VHOST": "WWW.Example.com, api.example.com."})
    assert problems == []
    assert opts.vhosts == ("api.example.com", "www.example.com")
    assert opts.mode == "http"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "*.example.com",
        "exa mple.com",
        "-bad.com",
        "bad-.com",
        "a..b",
        "x" * 64 + ".com",
        ".".join(["abcdefghi"] * 26),
        "example.com#x",
        "例え.jp",
        "1.2.3.4",
        "a.com }",
        ",".join(f"h{i}.example.com" for i in range(33)),
    ],
)
def test_vhost_bad(value: str) -> None:
    opts, problems = port0({"HAPROXY_0_VHOST": value})
    assert opts.vhosts == () and opts.mode == "tcp"
    assert [p.label for p in problems] == ["HAPROXY_0_VHOST"]
    assert_value_not_in_problems(problems, value)


def test_vhost_with_tcp_mode_is_dropped() -> None:
    opts, problems = port0({"HAPROXY_0_VHOST": "a.example.com", "HAPROXY_0_MODE": "tcp"})
    assert opts.vhosts == () and opts.mode == "tcp"
    assert problems == [Problem("/app", "HAPROXY_0_VHOST", "vhost routing needs http mode")]


@pytest.mark.parametrize("value", ["/", "/api", "/api/v1/", "/a-b_c.d~e"])
def test_path_good(value: str) -> None:
    opts, problems = port0({"HAPROXY_0_VHOST": "a.com", "HAPROXY_0_PATH": value})
    assert problems == [] and opts.path == value


@pytest.mark.parametrize(
    "value", ["", "api", "/a b", "/a#b", "/a%20", '/a"', "/a}", "/a\n", "/" + "a" * 200, "-i /a"]
)
def test_path_bad(value: str) -> None:
    opts, problems = port0({"HAPROXY_0_VHOST": "a.com", "HAPROXY_0_PATH": value})
    if value == "/a\n":  # surrounding whitespace is stripped
        assert opts.path == "/a"
        return
    assert opts.path == ""
    assert [p.label for p in problems] == ["HAPROXY_0_PATH"]


def test_path_needs_vhost() -> None:
    opts, problems = port0({"HAPROXY_0_PATH": "/api"})
    assert opts.path == "" and problems[0].reason == "a path prefix needs HAPROXY_{n}_VHOST"


@pytest.mark.parametrize(("value", "weight"), [("0", 0), ("7", 7), ("1000", 1000)])
def test_backend_weight_good(value: str, weight: int) -> None:
    opts, problems = port0({"HAPROXY_0_BACKEND_WEIGHT": value})
    assert problems == [] and opts.weight == weight


@pytest.mark.parametrize("value", ["-1", "1001", "1.5", "x", ""])
def test_backend_weight_bad(value: str) -> None:
    opts, problems = port0({"HAPROXY_0_BACKEND_WEIGHT": value})
    assert opts.weight == 0 and [p.label for p in problems] == ["HAPROXY_0_BACKEND_WEIGHT"]


@pytest.mark.parametrize("suffix", ["STICKY", "ENABLED", "HEALTHCHECK"])
def test_booleans(suffix: str) -> None:
    key = f"HAPROXY_0_{suffix}"
    extra = {"HAPROXY_0_MODE": "http"}
    for text, expected in (("true", True), ("FALSE", False), (" True ", True)):
        opts, problems = port0({key: text, **extra})
        assert problems == []
        value = {"STICKY": opts.sticky, "ENABLED": opts.enabled, "HEALTHCHECK": opts.health}
        assert bool(value[suffix]) is expected
    for bad in ("yes", "1", "", "true\nx"):
        opts, problems = port0({key: bad, **extra})
        if bad == "true\nx":
            assert [p.label for p in problems] == [key]
        else:
            assert [p.label for p in problems] == [key]
            assert problems[0].reason == "not true or false"


def test_sticky_needs_http_mode() -> None:
    opts, problems = port0({"HAPROXY_0_STICKY": "true"})
    assert opts.sticky is False and problems[0].reason == "sticky sessions need http mode"


def test_non_string_values_are_problems() -> None:
    options, problems = parse({"HAPROXY_0_MODE": 5, "HAPROXY_GROUP": None})
    assert options.port(0).mode == "tcp" and options.groups == ()
    assert {p.reason for p in problems} == {"value is not a string"}


# --- ignored labels ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "HAPROXY_0_BACKEND_HEAD",
        "HAPROXY_0_FRONTEND_HEAD",
        "HAPROXY_0_BIND_OPTIONS",
        "HAPROXY_0_BACKEND_SERVER_OPTIONS",
        "HAPROXY_HEAD",
        "HAPROXY_00_MODE",
        "HAPROXY_0_mode",
        "HAPROXY_X_MODE",
    ],
)
def test_raw_template_and_unknown_haproxy_labels_are_reported(key: str) -> None:
    options, problems = parse({key: "anything\n  server evil 1.2.3.4:80"})
    assert options is not None and options.port(0) == PortOptions()
    assert problems == [Problem("/app", key, RAW_TEMPLATE_REASON)]


@pytest.mark.parametrize("key", [k.replace("{n}", "0") for k in NOT_HONORED])
def test_known_but_not_honored_labels(key: str) -> None:
    _options, problems = parse({key: "x"})
    assert problems == [Problem("/app", key, NOT_HONORED_REASON)]


@pytest.mark.parametrize(
    "key", ["haproxy_0_mode", "DCOS_SERVICE_NAME", "MARATHON_SINGLE_INSTANCE_APP"]
)
def test_other_labels_are_ignored_silently(key: str) -> None:
    options, problems = parse({key: "http"})
    assert problems == [] and options.port(0) == PortOptions()


def test_high_port_index_is_a_problem() -> None:
    _options, problems = parse({"HAPROXY_5000_MODE": "http"})
    assert problems[0].reason == "port index out of range"


# --- the doc table ------------------------------------------------------------------------------


def _doc_labels(section: str) -> set[str]:
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    table = text[start : end if end != -1 else len(text)]
    return set(re.findall(r"^\| `(HAPROXY_[A-Z0-9_{}n]+)` \|", table, flags=re.MULTILINE))


def test_doc_table_matches_the_registry() -> None:
    assert _doc_labels("## Honored labels") == {spec.key for spec in LABELS}


def test_doc_lists_every_not_honored_label() -> None:
    assert _doc_labels("## Recognized, not honored") == set(NOT_HONORED)
