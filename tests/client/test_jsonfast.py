"""jsonfast: same results as the json module, compact bytes out, ValueError on bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import MappingProxyType

import pytest

from marathon_bridge import jsonfast


def test_loads_accepts_bytes_str_and_bytearray() -> None:
    text = '{"id":"/caf\u00e9","instances":2,"cpus":0.5,"labels":{},"ports":[1,2],"x":null}'
    expected = json.loads(text)
    assert jsonfast.loads(text) == expected
    assert jsonfast.loads(text.encode()) == expected
    assert jsonfast.loads(bytearray(text.encode())) == expected


def test_loads_agrees_with_json_on_every_shared_example(examples_dir: Path) -> None:
    files = sorted(examples_dir.rglob("*.json"))
    assert len(files) > 50
    for path in files:
        data = path.read_bytes()
        assert jsonfast.loads(data) == json.loads(data), path.name


def test_loads_falls_back_for_what_orjson_refuses() -> None:
    values = jsonfast.loads(b"[NaN, Infinity, -Infinity]")
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf]


def test_loads_keeps_64_bit_integers_exact() -> None:
    data = b"[9223372036854775807, -9223372036854775808, 18446744073709551615]"
    assert jsonfast.loads(data) == json.loads(data)


@pytest.mark.parametrize("bad", [b"", b"{", b'{"a":}', b"\xff\xfe", b"<html></html>"])
def test_loads_raises_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        jsonfast.loads(bad)


def test_dumps_is_compact_utf8_bytes() -> None:
    out = jsonfast.dumps({"id": "/caf\u00e9", "args": ["a", "b"], "env": {}})
    assert isinstance(out, bytes)
    assert out == '{"id":"/caf\u00e9","args":["a","b"],"env":{}}'.encode()


def test_dumps_accepts_read_only_mappings_and_tuples() -> None:
    out = jsonfast.dumps(MappingProxyType({"labels": MappingProxyType({"a": "b"}), "t": (1, 2)}))
    assert json.loads(out) == {"labels": {"a": "b"}, "t": [1, 2]}


def test_dumps_refuses_what_json_cannot_represent() -> None:
    with pytest.raises(TypeError):
        jsonfast.dumps({"x": object()})
