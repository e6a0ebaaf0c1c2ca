"""Headless Chromium driven through its command line.

:class:`Chromium` runs one short-lived browser per page load (``--dump-dom`` or ``--screenshot``)
with a fresh profile, a hard timeout, and its whole process group killed if it overstays.
:meth:`Chromium.open_page` keeps one browser on a page for as long as a test needs, to watch
the page refresh itself. ``--virtual-time-budget`` is NOT used: with the page's
``<meta http-equiv="refresh">`` virtual time never runs out and Chromium reloads the page
forever.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # required as root; the page is our own loopback server
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


def find_chromium() -> Optional[str]:
    """Debian's chromium (``scripts/setup.sh`` installs it), or ``None``."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


class ChromiumError(AssertionError):
    """Chromium failed, timed out or produced nothing; the message has its exit code and stderr."""


@dataclass(frozen=True)
class Chromium:
    """One headless Chromium run per call; profiles live under ``work_dir``."""

    binary: str
    work_dir: Path
    timeout: float = 60.0

    def dump_dom(self, url: str) -> str:
        """The DOM after the page loaded and its scripts ran, serialized as HTML."""
        out = self._run(["--dump-dom", url])
        if "<html" not in out.lower():
            raise ChromiumError(f"chromium --dump-dom {url} printed no document: {out[:300]!r}")
        return out

    def screenshot(self, url: str, target: Path, width: int = 1280, height: int = 900) -> Path:
        """A PNG of the viewport at ``width`` x ``height``, written to ``target``."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        self._run([f"--screenshot={target}", f"--window-size={width},{height}", url])
        if not target.is_file():
            raise ChromiumError(f"chromium --screenshot wrote no file at {target}")
        return target

    @contextlib.contextmanager
    def open_page(self, url: str) -> Iterator[subprocess.Popen[bytes]]:
        """A browser that keeps ``url`` open (it follows the page's own refresh) until the
        ``with`` block ends; then its whole process group is killed."""
        profile = tempfile.mkdtemp(prefix="chr-", dir=self.work_dir)
        command = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self.work_dir,
        )
        try:
            yield proc
            if proc.poll() is not None:
                raise ChromiumError(f"chromium on {url} exited early with {proc.returncode}")
        finally:
            _kill_group(proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.timeout)
            shutil.rmtree(profile, ignore_errors=True)

    def _run(self, args: list[str]) -> str:
        profile = tempfile.mkdtemp(prefix="chr-", dir=self.work_dir)
        command = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its zygote and renderers share the group: kill them all
            cwd=self.work_dir,
        )
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate()
            raise ChromiumError(
                f"chromium did not finish within {self.timeout} s: {args}; "
                f"stderr tail: {_tail(err)}"
            ) from None
        finally:
            _kill_group(proc)  # leftovers of a finished run, if any
            shutil.rmtree(profile, ignore_errors=True)
        if proc.returncode != 0:
            raise ChromiumError(
                f"chromium exited {proc.returncode} for {args}; stderr tail: {_tail(err)}"
            )
        return out.decode("utf-8", "replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(data: bytes, lines: int = 8) -> str:
    return " | ".join(data.decode("utf-8", "replace").strip().splitlines()[-lines:])


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; raises ``ValueError`` when not a PNG."""
    if not data.startswith(PNG_MAGIC) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)
