"""Where each value of a definition file sits: line and column, for JSON and YAML (pure).

A document path is a tuple of object keys and list indexes (``("apps", 2, "mem")``); an object
member's position is its key's, a list item's is the item's own. :class:`FilePositions` builds
the index the first time it is asked (most files have nothing to report) and answers with the
nearest enclosing value it knows, so a missing field points at the object that lacks it.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import yaml

Position = tuple[int, int]  # (line, column), both from 1
DocPath = tuple[Union[str, int], ...]

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.DOTALL)
_MARATHON_SEGMENT = re.compile(r"/([^/(]*)|\((\d+)\)")


def marathon_path_parts(path: str) -> DocPath:
    """``/healthChecks(0)/protocol`` -> ``("healthChecks", 0, "protocol")``; ``/`` -> ``()``."""
    parts: list[Union[str, int]] = []
    for match in _MARATHON_SEGMENT.finditer(path):
        key, index = match.group(1), match.group(2)
        if index is not None:
            parts.append(int(index))
        elif key:
            parts.append(key)
    return tuple(parts)


class _LineStarts:
    """Offset -> (line, column) for one text."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def position(self, offset: int) -> Position:
        line = bisect.bisect_right(self.starts, offset)
        return line, offset - self.starts[line - 1] + 1


@dataclass
class _Frame:
    is_object: bool
    path: DocPath
    next_index: int = 0
    expect_key: bool = True
    key: str = ""


def json_positions(text: str) -> dict[DocPath, Position]:
    """Every key and list item of a JSON text (which must parse) with its position."""
    lines = _LineStarts(text)
    index: dict[DocPath, Position] = {}
    stack: list[_Frame] = []
    for match in _JSON_TOKEN.finditer(text):
        piece, start = match.group(0), match.start()
        if piece in ",:":
            if piece == "," and stack and stack[-1].is_object:
                stack[-1].expect_key = True
            continue
        if piece in "}]":
            stack.pop()
            continue
        top = stack[-1] if stack else None
        if top is not None and top.is_object and top.expect_key:
            top.key = str(json.loads(piece))
            top.expect_key = False
            member: DocPath = (*top.path, top.key)
            index[member] = lines.position(start)
            continue
        if top is None:
            path: DocPath = ()
            index[path] = lines.position(start)
        elif top.is_object:
            path = (*top.path, top.key)
        else:
            path = (*top.path, top.next_index)
            top.next_index += 1
            index[path] = lines.position(start)
        if piece in "{[":
            stack.append(_Frame(is_object=piece == "{", path=path))
    return index


def yaml_positions(root: Optional[yaml.Node], limit: int = 1_000_000) -> dict[DocPath, Position]:
    """Every key and list item of a composed YAML document with its position (aliases followed
    up to ``limit`` entries)."""
    index: dict[DocPath, Position] = {}
    if root is None:
        return index
    index[()] = (root.start_mark.line + 1, root.start_mark.column + 1)
    stack: list[tuple[yaml.Node, DocPath]] = [(root, ())]
    while stack and len(index) < limit:
        node, path = stack.pop()
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                    continue
                here = (*path, str(key_node.value))
                index[here] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                stack.append((value_node, here))
        elif isinstance(node, yaml.SequenceNode):
            for number, item in enumerate(node.value):
                here = (*path, number)
                index[here] = (item.start_mark.line + 1, item.start_mark.column + 1)
                stack.append((item, here))
    return index


@dataclass
class FilePositions:
    """The positions of one file's values, indexed on first use."""

    build: Callable[[], Mapping[DocPath, Position]]
    _index: Optional[Mapping[DocPath, Position]] = field(default=None, repr=False)

    def locate(self, path: DocPath) -> Optional[Position]:
        """The position of ``path``, else of its nearest ancestor that the file has."""
        if self._index is None:
            try:
                self._index = self.build()
            except (ValueError, yaml.YAMLError, IndexError, RecursionError):
                self._index = {}
        for end in range(len(path), -1, -1):
            found = self._index.get(path[:end])
            if found is not None:
                return found
        return None


def positions_for(text: str, is_json: bool, compose: Callable[[str], Any]) -> FilePositions:
    """Lazy positions of a file's text; ``compose`` turns YAML text into its root node."""
    if is_json:
        return FilePositions(lambda: json_positions(text))
    return FilePositions(lambda: yaml_positions(compose(text)))
