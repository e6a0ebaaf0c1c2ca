"""The layout's pure functions: names, JSON, paths and the strict reading of hostile children."""

from __future__ import annotations

import base64

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.layout import Instance, LayoutError, Problem

PARENT = "/smartstack/services/web"


def web(port: int = 31001, **labels: str) -> Instance:
    return Instance.make(
        "10.0.0.5",
        port,
        "shop_web.4f2a",
        weight=1,
        labels={"source": "marathon-bridge", "app_id": "/shop/web", **labels},
    )


def encoded(document: object) -> str:
    text = base64.urlsafe_b64encode(orjson.dumps(document)).decode()
    return f"base64_{len(text)}_{text}_"


def test_child_name_is_nerves_path_encoding_without_sequence() -> None:
    instance = web()
    name = layout.child_name(instance)
    text = base64.urlsafe_b64encode(layout.instance_json(instance)).decode()
    assert name == f"base64_{len(text)}_{text}_"
    assert orjson.loads(layout.instance_json(instance)) == {
        "host": "10.0.0.5",
        "port": 31001,
        "name": "shop_web.4f2a",
        "weight": 1,
        "labels": {"source": "marathon-bridge", "app_id": "/shop/web"},
    }


def test_equal_instances_have_equal_names_whatever_the_label_order() -> None:
    one = Instance.make("h", 1, "n", labels={"a": "1", "b": "2"})
    two = Instance.make("h", 1, "n", labels={"b": "2", "a": "1"})
    assert layout.child_name(one) == layout.child_name(two)
    assert layout.child_name(one) != layout.child_name(Instance.make("h", 2, "n"))


def test_decoding_uses_the_length_prefix_not_underscores() -> None:
    # '?' bytes make urlsafe base64 emit '_' and '-' inside the text
    instance = Instance.make("h", 80, "n", labels={"x": "??>>??>>", "source": "marathon-bridge"})
    name = layout.child_name(instance)
    assert "_" in name[len("base64_") :].split("_", 1)[1][:-1]
    assert layout.decode_child_name(PARENT, name) == instance
    assert layout.decode_child_name(PARENT, name + "0000000042") == instance  # nerve's seq suffix


def test_plain_nerve_names_need_their_data() -> None:
    assert layout.decode_child_name(PARENT, "myhost_0000000042") is None
    data = b'{"host":"10.1.1.1","port":8080,"name":"myhost","weight":"10"}'
    instance = layout.instance_from_data(PARENT, "myhost_0000000042", data)
    assert instance == Instance("10.1.1.1", 8080, "myhost", 10)
    assert isinstance(instance, Instance) and not instance.owned


def test_haproxy_server_options_is_accepted_and_dropped() -> None:
    data = b'{"host":"h","port":1,"name":"n","haproxy_server_options":"backup"}'
    assert layout.instance_from_data(PARENT, "h_1", data) == Instance("h", 1, "n")


HOSTILE_DATA = [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not an object"),
    (b'{"host":"h","port":1,"name":"n","extra":1}', "unknown field 'extra'"),
    (b'{"port":1,"name":"n"}', "no 'host'"),
    (b'{"host":"h","name":"n"}', "no 'port'"),
    (b'{"host":"h","port":0,"name":"n"}', "'port' must be an integer 1-65535"),
    (b'{"host":"h","port":70000,"name":"n"}', "'port' must be an integer 1-65535"),
    (b'{"host":"h","port":"80","name":"n"}', "'port' must be an integer 1-65535"),
    (b'{"host":"h","port":true,"name":"n"}', "'port' must be an integer 1-65535"),
    (b'{"host":"h; bad","port":1,"name":"n"}', "'host' has characters"),
    (b'{"host":"h\\nserver x","port":1,"name":"n"}', "'host' has characters"),
    (b'{"host":"h","port":1}', "no 'name'"),
    (b'{"host":"h","port":1,"name":"n","weight":-1}', "'weight' must be an integer 0-256"),
    (b'{"host":"h","port":1,"name":"n","weight":1000}', "'weight' must be an integer 0-256"),
    (b'{"host":"h","port":1,"name":"n","labels":[]}', "'labels' must be an object"),
    (b'{"host":"h","port":1,"name":"n","labels":{"a":1}}', "label 'a' must be a string"),
    (b'{"host":"h","port":1,"name":"n","labels":{"a":null}}', "label 'a' must be a string"),
    (b'{"host":"h","port":1,"name":"n","haproxy_server_options":5}', "haproxy_server_options"),
    (b'{"host":"' + b"a" * 9000 + b'","port":1,"name":"n"}', "more than 8192"),
    (b"", "no data"),
]


@pytest.mark.parametrize(("data", "reason"), HOSTILE_DATA, ids=[r for _, r in HOSTILE_DATA])
def test_hostile_data_is_a_problem_with_the_reason(data: bytes, reason: str) -> None:
    result = layout.instance_from_data(PARENT, "h_0000000001", data)
    assert isinstance(result, Problem)
    assert reason in result.reason
    assert result.path == PARENT + "/h_0000000001"


HOSTILE_NAMES = [
    ("base64_", "no <length>_"),
    ("base64_x_abc_", "no <length>_"),
    ("base64_8_abc_", "does not match"),
    ("base64_4_ab!d_", "not urlsafe base64"),
    ("base64_5_abcde_", "not urlsafe base64"),
    ("base64_4_abcd_xyz", "does not match"),
    ("base64_4_e30=_", "no 'host'"),  # {}
    (encoded({"host": "h", "port": 1, "name": "n", "labels": {"a": 2}}), "must be a string"),
    (encoded({"host": "h", "port": 1, "name": "n", "zone": "a"}), "unknown field 'zone'"),
    (encoded({"host": "h", "port": 1, "name": "x" * 300}), "more than 255"),
]


@pytest.mark.parametrize(("name", "reason"), HOSTILE_NAMES, ids=[r for _, r in HOSTILE_NAMES])
def test_hostile_names_are_problems_never_exceptions(name: str, reason: str) -> None:
    result = layout.decode_child_name(PARENT, name)
    assert isinstance(result, Problem), result
    assert reason in result.reason


@given(
    host=st.from_regex(r"[a-z0-9.-]{1,40}", fullmatch=True),
    port=st.integers(1, 65535),
    name=st.from_regex(r"[A-Za-z0-9._-]{1,60}", fullmatch=True),
    weight=st.one_of(st.none(), st.integers(0, 256)),
    labels=st.dictionaries(
        st.text(min_size=1, max_size=20).filter(str.isprintable),
        st.text(max_size=30).filter(str.isprintable),
        max_size=5,
    ),
)
def test_every_valid_instance_reads_back_from_its_name_and_its_data(
    host: str, port: int, name: str, weight: object, labels: dict[str, str]
) -> None:
    instance = Instance.make(host, port, name, weight=weight, labels=labels)  # type: ignore[arg-type]
    assert layout.decode_child_name(PARENT, layout.child_name(instance)) == instance
    assert layout.instance_from_data(PARENT, "x_1", layout.instance_json(instance)) == instance


def test_paths_keep_our_nodes_out_of_the_catalog() -> None:
    zk_path = "/smartstack/services"
    assert layout.service_path(zk_path, "web") == "/smartstack/services/web"
    assert layout.bridge_root(zk_path) == "/marathon-bridge/smartstack%2Fservices"
    assert (
        layout.options_path(zk_path, "web") == "/marathon-bridge/smartstack%2Fservices/options/web"
    )
    assert layout.leader_path(zk_path).startswith("/marathon-bridge/")
    assert not layout.heartbeat_path(zk_path).startswith(zk_path + "/")
    assert layout.bridge_root("/a/b") != layout.bridge_root("/a%2Fb")


@pytest.mark.parametrize("bad", ["web/x", "", ".", "..", "-web", "a" * 201, "web app", "wéb"])
def test_bad_service_names_are_refused(bad: str) -> None:
    with pytest.raises(LayoutError, match="service name"):
        layout.check_service_name(bad)


@pytest.mark.parametrize("bad", ["smartstack", "/", "/a/", "//a", "/a/../b"])
def test_bad_zk_paths_are_refused(bad: str) -> None:
    with pytest.raises(LayoutError, match="zk-path"):
        layout.check_zk_path(bad)


def test_options_are_one_json_object() -> None:
    assert layout.parse_options(layout.options_json({"port": 10080, "mode": "http"})) == {
        "port": 10080,
        "mode": "http",
    }
    for bad, reason in [(b"[]", "not an object"), (b"{", "not JSON"), (b"", "no data")]:
        with pytest.raises(LayoutError, match=reason):
            layout.parse_options(bad)
    with pytest.raises(LayoutError, match="more than"):
        layout.parse_options(b'{"a":"' + b"x" * 70000 + b'"}')
