"""A reader that discovers a service the way synapse's `method: zookeeper` watcher does.

Written from the behaviour of airbnb/synapse 0.18.9 (lib/synapse/service_watcher/zookeeper/
zookeeper.rb and base.rb), as recorded in the project's research notes, to prove that a synapse
pointed at `<zk-path>/<service>` sees what our publisher writes:

1. list the children of the path;
2. a child whose name starts with `base64_` is decoded from its name: strip the prefix, take the
   first run of digits followed by `_` as the length, take that many characters after it, urlsafe
   base64-decode them strictly and parse the JSON; if that fails, fall back to step 3;
3. otherwise `get` the child (skipped if it vanished) and parse its data as JSON; an instance
   without `host` or `port`, or data that is not JSON, is skipped;
4. each backend keeps name, host, port, weight, haproxy_server_options, labels and `id` (the
   digits after the last `_`, or None);
5. the parent's own data is generator config: empty is {}, otherwise a JSON object whose keys must
   be generator names (others are skipped) and whose values must be objects (else {});
6. backends are de-duplicated on (host, port, name).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Optional

from kazoo.exceptions import NoNodeError

GENERATORS = ("haproxy", "file_output")
_LENGTH = re.compile(r"\d+_")


@dataclass
class SynapseView:
    backends: list[dict[str, Any]]
    generator_config: dict[str, Any]
    skipped: list[str]


def decode_name(child: str) -> Optional[dict[str, Any]]:
    """synapse's parse_base64_encoded_prefix: None when it fails (then synapse uses `get`)."""
    rest = child.replace("base64_", "", 1)
    found = _LENGTH.search(rest)
    if found is None:
        return None
    length = int(found.group(0)[:-1])
    rest = rest.replace(found.group(0), "", 1)[:length]
    try:
        padded = rest + "=" * (-len(rest) % 4)
        decoded = json.loads(base64.b64decode(padded, altchars=b"-_", validate=True))
    except (binascii.Error, ValueError):
        return None
    return decoded if isinstance(decoded, dict) else None


def numeric_id(child: str) -> Optional[int]:
    tail = child.split("_")[-1]
    return int(tail) if tail.isdigit() else None


def backend_info(child: str, node: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "host", "port", "weight", "haproxy_server_options", "labels")
    return {**{k: node.get(k) for k in keys}, "id": numeric_id(child)}


def read_child(client: Any, path: str, child: str, skipped: list[str]) -> Optional[dict[str, Any]]:
    if child.startswith("base64_"):
        decoded = decode_name(child)
        if decoded is not None:
            return backend_info(child, decoded)
    try:
        data = client.get(f"{path}/{child}")[0]
    except NoNodeError:
        skipped.append(f"{child}: vanished")
        return None
    try:
        node = json.loads(data)
        if "host" not in node or "port" not in node:
            raise KeyError("host or port missing")
    except (ValueError, KeyError, TypeError) as exc:
        skipped.append(f"{child}: {exc}")
        return None
    return backend_info(child, node)


def generator_config(data: Optional[bytes]) -> dict[str, Any]:
    if not data:
        return {}
    config = {}
    for name, value in json.loads(data).items():
        if name in GENERATORS:
            config[name] = value if isinstance(value, dict) else {}
    return config


def discover(client: Any, path: str) -> SynapseView:
    """One discovery round of synapse's ZooKeeper watcher on `path`."""
    skipped: list[str] = []
    backends: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for child in client.get_children(path):
        backend = read_child(client, path, child, skipped)
        if backend is not None:
            backends.setdefault((backend["host"], backend["port"], backend["name"]), backend)
    return SynapseView(list(backends.values()), generator_config(client.get(path)[0]), skipped)
