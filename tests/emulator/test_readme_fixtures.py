"""The README's pytest example runs as written: the ``marathon_emulator`` and
``marathon_emulator_factory`` fixtures come from the package's pytest plugin alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading) :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```\n", start)]


def test_the_readme_fixture_example_passes_under_pytest(tmp_path: Path) -> None:
    code = readme_block("### In tests: the emulator")
    test_file = tmp_path / "test_readme_example.py"
    test_file.write_text(code)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
