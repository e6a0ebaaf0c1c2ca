"""The shape of a Marathon app definition, as Marathon's RAML types read it (>= 1.5).

A tiny declarative schema (strings, integers, numbers, booleans, enums, arrays, objects, maps,
unions) and a checker that reports what Marathon's generated play-json readers report: for each
JSON path, keys such as ``error.expected.jsstring``, ``error.path.missing``, ``error.min``.
Marathon answers those with 422 "Invalid JSON". The rules that need more than a type (Marathon's
"Object is not valid") live in :mod:`marathon_bridge.definitions.validate`.

Facts carried over from the RAML (``app.raml``, ``appContainer.raml``, ``healthCheck.raml``,
``network.raml``, ``readinessCheck.raml``, ...) and from its code generator:
- every field of an object is read, and every error of every field is reported at once;
- an optional field that is ``null`` counts as absent;
- enums match case-insensitively; anything else gives ``error.unknown.enum.literal``;
- ``int32`` fields refuse fractions and values beyond 32 bits with ``error.expected.int``
  (``int64``: ``error.expected.long``); ``1.0`` is accepted as ``1``;
- minItems/maxItems are reported as ``error.minLength``/``error.maxLength``;
- keys an object does not declare are ignored (Marathon drops them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from marathon_bridge.errors import Issue

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Str:
    min_length: Optional[int] = None
    max_length: Optional[int] = None
    pattern: Optional[str] = None  # must match the whole string
    what: str = ""  # human description of the pattern, for human_message


@dataclass(frozen=True)
class Int:
    minimum: Optional[int] = None
    maximum: Optional[int] = None
    long: bool = False


@dataclass(frozen=True)
class Num:
    minimum: Optional[float] = None
    maximum: Optional[float] = None


@dataclass(frozen=True)
class Bool:
    pass


@dataclass(frozen=True)
class Enum:
    values: tuple[str, ...]

    def canonical(self, value: Any) -> Optional[str]:
        """The declared spelling of ``value`` (matched case-insensitively), or None."""
        if isinstance(value, str):
            lowered = value.lower()
            for literal in self.values:
                if literal.lower() == lowered:
                    return literal
        return None


@dataclass(frozen=True)
class Arr:
    item: Spec
    min_items: Optional[int] = None
    max_items: Optional[int] = None


@dataclass(frozen=True)
class Field:
    spec: Spec
    required: bool = False


@dataclass(frozen=True)
class Obj:
    fields: Mapping[str, Field] = field(default_factory=dict)


@dataclass(frozen=True)
class MapOf:
    value: Spec


@dataclass(frozen=True)
class OneOf:
    """A union chosen by JSON type (a string or an object, ...); the first option reports."""

    options: tuple[Spec, ...]


@dataclass(frozen=True)
class Anything:
    pass


Spec = Union[Str, Int, Num, Bool, Enum, Arr, Obj, MapOf, OneOf, Anything]


def _obj(**fields: Union[Spec, Field]) -> Obj:
    return Obj({name: f if isinstance(f, Field) else Field(f) for name, f in fields.items()})


def _required(spec: Spec) -> Field:
    return Field(spec, required=True)


# --------------------------------------------------------------------------- the app schema

PATH_ID_WHAT = (
    "an app id: path segments of lowercase letters, digits, '-' and '.', "
    "not starting or ending with '-', separated by '/'"
)
NAME_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
NAME_WHAT = "a name of lowercase letters, digits and '-', not starting or ending with '-'"
NETWORK_NAME_PATTERN = r"[a-z0-9]([-a-z0-9_]*[a-z0-9])?"

ANY_PORT = Int(minimum=0, maximum=65535)
LABELS = MapOf(Str())
LEGACY_NAME = Str(min_length=1, pattern=NAME_PATTERN, what=NAME_WHAT)
NAME = Str(min_length=1, max_length=63, pattern=NAME_PATTERN, what=NAME_WHAT)
NETWORK_PROTOCOL = Enum(("tcp", "udp", "udp,tcp"))
URI = Str(min_length=1, max_length=1024)
PATH_ID = Str(min_length=1, what=PATH_ID_WHAT)  # the grammar is checked in validate.check_id

PORT_DEFINITION = _obj(port=ANY_PORT, labels=LABELS, name=LEGACY_NAME, protocol=NETWORK_PROTOCOL)

PORT_MAPPING = _obj(
    containerPort=ANY_PORT,
    hostPort=ANY_PORT,
    labels=LABELS,
    name=LEGACY_NAME,
    protocol=NETWORK_PROTOCOL,
    servicePort=ANY_PORT,
    networkNames=Arr(NAME),
)

DOCKER = _obj(
    credential=_obj(principal=_required(Str()), secret=Str()),
    pullConfig=_obj(secret=_required(Str(min_length=1))),
    forcePullImage=Bool(),
    image=_required(Str(min_length=1)),
    network=Enum(("BRIDGE", "HOST", "NONE", "USER")),
    parameters=Arr(_obj(key=_required(Str(min_length=1)), value=_required(Str()))),
    portMappings=Arr(PORT_MAPPING),
    privileged=Bool(),
)

CONTAINER = _obj(
    type=Enum(("MESOS", "DOCKER")),
    docker=DOCKER,
    linuxInfo=Obj(),
    volumes=Arr(Obj()),
    portMappings=Arr(PORT_MAPPING),
)

HEALTH_CHECK_PROTOCOLS = (
    "HTTP",
    "HTTPS",
    "TCP",
    "COMMAND",
    "MESOS_TCP",
    "MESOS_HTTP",
    "MESOS_HTTPS",
)

HEALTH_CHECK = _obj(
    command=_obj(value=_required(Str())),
    gracePeriodSeconds=Int(minimum=0),
    ignoreHttp1xx=Bool(),
    intervalSeconds=Int(minimum=0),
    maxConsecutiveFailures=Int(minimum=0),
    path=Str(),
    port=ANY_PORT,
    portIndex=ANY_PORT,
    protocol=Enum(HEALTH_CHECK_PROTOCOLS),
    ipProtocol=Enum(("IPv4", "IPv6")),
    timeoutSeconds=Int(),
    delaySeconds=Int(minimum=0),
)

READINESS_CHECK = _obj(
    name=Str(min_length=1),
    protocol=Enum(("HTTP", "HTTPS")),
    path=Str(min_length=1, max_length=1024),
    portName=LEGACY_NAME,
    intervalSeconds=Int(minimum=0),
    timeoutSeconds=Int(minimum=1),
    httpStatusCodesForReady=Arr(Int(minimum=100, maximum=999), min_items=1),
    preserveLastResponse=Bool(),
)

NETWORK = _obj(
    name=Str(min_length=1, max_length=63, pattern=NETWORK_NAME_PATTERN, what=NAME_WHAT),
    mode=Enum(("container", "container/bridge", "host")),
    labels=LABELS,
)

IP_ADDRESS = _obj(
    discovery=_obj(
        ports=Arr(
            _obj(
                number=ANY_PORT,
                name=_required(LEGACY_NAME),
                protocol=NETWORK_PROTOCOL,
                labels=LABELS,
            )
        )
    ),
    groups=Arr(Str()),
    labels=LABELS,
    networkName=Str(min_length=1),
)

UNREACHABLE_STRATEGY = OneOf(
    (
        _obj(
            inactiveAfterSeconds=Int(minimum=0, long=True),
            expungeAfterSeconds=Int(minimum=0, long=True),
        ),
        Enum(("disabled",)),
    )
)

ENV_VALUE = OneOf((Str(), _obj(secret=_required(Str()))))

APP = _obj(
    id=_required(PATH_ID),
    acceptedResourceRoles=Arr(Str()),
    args=Arr(Str()),
    backoffFactor=Num(minimum=1.0),
    backoffSeconds=Int(minimum=0),
    cmd=Str(min_length=1),
    constraints=Arr(Arr(Str())),
    container=CONTAINER,
    cpus=Num(minimum=0.001),
    dependencies=Arr(Str()),
    disk=Num(minimum=0),
    env=MapOf(ENV_VALUE),
    executor=Str(pattern=r"(//cmd)|(/?[^/]+(/[^/]+)*)|", what="'//cmd', a path, or empty"),
    executorResources=Obj(),
    fetch=Arr(
        _obj(
            uri=_required(URI),
            extract=Bool(),
            executable=Bool(),
            cache=Bool(),
            destPath=Str(min_length=1, max_length=1024),
        )
    ),
    healthChecks=Arr(HEALTH_CHECK),
    check=Obj(),
    instances=Int(minimum=0),
    labels=LABELS,
    maxLaunchDelaySeconds=Int(minimum=0),
    mem=Num(minimum=0),
    gpus=Int(minimum=0),
    ipAddress=IP_ADDRESS,
    networks=Arr(NETWORK),
    ports=Arr(ANY_PORT),
    portDefinitions=Arr(PORT_DEFINITION),
    readinessChecks=Arr(READINESS_CHECK),
    residency=_obj(
        relaunchEscalationTimeoutSeconds=Int(minimum=0, long=True),
        taskLostBehavior=Enum(("WAIT_FOREVER", "RELAUNCH_AFTER_TIMEOUT")),
    ),
    resourceLimits=Obj(),
    requirePorts=Bool(),
    secrets=MapOf(_obj(source=_required(Str()))),
    taskKillGracePeriodSeconds=Int(minimum=0),
    upgradeStrategy=_obj(
        maximumOverCapacity=_required(Num(minimum=0.0, maximum=1.0)),
        minimumHealthCapacity=_required(Num(minimum=0.0, maximum=1.0)),
    ),
    uris=Arr(URI),
    user=Str(),
    version=Str(),
    versionInfo=Obj(),
    killSelection=Enum(("YOUNGEST_FIRST", "OLDEST_FIRST")),
    unreachableStrategy=UNREACHABLE_STRATEGY,
    tty=Bool(),
    role=Str(min_length=1),
)

# What Marathon writes on read but never reads (AppInfo in app.raml): known, not checked.
READ_ONLY_FIELDS = (
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "readinessCheckResults",
    "tasks",
    "lastTaskFailure",
    "tasksStats",
    "taskStats",
)


# --------------------------------------------------------------------------- checking


def child_path(path: str, key: str) -> str:
    return f"{path}/{key}"


def index_path(path: str, index: int) -> str:
    return f"{path}({index})"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_integral(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()


def check(spec: Spec, value: Any, path: str = "") -> list[Issue]:
    """Every shape problem of ``value`` against ``spec``; paths as Marathon writes them."""
    issues: list[Issue] = []
    _check(spec, value, path, issues)
    return issues


def _type_issue(issues: list[Issue], path: str, key: str) -> None:
    issues.append(Issue(path=path or "/", message=key, kind="type"))


def _check(spec: Spec, value: Any, path: str, issues: list[Issue]) -> None:
    if isinstance(spec, Obj):
        _check_obj(spec, value, path, issues)
    elif isinstance(spec, Arr):
        _check_arr(spec, value, path, issues)
    elif isinstance(spec, MapOf):
        if not isinstance(value, Mapping):
            _type_issue(issues, path, "error.expected.jsobject")
            return
        for key, item in value.items():
            _check(spec.value, item, child_path(path, str(key)), issues)
    elif isinstance(spec, OneOf):
        chosen = next((o for o in spec.options if accepts_json_type(o, value)), spec.options[0])
        _check(chosen, value, path, issues)
    elif isinstance(spec, Str):
        _check_str(spec, value, path, issues)
    elif isinstance(spec, Int):
        _check_int(spec, value, path, issues)
    elif isinstance(spec, Num):
        _check_num(spec, value, path, issues)
    elif isinstance(spec, Bool):
        if not isinstance(value, bool):
            _type_issue(issues, path, "error.expected.jsboolean")
    elif isinstance(spec, Enum) and spec.canonical(value) is None:
        _type_issue(issues, path, "error.unknown.enum.literal")


def accepts_json_type(spec: Spec, value: Any) -> bool:
    """Whether ``value`` has the JSON type ``spec`` reads (not whether it is valid)."""
    if isinstance(spec, (Obj, MapOf)):
        return isinstance(value, Mapping)
    if isinstance(spec, Arr):
        return isinstance(value, list)
    if isinstance(spec, (Str, Enum)):
        return isinstance(value, str)
    if isinstance(spec, (Int, Num)):
        return is_number(value)
    if isinstance(spec, Bool):
        return isinstance(value, bool)
    return True


def _check_obj(spec: Obj, value: Any, path: str, issues: list[Issue]) -> None:
    if not isinstance(value, Mapping):
        _type_issue(issues, path, "error.expected.jsobject")
        return
    for name, fld in spec.fields.items():
        here = child_path(path, name)
        if name not in value:
            if fld.required:
                _type_issue(issues, here, "error.path.missing")
            continue
        item = value[name]
        if item is None and not fld.required:
            continue
        _check(fld.spec, item, here, issues)


def _check_arr(spec: Arr, value: Any, path: str, issues: list[Issue]) -> None:
    if not isinstance(value, list):
        _type_issue(issues, path, "error.expected.jsarray")
        return
    for index, item in enumerate(value):
        _check(spec.item, item, index_path(path, index), issues)
    if spec.min_items is not None and len(value) < spec.min_items:
        _type_issue(issues, path, "error.minLength")
    if spec.max_items is not None and len(value) > spec.max_items:
        _type_issue(issues, path, "error.maxLength")


def _check_str(spec: Str, value: Any, path: str, issues: list[Issue]) -> None:
    if not isinstance(value, str):
        _type_issue(issues, path, "error.expected.jsstring")
        return
    if spec.min_length is not None and len(value) < spec.min_length:
        _type_issue(issues, path, "error.minLength")
    if spec.max_length is not None and len(value) > spec.max_length:
        _type_issue(issues, path, "error.maxLength")
    if spec.pattern is not None and re.fullmatch(spec.pattern, value) is None:
        _type_issue(issues, path, "error.pattern")


def _check_int(spec: Int, value: Any, path: str, issues: list[Issue]) -> None:
    if not is_number(value):
        _type_issue(issues, path, "error.expected.jsnumber")
        return
    low, high = INT64 if spec.long else INT32
    if not is_integral(value) or not low <= value <= high:
        _type_issue(issues, path, "error.expected.long" if spec.long else "error.expected.int")
        return
    _check_bounds(spec.minimum, spec.maximum, value, path, issues)


def _check_num(spec: Num, value: Any, path: str, issues: list[Issue]) -> None:
    if not is_number(value):
        _type_issue(issues, path, "error.expected.jsnumber")
        return
    _check_bounds(spec.minimum, spec.maximum, value, path, issues)


def _check_bounds(
    minimum: Optional[float], maximum: Optional[float], value: float, path: str, issues: list[Issue]
) -> None:
    if minimum is not None and value < minimum:
        _type_issue(issues, path, "error.min")
    if maximum is not None and value > maximum:
        _type_issue(issues, path, "error.max")


# --------------------------------------------------------------------------- lookups

_SEGMENT = re.compile(r"/([^/(]*)|\((\d+)\)")


def spec_at(path: str, root: Spec = APP) -> Optional[Spec]:
    """The spec that describes the value at a Marathon path like ``/container/portMappings(0)``."""
    spec: Optional[Spec] = root
    for match in _SEGMENT.finditer(path):
        key, index = match.group(1), match.group(2)
        if spec is None:
            return None
        if index is not None:
            spec = spec.item if isinstance(spec, Arr) else None
        elif key == "" and match.group(0) == "/" and path == "/":
            return root
        else:
            spec = field_spec(spec, key)
    return spec


def field_spec(spec: Spec, key: str) -> Optional[Spec]:
    if isinstance(spec, Obj):
        fld = spec.fields.get(key)
        return fld.spec if fld else None
    if isinstance(spec, MapOf):
        return spec.value
    if isinstance(spec, OneOf):
        for option in spec.options:
            found = field_spec(option, key)
            if found is not None:
                return found
    return None


def declares(spec: Optional[Spec], key: str) -> bool:
    """Whether Marathon reads ``key`` in an object described by ``spec`` (maps read every key)."""
    if isinstance(spec, (MapOf, Anything)) or spec is None:
        return True
    if isinstance(spec, Obj):
        return not spec.fields or key in spec.fields
    if isinstance(spec, OneOf):
        return any(
            declares(option, key) for option in spec.options if isinstance(option, (Obj, MapOf))
        )
    return True
