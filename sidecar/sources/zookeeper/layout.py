"""The service catalog's layout in ZooKeeper: nerve's and synapse's, plus a root of our own.

Pure: paths, child names, the instance JSON and their strict validation. The publisher writes with
these functions and the sidecar reads with them; nothing here talks to ZooKeeper.

Paths (`<zk-path>` is `--zk-path`, default `/smartstack/services`)::

    <zk-path>/<service>                  persistent; data left empty: synapse reads a service
                                         znode's own data as generator config ({"haproxy": {...}})
    <zk-path>/<service>/<instance>       persistent, one per instance (below)
    <bridge>/leader/<uuid>__lock__<seq>  the publishers' election (kazoo Lock; ephemeral)
    <bridge>/heartbeat                   JSON the leading publisher rewrites now and then
    <bridge>/options/<service>           JSON object: the per-service options the sidecar needs
                                         (port, mode, balance, vhosts, groups, deployment group...);
                                         it exists exactly for the services the publisher owns

`<bridge>` is derived from the zk-path, so a sidecar needs no second flag and two catalogs in one
ensemble never share a leader: `/marathon-bridge/` + the zk-path without its leading slash,
percent-quoted into one node name
(`/smartstack/services` -> `/marathon-bridge/smartstack%2Fservices`).
Nothing of ours lives under `<zk-path>` except instance children, and only our children carry the
label `source: marathon-bridge` (the publisher deletes no other child: nerve's are only read).

Instance children, as written by the publisher (nerve's `node_type: persistent` with
`use_path_encoding: true`): the name is `base64_<len>_<urlsafe base64 of the JSON>_` where `<len>`
is the length of the base64 text (with its `=` padding), and no sequence number follows the last
`_`, so one instance always has one name; the node's data is the same JSON. The JSON has sorted keys
and no spaces, so equal instances give equal names::

    {"host":"10.0.0.5","labels":{"app_id":"/shop/web","source":"marathon-bridge",
     "task_id":"shop_web.4f2a...","version":"2024-05-01T10:00:00.000Z"},"name":"shop_web.4f2a...",
     "port":31001,"weight":1}

A changed instance is a new name: the writer deletes the old child and creates the new one in one
transaction. Readers decode `base64_` names locally (no `get`); any other child name is nerve's
default `<instance_id>_<seq>` (or `<instance_id>_`), whose JSON is read from the node's data once:
names never change their data in this layout, and synapse ignores data changes as well.

Everything read is checked here: a child that is not valid is reported as a `Problem` with the
reason and skipped; it never raises into the caller. Accepted keys are nerve's: `host`, `port`,
`name` (required), `weight`, `labels`, `haproxy_server_options` (accepted, then dropped: synapse
pastes it into HAProxy's configuration as it is, we never do).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union
from urllib.parse import quote

import orjson

DEFAULT_ZK_PATH = "/smartstack/services"
BRIDGE_BASE = "/marathon-bridge"
ENCODED_PREFIX = "base64_"
SOURCE_LABEL = "source"
SOURCE_VALUE = "marathon-bridge"

MAX_INSTANCE_BYTES = 8192  # one instance's JSON; ours are ~300 bytes
MAX_OPTIONS_BYTES = 65536  # one service's options JSON
MAX_HOST = 253
MAX_NAME = 255
MAX_LABELS = 64
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 1024
MAX_SERVER_OPTIONS = 1024
MAX_WEIGHT = 256  # HAProxy's range

KNOWN_KEYS = frozenset({"host", "port", "name", "weight", "labels", "haproxy_server_options"})
_HOST = re.compile(r"[A-Za-z0-9._:-]+")
_NAME = re.compile(r"[A-Za-z0-9._:@+-]+")
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")
_ENCODED = re.compile(r"base64_(\d{1,6})_")
_B64_TEXT = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_SEQUENCE_TAIL = re.compile(r"_\d*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Instance:
    """One backend of a service, as nerve and synapse describe it."""

    host: str
    port: int
    name: str
    weight: Optional[int] = None
    labels: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def make(
        cls,
        host: str,
        port: int,
        name: str,
        weight: Optional[int] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> Instance:
        """An instance with its labels sorted (the form equality and names rely on)."""
        return cls(host, port, name, weight, tuple(sorted((labels or {}).items())))

    def label(self, key: str) -> Optional[str]:
        for name, value in self.labels:
            if name == key:
                return value
        return None

    @property
    def owned(self) -> bool:
        """Written by our publisher (only such children may it delete)."""
        return self.label(SOURCE_LABEL) == SOURCE_VALUE

    @property
    def key(self) -> tuple[str, int, str]:
        """synapse de-duplicates backends on (host, port, name)."""
        return (self.host, self.port, self.name)


@dataclass(frozen=True)
class Problem:
    """Something read from ZooKeeper that was skipped, and why."""

    path: str
    reason: str


class LayoutError(ValueError):
    """A value that does not fit the layout (the message names the field)."""


# --- paths -------------------------------------------------------------------------------------


def check_zk_path(zk_path: str) -> str:
    """An absolute path without a trailing slash or empty segments, not the root itself."""
    parts = zk_path.split("/")
    if (
        not zk_path.startswith("/")
        or len(parts) < 2
        or any(p in ("", ".", "..") for p in parts[1:])
    ):
        raise LayoutError(
            f"zk-path {zk_path!r}: must be an absolute path like /smartstack/services"
        )
    return zk_path


def check_service_name(service: str) -> str:
    """One znode name: letters, digits and . _ : @ - (at most 200, not starting with a sign)."""
    if not _SERVICE.fullmatch(service):
        raise LayoutError(
            f"service name {service!r}: use 1-200 letters, digits or . _ : @ - "
            "(starting with a letter or digit)"
        )
    return service


def service_path(zk_path: str, service: str) -> str:
    return f"{zk_path}/{check_service_name(service)}"


def bridge_root(zk_path: str) -> str:
    """`/marathon-bridge/<zk-path quoted into one name>`: our own nodes for this catalog."""
    return f"{BRIDGE_BASE}/{quote(check_zk_path(zk_path)[1:], safe='')}"


def leader_path(zk_path: str) -> str:
    return f"{bridge_root(zk_path)}/leader"


def heartbeat_path(zk_path: str) -> str:
    return f"{bridge_root(zk_path)}/heartbeat"


def options_root(zk_path: str) -> str:
    return f"{bridge_root(zk_path)}/options"


def options_path(zk_path: str, service: str) -> str:
    return f"{options_root(zk_path)}/{check_service_name(service)}"


# --- writing -----------------------------------------------------------------------------------


def instance_json(instance: Instance) -> bytes:
    """The instance's JSON: sorted keys, no spaces; `weight` only when set."""
    document: dict[str, Any] = {
        "host": instance.host,
        "port": instance.port,
        "name": instance.name,
        "labels": dict(instance.labels),
    }
    if instance.weight is not None:
        document["weight"] = instance.weight
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def child_name(instance: Instance) -> str:
    """`base64_<len>_<urlsafe base64 of the JSON>_`: the same instance, the same name."""
    encoded = base64.urlsafe_b64encode(instance_json(instance)).decode("ascii")
    return f"{ENCODED_PREFIX}{len(encoded)}_{encoded}_"


def options_json(options: Mapping[str, Any]) -> bytes:
    """A service's options as stored (sorted keys); refused when it would not read back."""
    data = orjson.dumps(dict(options), option=orjson.OPT_SORT_KEYS)
    parse_options(data)
    return data


# --- reading -----------------------------------------------------------------------------------

ChildResult = Union[Instance, Problem, None]


def decode_child_name(parent: str, name: str) -> ChildResult:
    """An instance decoded from a `base64_` name, a Problem, or None: read the node's data."""
    if not name.startswith(ENCODED_PREFIX):
        return None
    try:
        return parse_instance(_decode_encoded_name(name))
    except LayoutError as exc:
        return Problem(f"{parent}/{name}"[:400], str(exc))


def instance_from_data(parent: str, name: str, data: Optional[bytes]) -> Union[Instance, Problem]:
    """A plain child (nerve's `<instance_id>_<seq>`) from its node data."""
    try:
        if not data:
            raise LayoutError("node has no data (expected nerve's JSON)")
        return parse_instance(data)
    except LayoutError as exc:
        return Problem(f"{parent}/{name}"[:400], str(exc))


def _decode_encoded_name(name: str) -> bytes:
    """The JSON bytes in `base64_<len>_<text>_[seq]`; the length prefix says where text ends."""
    head = _ENCODED.match(name)
    if head is None:
        raise LayoutError("child name starts with base64_ but has no <length>_ after it")
    length = int(head.group(1))
    text = name[head.end() : head.end() + length]
    tail = name[head.end() + length :]
    if len(text) != length or not _SEQUENCE_TAIL.fullmatch(tail):
        raise LayoutError(f"child name's length prefix {length} does not match the text after it")
    if length > MAX_INSTANCE_BYTES * 4 // 3 + 4:
        raise LayoutError(f"encoded instance is {length} characters, more than allowed")
    if length % 4 or not _B64_TEXT.fullmatch(text):
        raise LayoutError("child name is not urlsafe base64")
    try:
        return base64.urlsafe_b64decode(text)
    except (binascii.Error, ValueError) as exc:
        raise LayoutError(f"child name is not urlsafe base64 ({exc})") from exc


def parse_instance(data: bytes) -> Instance:
    """Validate nerve's instance JSON; raises LayoutError naming the field."""
    document = _json_object(data, MAX_INSTANCE_BYTES, "instance", "instance is not JSON")
    unknown = sorted(set(document) - KNOWN_KEYS)
    if unknown:
        raise LayoutError(f"unknown field {unknown[0]!r} in instance JSON")
    _optional_text(document, "haproxy_server_options", MAX_SERVER_OPTIONS)
    return Instance(
        host=_text(document, "host", MAX_HOST, _HOST),
        port=_port(document.get("port")),
        name=_text(document, "name", MAX_NAME, _NAME),
        weight=_weight(document.get("weight")),
        labels=_labels(document.get("labels")),
    )


def _text(document: Mapping[str, Any], key: str, limit: int, pattern: re.Pattern[str]) -> str:
    value = document.get(key)
    if value is None:
        raise LayoutError(f"instance JSON has no {key!r}")
    if not isinstance(value, str) or not value:
        raise LayoutError(f"{key!r} must be a non-empty string, not {value!r:.80}")
    if len(value) > limit:
        raise LayoutError(f"{key!r} is {len(value)} characters, more than {limit}")
    if not pattern.fullmatch(value):
        raise LayoutError(f"{key!r} has characters that are not allowed: {value!r:.80}")
    return value


def _optional_text(document: Mapping[str, Any], key: str, limit: int) -> None:
    value = document.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise LayoutError(f"{key!r} must be a string of at most {limit} characters")


def _port(value: Any) -> int:
    if value is None:
        raise LayoutError("instance JSON has no 'port'")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise LayoutError(f"'port' must be an integer 1-65535, not {value!r:.40}")
    return value


def _weight(value: Any) -> Optional[int]:
    """nerve accepts a non-negative integer or a string of digits."""
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit() and len(value) <= 3:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WEIGHT:
        raise LayoutError(f"'weight' must be an integer 0-{MAX_WEIGHT}, not {value!r:.40}")
    return value


def _labels(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise LayoutError(f"'labels' must be an object, not {type(value).__name__}")
    if len(value) > MAX_LABELS:
        raise LayoutError(f"'labels' has {len(value)} entries, more than {MAX_LABELS}")
    for key, text in value.items():
        if not key or len(key) > MAX_LABEL_KEY or _CONTROL.search(key):
            raise LayoutError(
                f"label name {key!r:.80} is empty, too long or has control characters"
            )
        if not isinstance(text, str):
            raise LayoutError(f"label {key!r:.80} must be a string, not {type(text).__name__}")
        if len(text) > MAX_LABEL_VALUE or _CONTROL.search(text):
            raise LayoutError(f"label {key!r:.80} is too long or has control characters")
    return tuple(sorted(value.items()))


def parse_options(data: Optional[bytes]) -> dict[str, Any]:
    """A service's options node: one JSON object of at most MAX_OPTIONS_BYTES.

    Opaque here: the sidecar's catalog types give the keys their meaning.
    """
    if not data:
        raise LayoutError("options node has no data")
    return _json_object(data, MAX_OPTIONS_BYTES, "options", "options are not JSON")


def _json_object(data: bytes, limit: int, what: str, not_json: str) -> dict[str, Any]:
    """``data`` as one JSON object of at most ``limit`` bytes; LayoutError says which rule broke,
    each message opening with ``what`` (or ``not_json`` when it does not parse)."""
    if len(data) > limit:
        raise LayoutError(f"{what} JSON is {len(data)} bytes, more than {limit}")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise LayoutError(f"{not_json} ({exc})") from exc
    if not isinstance(document, dict):
        raise LayoutError(f"{what} JSON is a {type(document).__name__}, not an object")
    return document
