"""The packages and the test kit must import on Python 3.9: each module's syntax, annotations."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    p
    for pkg in ("marathon_bridge", "sidecar", "publisher", "testkit")
    for p in (ROOT / pkg).rglob("*.py")
)


def test_there_are_modules_to_check() -> None:
    assert len(MODULES) > 5


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_parses_as_python_39(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    ast.parse(source, filename=str(path), feature_version=(3, 9))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_postpones_annotations(path: Path) -> None:
    """PEP 604 unions and builtin generics in annotations only work on 3.9 when postponed."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    body = [
        n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
    ]
    if not body:
        return  # an empty module (docstring only) has nothing to postpone
    futures = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "__future__"
        for alias in node.names
    }
    assert "annotations" in futures, f"{path.name} lacks 'from __future__ import annotations'"
