"""Headless Chromium driven through its command line, and a reader for the status page's DOM.

:class:`Chromium` runs one short-lived browser per page load (``--dump-dom`` or ``--screenshot``)
with a fresh profile, a hard timeout, and its whole process group killed if it overstays.
:meth:`Chromium.open_page` keeps one browser on a page for as long as a test needs, to watch
the page refresh itself. ``--virtual-time-budget`` is NOT used: with the page's
``<meta http-equiv="refresh">`` virtual time never runs out and Chromium reloads the page
forever.

:func:`parse_status_page` turns the dumped DOM into plain data (services table rows, health word,
the refresh period) with the standard library's HTML parser.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from sidecar.daemon import Daemon

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


# --- the cluster under test ---------------------------------------------------------------


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "",
) -> None:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
            last_error = None
        except Exception as exc:  # a predicate may fail while things settle
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    pytest.fail(f"condition not met within {timeout} s: {message or predicate}{detail}")


@dataclass
class Sidecar:
    """The emulator, a client on it, and the daemon under test with its status URL."""

    emulator: MarathonEmulator
    marathon: MarathonClient
    daemon: Daemon

    @property
    def status_url(self) -> str:
        server = self.daemon.status_server
        assert server is not None, "the status server is not running"
        return f"http://{server.host}:{server.port}"

    def healthy_count(self, app_id: str) -> int:
        count = 0
        for task in self.emulator.tasks(app_id, states=["TASK_RUNNING"]):
            results = task.get("healthCheckResults") or []
            if results and all(r.get("alive") for r in results):
                count += 1
        return count

    def deploy(self, app: dict[str, Any]) -> None:
        """Create ``app`` and wait until all its instances run and pass their checks."""
        self.marathon.create_app(app)
        wait_until(
            lambda: self.healthy_count(app["id"]) == app["instances"],
            timeout=60,
            message=f"{app['id']} has {app['instances']} healthy tasks",
        )


# --- the status page's DOM --------------------------------------------------------------------


@dataclass
class TaskRow:
    """One task's row of the services table."""

    task_id: str
    row_class: str  # "in" or "out"
    health: str = ""
    verdict: str = ""  # the "in rotation / why not" cell


@dataclass
class StatusPage:
    """What the status page shows, read from its DOM."""

    title: str = ""
    health: str = ""
    refresh: Optional[str] = None  # the meta refresh content
    stylesheets: list[str] = field(default_factory=list)
    has_services_table: bool = False
    services: list[tuple[str, str]] = field(default_factory=list)  # (port, app id)
    tasks: list[TaskRow] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)  # <dt> text -> <dd> text


class _StatusPageParser(HTMLParser):
    """Collects the facts of :class:`StatusPage`; cells are read by their class names."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = StatusPage()
        self._capture: Optional[str] = None  # what the current text belongs to
        self._text: list[str] = []
        self._in_services = False
        self._row_port = ""
        self._row_class = ""
        self._cell = 0  # cells after the task cell in the current row
        self._last_dt = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        classes = attr.get("class", "").split()
        if tag == "meta" and attr.get("http-equiv", "").lower() == "refresh":
            self.page.refresh = attr.get("content", "")
        elif tag == "link" and "stylesheet" in attr.get("rel", ""):
            self.page.stylesheets.append(attr.get("href", ""))
        elif tag == "table" and "services" in classes:
            self.page.has_services_table = True
            self._in_services = True
        elif tag == "title":
            self._start("title")
        elif attr.get("id") == "health":
            self._start("health")
        elif tag in ("dt", "dd"):
            self._start(tag)
        elif tag == "tr" and self._in_services:
            self._row_class, self._cell = attr.get("class", ""), 0
        elif tag == "td" and self._in_services:
            self._td(classes)

    def _td(self, classes: list[str]) -> None:
        for name in ("port", "app", "task", "verdict"):
            if name in classes:
                self._start(name)
                return
        if self.page.tasks and self._cell:
            self._cell += 1  # address, state, health
            if self._cell == 4:
                self._start("task-health")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_services = False
        if self._capture is None or tag not in ("title", "p", "dt", "dd", "td"):
            return
        text = " ".join("".join(self._text).split())
        what, self._capture, self._text = self._capture, None, []
        if what == "title":
            self.page.title = text
        elif what == "task-health":
            self.page.tasks[-1].health = text
        elif what == "health":
            self.page.health = text
        elif what == "dt":
            self._last_dt = text
        elif what == "dd":
            self.page.summary[self._last_dt] = text
        elif what == "port":
            self._row_port = text
        elif what == "app":
            self.page.services.append((self._row_port, text))
        elif what == "task":
            self.page.tasks.append(TaskRow(text, self._row_class))
            self._cell = 1
        elif what == "verdict":
            self.page.tasks[-1].verdict = text
            self._cell = 0

    def handle_data(self, data: str) -> None:
        if self._capture is not None:
            self._text.append(data)

    def _start(self, what: str) -> None:
        self._capture, self._text = what, []


def parse_status_page(dom: str) -> StatusPage:
    """The facts of the status page in ``dom`` (Chromium's ``--dump-dom`` output)."""
    parser = _StatusPageParser()
    parser.feed(dom)
    parser.close()
    return parser.page
