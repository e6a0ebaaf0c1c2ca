"""A reader for the sidecar status page's DOM: :func:`parse_status_page` turns the DOM Chromium
dumps into plain data (services table rows, health word, the refresh period) with the standard
library's HTML parser."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Optional


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
