"""marathon-python interop: its ``MarathonApp`` objects to our plain app dicts, and back.

Needs the extra ``marathon-python`` (``pip install 'marathon-bridge[marathon-python]'``); the
``marathon`` package is imported only when one of these functions runs.

marathon-python's own serializer (``MarathonObject.to_json`` / ``json_repr`` with its JSON
encoders) breaks on Python >= 3.10 (it uses ``collections.Iterable``), so this module never calls
it: :func:`from_marathon_app` walks the objects' attributes itself (snake_case attribute names
become Marathon's camelCase keys), and :func:`to_marathon_app` builds the objects from their
constructors, filtering each level to the arguments the constructor takes.

What does not survive, and why:
- marathon-python stores absent lists and maps as ``[]``/``{}`` and cannot tell them from empty
  ones; :func:`from_marathon_app` leaves out ``None``, ``[]`` and ``{}`` values. (Marathon treats
  an absent ``portDefinitions`` as "one default port" and ``[]`` as "no ports": that difference
  is lost inside marathon-python, not here.)
- marathon-python fills some defaults itself (``docker.privileged``/``forcePullImage`` false,
  ``docker.parameters`` [], port mapping ``protocol`` "tcp", volume ``mode`` "RW",
  container ``type`` "DOCKER"); they come back filled.
- fields marathon-python does not model (``ipAddress``, ``networks``'s siblings such as
  ``tty``, ``check``, ``container.linuxInfo``, unknown keys inside ``container.docker``, any
  field newer than marathon-python 0.13, ...) cannot be carried by a ``MarathonApp``.
  :func:`unknown_to_marathon_python` lists their paths; :func:`to_marathon_app` logs them and
  drops them, or raises :class:`~marathon_bridge.errors.DefinitionError` with ``strict=True``.
- Marathon-owned read-only fields (tasks, task counts, deployments, last task failure, task
  stats, readiness results) are not given to ``to_marathon_app`` (it builds definitions);
  :func:`from_marathon_app` does convert them when a ``MarathonApp`` carries them.
"""

from __future__ import annotations

import datetime
import inspect
import logging
import re
from collections.abc import Mapping
from typing import Any, Optional

from marathon_bridge.definitions.normalize import MARATHON_OWNED
from marathon_bridge.errors import DefinitionError, Issue

logger = logging.getLogger(__name__)

INSTALL_HINT = "marathon-python is not installed: pip install 'marathon-bridge[marathon-python]'"
# What Marathon derives and never reads back, but for the version fields, which the models carry.
READ_ONLY = tuple(f for f in MARATHON_OWNED if f not in ("version", "versionInfo"))


def _marathon_models() -> Any:
    """The ``marathon.models`` module, or ImportError with the install hint."""
    try:
        import marathon.models
        import marathon.models.app
        import marathon.models.container
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return marathon.models


def to_snake(name: str) -> str:
    """``portDefinitions`` -> ``port_definitions`` (marathon-python's rule)."""
    first = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z0-9])([A-Z])", r"\1_\2", first).lower()


def to_camel(name: str) -> str:
    """``port_definitions`` -> ``portDefinitions`` (marathon-python's rule)."""
    words = name.split("_")
    return words[0] + "".join(w.capitalize() for w in words[1:])


# --------------------------------------------------------------------------- objects -> dicts


def from_marathon_app(obj: Any) -> dict:
    """A marathon-python ``MarathonApp`` (or any of its model objects) as a Marathon JSON dict."""
    models = _marathon_models()
    value = _plain(obj, models)
    if not isinstance(value, dict):
        raise TypeError(f"expected a marathon-python model object, got {type(obj).__name__}")
    return value


def _plain(value: Any, models: Any) -> Any:
    if isinstance(value, models.MarathonConstraint):
        parts = [value.field, value.operator]
        if value.value is not None:
            parts.append(str(value.value))
        return parts
    if isinstance(value, models.MarathonObject):
        return {to_camel(k): _plain(v, models) for k, v in vars(value).items() if _kept(v)}
    if isinstance(value, datetime.datetime):
        return _timestamp(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, models) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, models) for k, v in value.items()}
    return value


def _kept(value: Any) -> bool:
    return value is not None and not (isinstance(value, (list, tuple, dict)) and not value)


def _timestamp(value: datetime.datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------- dicts -> objects


def to_marathon_app(app: Mapping[str, Any], *, strict: bool = False) -> Any:
    """A marathon-python ``MarathonApp`` built from a Marathon app dict.

    Fields marathon-python cannot carry are logged and dropped (``strict=True``: raise
    DefinitionError naming them). Values marathon-python refuses (an id it rejects, an unknown
    container type, ...) raise DefinitionError.
    """
    models = _marathon_models()
    lost = unknown_to_marathon_python(app)
    if lost and strict:
        raise DefinitionError(
            [Issue(path=p, message="not supported by marathon-python") for p in lost]
        )
    if lost:
        logger.warning(
            "fields dropped for marathon-python", extra={"fields": lost, "app_id": app.get("id")}
        )
    return _build_app(app, models)


def _build_app(app: Mapping[str, Any], models: Any) -> Any:
    definition = {k: v for k, v in app.items() if k not in READ_ONLY}
    try:
        return models.MarathonApp(**_app_kwargs(definition, models))
    except Exception as exc:  # marathon-python raises ValueError, TypeError, InvalidChoiceError...
        raise DefinitionError(
            [Issue(path="/", message=f"marathon-python refused the app: {exc}")]
        ) from exc


def _accepted(cls: Any) -> tuple[set[str], bool]:
    """Constructor argument names of a marathon-python class, and whether it takes **kwargs."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names - {"self"}, any(p.kind == p.VAR_KEYWORD for p in parameters)


def _kwargs(cls: Any, data: Mapping[str, Any], nested: Optional[Mapping[str, Any]] = None) -> dict:
    names, takes_any = _accepted(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = to_snake(str(key))
        if name not in names and not takes_any:
            continue
        if nested and name in nested and value is not None:
            value = nested[name](value)
        out[name] = value
    return out


def _objects(cls: Any, value: Any, nested: Optional[Mapping[str, Any]] = None) -> Any:
    """One object from a dict, or a list of objects from a list of dicts (others unchanged)."""
    if isinstance(value, Mapping):
        return cls(**_kwargs(cls, value, nested))
    if isinstance(value, list):
        return [cls(**_kwargs(cls, v, nested)) if isinstance(v, Mapping) else v for v in value]
    return value


def _app_kwargs(app: Mapping[str, Any], models: Any) -> dict:
    app_module = models.app
    container_module = models.container

    def mapping(value: Any) -> Any:
        return _objects(container_module.MarathonContainerPortMapping, value)

    docker_nested = {"port_mappings": mapping}

    def docker(value: Any) -> Any:
        return _objects(container_module.MarathonDockerContainer, value, docker_nested)

    container_nested = {
        "docker": docker,
        "port_mappings": mapping,
        "volumes": lambda v: _objects(container_module.MarathonContainerVolume, v),
    }

    def unreachable(value: Any) -> Any:
        return (
            value
            if isinstance(value, str)
            else _objects(app_module.MarathonUnreachableStrategy, value)
        )

    def secrets(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {k: _objects(app_module.Secret, v) for k, v in value.items()}

    nested = {
        "container": lambda v: _objects(container_module.MarathonContainer, v, container_nested),
        "health_checks": lambda v: _objects(
            app_module.MarathonHealthCheck, v, {"command": _command_text}
        ),
        "port_definitions": lambda v: _objects(app_module.PortDefinition, v),
        "readiness_checks": lambda v: _objects(app_module.ReadinessCheck, v),
        "upgrade_strategy": lambda v: _objects(app_module.MarathonUpgradeStrategy, v),
        "unreachable_strategy": unreachable,
        "version_info": lambda v: _objects(app_module.MarathonAppVersionInfo, v),
        "secrets": secrets,
    }
    return _kwargs(models.MarathonApp, app, nested)


def _command_text(command: Any) -> Any:
    """marathon-python takes a health check command as its text (a dict is "deprecated")."""
    if isinstance(command, Mapping) and isinstance(command.get("value"), str) and len(command) == 1:
        return command["value"]
    return command


# --------------------------------------------------------------------------- what is lost


def unknown_to_marathon_python(app: Mapping[str, Any]) -> list[str]:
    """Paths (``/ipAddress``, ``/container/linuxInfo``) of fields a MarathonApp cannot carry.

    Found by building the object and reading it back: whatever non-empty value does not come
    back is lost. Marathon-owned read-only fields are not listed.
    """
    models = _marathon_models()
    definition = {k: v for k, v in app.items() if k not in READ_ONLY}
    try:
        back = _plain(_build_app(definition, models), models)
    except DefinitionError:
        return []
    lost: list[str] = []
    _collect_lost(definition, back, "", lost)
    return lost


def _collect_lost(given: Any, back: Any, path: str, lost: list[str]) -> None:
    if isinstance(given, Mapping):
        back_map = back if isinstance(back, Mapping) else {}
        for key, value in given.items():
            if not _kept(value):
                continue
            here = f"{path}/{key}"
            if key not in back_map:
                lost.append(here)
            else:
                _collect_lost(value, back_map[key], here, lost)
    elif isinstance(given, list) and isinstance(back, list):
        for index, (value, returned) in enumerate(zip(given, back)):
            _collect_lost(value, returned, f"{path}({index})", lost)
