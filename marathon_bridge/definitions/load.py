"""Load app definitions from ``.json``, ``.yaml`` and ``.yml`` files.

A file holds one app (an object), a list of apps, or a group
(``{"id": "/g", "apps": [...], "groups": [...]}``, also a saved ``GET /v2/apps`` body, whose
``apps`` sit under the root group ``/``). Apps inside groups get absolute ids under their group:
the relative id ``web`` in group ``/g`` becomes ``/g/web``; nested groups resolve the same way.

Every app comes back as an :class:`AppSource` (its own deep copy: YAML aliases are not shared)
whose ``source`` says where it was found: ``web.json`` (the file is the app), ``apps.yaml#[2]``
(third item of a top-level list), ``g.json#apps[2]`` or ``g.json#groups[0].apps[1]`` (inside a
group).

Bad files raise :class:`~marathon_bridge.errors.DefinitionError`; each issue names the file,
and the line and column when the parser knows them. The loader protects itself: files over
16 MiB are refused before they are read, only regular files are read, nesting deeper than 100
levels is refused, and YAML aliases are limited (at most 100 alias uses and at most 1,000,000
nodes once aliases are expanded) so that an "alias bomb" fails fast instead of eating memory.
YAML timestamps stay strings (Marathon's ``version`` is one) and only JSON-compatible values
(string keys; strings, numbers, booleans, null, lists, objects) are accepted.
"""

from __future__ import annotations

import json
import math
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from marathon_bridge.definitions.positions import (
    DocPath,
    FilePositions,
    Position,
    marathon_path_parts,
    positions_for,
)
from marathon_bridge.errors import DefinitionError, Issue

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 100
MAX_YAML_ALIASES = 100
MAX_YAML_NODES = 1_000_000

JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class AppSource:
    """One app definition and where it came from (``"apps.yaml#apps[2]"``, ``"web.json"``).

    ``doc_path`` is where the app sits in its file (``("apps", 2)``) and ``positions`` the
    file's positions, so that :meth:`located` can give every issue its line and column.
    """

    app: dict
    source: str
    doc_path: DocPath = ()
    positions: Optional[FilePositions] = field(default=None, compare=False, repr=False)

    def locate(self, path: str) -> Optional[Position]:
        """Line and column of a Marathon path of this app (``/healthChecks(0)/protocol``)."""
        if self.positions is None:
            return None
        return self.positions.locate(self.doc_path + marathon_path_parts(path))

    def located(self, issues: Iterable[Issue]) -> list[Issue]:
        """The issues with this app's source, and their line and column when known."""
        out = []
        for issue in issues:
            found = self.locate(issue.path)
            line, column = found if found is not None else (0, 0)
            out.append(replace(issue, source=issue.source or self.source, line=line, column=column))
        return out


class _LoadFailure(Exception):
    """Internal: one problem found while reading a file (turned into a DefinitionError)."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def load_definitions(path: Union[str, Path]) -> list[AppSource]:
    """Read one definition file and return its apps, in file order.

    Raises DefinitionError (nothing else) when the file is missing, unreadable, too big, not
    UTF-8, empty, not valid JSON/YAML, or does not hold an app, a list of apps or a group.
    """
    name = str(path)
    try:
        data, positions = _parse_file(Path(path))
        return [replace(a, positions=positions) for a in _apps_from_document(data, name)]
    except _LoadFailure as failure:
        issue = Issue("/", failure.message, name, "type", failure.line, failure.column)
        raise DefinitionError([issue]) from None


# --------------------------------------------------------------------------- reading


def _parse_file(path: Path) -> tuple[Any, FilePositions]:
    suffix = path.suffix.lower()
    if suffix not in JSON_SUFFIXES + YAML_SUFFIXES:
        raise _LoadFailure(
            f"unsupported file type '{suffix or path.name}': use .json, .yaml or .yml"
        )
    raw = _read_bounded(path)
    text = _decode_utf8(raw)
    if not text.strip():
        raise _LoadFailure("file is empty")
    is_json = suffix in JSON_SUFFIXES
    data = _parse_json(text) if is_json else _parse_yaml(text)
    _check_depth(data)
    _check_json_compatible(data)
    return data, positions_for(text, is_json, _compose_yaml)


def _read_bounded(path: Path) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise _LoadFailure("file not found") from None
    except OSError as exc:
        raise _LoadFailure(f"cannot read file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise _LoadFailure("is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise _LoadFailure("not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise _LoadFailure(f"file is too big ({info.st_size} bytes; the limit is {MAX_FILE_BYTES})")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _LoadFailure(f"cannot read file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _LoadFailure(f"file is too big (more than {MAX_FILE_BYTES} bytes)")
    return raw


def _decode_utf8(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _LoadFailure(f"not valid UTF-8 (byte 0x{raw[exc.start]:02x})", line, column) from None
    return text[1:] if text.startswith("\ufeff") else text


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _parse_json(text: str) -> Any:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _LoadFailure(f"invalid JSON: {exc.msg}", exc.lineno, exc.colno) from None
    except ValueError as exc:
        raise _LoadFailure(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise _LoadFailure(f"nesting is deeper than {MAX_DEPTH} levels") from None
    return data


# --------------------------------------------------------------------------- YAML


_NO_TIMESTAMPS = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Bounds(Composer):
    """Composer that refuses deep nesting and many aliases, and keeps timestamps as strings."""

    yaml_implicit_resolvers = _NO_TIMESTAMPS
    _depth = 0
    _aliases = 0

    # provided by the parser half of the concrete loaders (pure Python or libyaml)
    check_event: Callable[..., bool]
    peek_event: Callable[[], Any]

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                mark = self.peek_event().start_mark
                raise _LoadFailure(
                    f"too many YAML aliases (more than {MAX_YAML_ALIASES})",
                    mark.line + 1,
                    mark.column + 1,
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _LoadFailure(
                    f"nesting is deeper than {MAX_DEPTH} levels", mark.line + 1, mark.column + 1
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _PurePythonLoader(_Bounds, yaml.SafeLoader):
    """Bounded safe loading with PyYAML's pure-Python parser."""


_LOADERS: list[Callable[[str], Any]] = [_PurePythonLoader]

if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser

    class _LibYamlLoader(_Bounds, SafeConstructor, Resolver, CParser):
        """The same, with libyaml's (much faster) C parser producing the events."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    _LOADERS.insert(0, _LibYamlLoader)


def _parse_yaml(text: str) -> Any:
    loader = _LOADERS[0](text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _LoadFailure("file is empty")
        _check_expanded_size(node)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if "nesting depth" in problem:  # libyaml's own limit (1000)
            raise _LoadFailure(f"nesting is deeper than {MAX_DEPTH} levels") from None
        if mark is not None:
            raise _LoadFailure(f"invalid YAML: {problem}", mark.line + 1, mark.column + 1) from None
        raise _LoadFailure(f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise _LoadFailure(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise _LoadFailure(f"nesting is deeper than {MAX_DEPTH} levels") from None
    finally:
        dispose = getattr(loader, "dispose", None)
        if dispose is not None:
            dispose()


def _compose_yaml(text: str) -> Optional[yaml.Node]:
    """The document's node tree (for positions; the text parsed already)."""
    loader = _LOADERS[0](text)
    try:
        return loader.get_single_node()
    finally:
        dispose = getattr(loader, "dispose", None)
        if dispose is not None:
            dispose()


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expanded_size(root: yaml.Node) -> None:
    """Count nodes as if every alias were expanded; refuse bombs and recursive aliases."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            if total > MAX_YAML_NODES:
                raise _LoadFailure(
                    f"YAML has more than {MAX_YAML_NODES} nodes once aliases are expanded",
                    node.start_mark.line + 1,
                    node.start_mark.column + 1,
                )
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _LoadFailure(
                "recursive YAML alias", node.start_mark.line + 1, node.start_mark.column + 1
            )
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


# --------------------------------------------------------------------------- shape checks


def _check_depth(data: Any) -> None:
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _LoadFailure(f"nesting is deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value)


def _check_json_compatible(data: Any) -> None:
    """Only what JSON can say: YAML may produce dates, bytes, sets, non-string keys, NaN."""
    stack: list[tuple[Any, str]] = [(data, "")]
    seen: set[int] = set()
    while stack:
        value, where = stack.pop()
        if isinstance(value, (dict, list)):
            if id(value) in seen:  # shared by a YAML alias: already checked
                continue
            seen.add(id(value))
        if isinstance(value, dict):
            for key, child in value.items():
                if not isinstance(key, str):
                    raise _LoadFailure(f"{where or '/'}: key {key!r} is not a string (quote it)")
                stack.append((child, f"{where}/{key}"))
        elif isinstance(value, list):
            stack.extend((child, f"{where}({i})") for i, child in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            raise _LoadFailure(f"{where or '/'}: {value} is not a JSON number")
        elif value is not None and not isinstance(value, (str, int, float, bool)):
            raise _LoadFailure(
                f"{where or '/'}: a {type(value).__name__} value is not valid JSON (quote it)"
            )


# --------------------------------------------------------------------------- apps and groups


def _apps_from_document(data: Any, name: str) -> list[AppSource]:
    if isinstance(data, list):
        apps: list[AppSource] = []
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise _LoadFailure(f"item [{index}] is {_json_type(item)}, expected an app object")
            apps.append(AppSource(copy_json(item), f"{name}#[{index}]", (index,)))
        return apps
    if isinstance(data, dict):
        if _is_group(data):
            return _apps_from_group(data, "/", name, "", ())
        return [AppSource(app=copy_json(data), source=name)]
    raise _LoadFailure(
        f"top level is {_json_type(data)}: expected an app, a list of apps or a group"
    )


def _is_group(data: Mapping[str, Any]) -> bool:
    return "apps" in data or "groups" in data


def _apps_from_group(
    group: Mapping[str, Any], parent_id: str, name: str, where: str, doc_path: DocPath
) -> list[AppSource]:
    raw_id = group.get("id", parent_id)
    if not isinstance(raw_id, str):
        raise _LoadFailure(f"{where or 'group'} id is {_json_type(raw_id)}, expected a string")
    group_id = resolve_id(raw_id, parent_id)
    apps_value = group.get("apps") or []
    groups_value = group.get("groups") or []
    if not isinstance(apps_value, list):
        raise _LoadFailure(f"{where}apps is {_json_type(apps_value)}, expected a list")
    if not isinstance(groups_value, list):
        raise _LoadFailure(f"{where}groups is {_json_type(groups_value)}, expected a list")
    out: list[AppSource] = []
    for index, app in enumerate(apps_value):
        here = f"{where}apps[{index}]"
        if not isinstance(app, dict):
            raise _LoadFailure(f"{here} is {_json_type(app)}, expected an app object")
        placed = copy_json(app)
        if isinstance(placed.get("id"), str):
            placed["id"] = resolve_id(placed["id"], group_id)
        out.append(AppSource(placed, f"{name}#{here}", (*doc_path, "apps", index)))
    for index, child in enumerate(groups_value):
        here = f"{where}groups[{index}]"
        if not isinstance(child, dict):
            raise _LoadFailure(f"{here} is {_json_type(child)}, expected a group object")
        out.extend(
            _apps_from_group(child, group_id, name, here + ".", (*doc_path, "groups", index))
        )
    return out


def copy_json(value: Any) -> Any:
    """Deep copy of JSON-like data (dicts and lists), without recursion limits."""
    if not isinstance(value, (dict, list, Mapping)):
        return value
    root: Any = {} if isinstance(value, Mapping) else []
    stack: list[tuple[Any, Any]] = [(value, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, Mapping) else enumerate(source)
        for key, item in items:
            if isinstance(item, (dict, list, Mapping)):
                copied: Any = {} if isinstance(item, Mapping) else []
                stack.append((item, copied))
            else:
                copied = item
            if isinstance(target, dict):
                target[key] = copied
            else:
                target.append(copied)
    return root


def resolve_id(raw_id: str, base: str = "/") -> str:
    """Marathon's canonical path: relative ids resolve under ``base``; ``.``/``..`` collapse.

    ``resolve_id("web", "/g") == "/g/web"``; ``resolve_id("/a/../b") == "/b"``. Empty
    segments (``//``) are dropped, as Marathon does.
    """
    segments = [] if raw_id.startswith("/") else [s for s in base.split("/") if s]
    for segment in raw_id.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def _json_type(value: Any) -> str:
    """The JSON type of a value, with its article: "an object", "a list", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
