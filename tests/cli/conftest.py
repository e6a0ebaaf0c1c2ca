"""Fixtures for the CLI tests: a running emulator and an in-process `marathon-bridge` runner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from marathon_bridge import cli
from marathon_bridge.testing import MarathonEmulator


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


CliRunner = Callable[..., Run]


@pytest.fixture
def marathon() -> Iterator[MarathonEmulator]:
    with MarathonEmulator() as emulator:
        yield emulator


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """``run_cli("apps", "--output", "json", env={...})``: cli.main in-process, output captured.
    The real environment is not consulted (no MARATHON_URL leaks in)."""

    def run(*argv: str, env: dict[str, str] | None = None) -> Run:
        capsys.readouterr()
        code = cli.main(list(argv), environ=env or {})
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def write_app(tmp_path: Path) -> Callable[..., str]:
    """Write an app (or a list of apps) to ``name`` (.json or .yaml); returns the path."""

    def write(data: Any, name: str = "app.json") -> str:
        path = tmp_path / name
        if name.endswith((".yaml", ".yml")):
            path.write_text(yaml.safe_dump(data, sort_keys=False))
        else:
            path.write_text(json.dumps(data, indent=2))
        return str(path)

    return write
