"""A reader for the sidecar status page's DOM: :func:`parse_status_page` turns the DOM Chromium
dumps into plain data (the health word, the refresh period, the services table: each service's
row and its tasks' rows, with their traffic cells) with the standard library's HTML parser;
:func:`load_status_page` has Chromium load the page first."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Optional

from testkit.chromium import Chromium


@dataclass
class Traffic:
    """The traffic cells of one row, as text."""

    sessions: str = ""
    rate: str = ""
    e4xx: str = ""
    e5xx: str = ""
    econ: str = ""
    errors_new: bool = False  # the errors cell is highlighted: they grew in the last interval
    queue: str = ""
    window: str = ""  # the traffic counted over the chart's window
    chart: str = ""  # the sparkline's title
    lines: int = 0  # polylines drawn in the sparkline


@dataclass
class TaskRow:
    """One task's row of the services table."""

    task_id: str
    row_class: str  # "in" or "out"
    health: str = ""
    verdict: str = ""  # the "in rotation / why not" cell
    traffic: Traffic = field(default_factory=Traffic)


@dataclass
class ServiceRow:
    """One service's row and the rows of its tasks."""

    port: str
    app_id: str
    mode: str
    traffic: Traffic
    tasks: list[TaskRow] = field(default_factory=list)


@dataclass
class StatusPage:
    """What the status page shows, read from its DOM."""

    title: str = ""
    health: str = ""
    refresh: Optional[str] = None  # the meta refresh content
    stylesheets: list[str] = field(default_factory=list)
    scripts: int = 0  # <script> elements (the page has none)
    has_services_table: bool = False
    rows: list[ServiceRow] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)  # <dt> text -> <dd> text
    listing: str = ""  # "showing N of M services"
    traffic_note: str = ""

    @property
    def services(self) -> list[tuple[str, str]]:
        """(port, app id) of every service shown."""
        return [(row.port, row.app_id) for row in self.rows]

    @property
    def tasks(self) -> list[TaskRow]:
        return [task for row in self.rows for task in row.tasks]

    def service(self, app_id: str) -> ServiceRow:
        found = [row for row in self.rows if row.app_id == app_id]
        assert len(found) == 1, f"{app_id} shown {len(found)} times: {self.services}"
        return found[0]


CELLS = ("port", "app", "mode", "task", "address", "state", "health", "verdict", "sessions",
         "rate", "errors", "queue", "chart")  # fmt: skip
SPANS = ("e4xx", "e5xx", "econ", "window")


class _StatusPageParser(HTMLParser):
    """Collects the facts of :class:`StatusPage`; cells are read by their class names."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = StatusPage()
        self._open: list[tuple[str, str]] = []  # (tag, what its text is collected as)
        self._texts: dict[str, list[str]] = {}
        self._cells: dict[str, str] = {}  # of the current row
        self._row_class = ""
        self._in_services = False
        self._in_chart = False
        self._errors_new = False
        self._lines = 0
        self._last_dt = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        classes = attr.get("class", "").split()
        what = self._what(tag, attr, classes)
        if tag == "table" and "services" in classes:
            self.page.has_services_table = self._in_services = True
        elif tag == "tr" and self._in_services:
            self._row_class, self._cells, self._errors_new, self._lines = (
                attr.get("class", ""),
                {},
                False,
                0,
            )
        elif tag == "td" and "chart" in classes:
            self._in_chart = True
        elif tag == "polyline" and self._in_chart:
            self._lines += 1
        if tag == "td" and "errors" in classes:
            self._errors_new = "new" in classes
        if tag not in ("meta", "link", "polyline", "input", "br"):  # elements with an end tag
            self._open.append((tag, what))
            if what:
                self._texts[what] = []

    def _what(self, tag: str, attr: dict[str, str], classes: list[str]) -> str:
        if tag == "meta" and attr.get("http-equiv", "").lower() == "refresh":
            self.page.refresh = attr.get("content", "")
        elif tag == "link" and "stylesheet" in attr.get("rel", ""):
            self.page.stylesheets.append(attr.get("href", ""))
        elif tag == "script":
            self.page.scripts += 1
        elif tag == "title":
            return "chart-title" if self._in_chart else "title"
        elif attr.get("id") in ("health", "listing", "traffic-note"):
            return "#" + attr["id"]  # not to be taken for a cell's class
        elif tag in ("dt", "dd"):
            return tag
        elif tag == "td" and self._in_services:
            return next((c for c in CELLS if c in classes), "")
        elif tag == "span" and self._in_services:
            return next((c for c in SPANS if c in classes), "")
        return ""

    def handle_endtag(self, tag: str) -> None:
        if all(open_tag != tag for open_tag, _ in self._open):
            return  # the end of an element without one (<polyline/>, <input>)
        while self._open:
            open_tag, what = self._open.pop()
            if what:
                self._finish(what, " ".join("".join(self._texts.pop(what, [])).split()))
            if open_tag == tag:
                break
        if tag == "td":
            self._in_chart = False
        elif tag == "tr" and self._in_services:
            self._end_row()
        elif tag == "table":
            self._in_services = False

    def _finish(self, what: str, text: str) -> None:
        page = self.page
        if what == "title":
            page.title = text
        elif what == "#health":
            page.health = text
        elif what == "#listing":
            page.listing = text
        elif what == "#traffic-note":
            page.traffic_note = text
        elif what == "dt":
            self._last_dt = text
        elif what == "dd":
            page.summary[self._last_dt] = text
        else:
            self._cells.setdefault(what, text)

    def _end_row(self) -> None:
        cells = self._cells
        traffic = Traffic(
            cells.get("sessions", ""), cells.get("rate", ""), cells.get("e4xx", ""),
            cells.get("e5xx", ""), cells.get("econ", ""), self._errors_new,
            cells.get("queue", ""), cells.get("window", ""), cells.get("chart-title", ""),
            self._lines,
        )  # fmt: skip
        if "app" in cells:
            self.page.rows.append(
                ServiceRow(cells.get("port", ""), cells["app"], cells.get("mode", ""), traffic)
            )
        elif "task" in cells and self.page.rows:
            task = TaskRow(
                cells["task"], self._row_class, cells.get("health", ""),
                cells.get("verdict", ""), traffic,
            )  # fmt: skip
            self.page.rows[-1].tasks.append(task)

    def handle_data(self, data: str) -> None:
        for _, what in self._open:
            if what:
                self._texts[what].append(data)


def parse_status_page(dom: str) -> StatusPage:
    """The facts of the status page in ``dom`` (Chromium's ``--dump-dom`` output)."""
    parser = _StatusPageParser()
    parser.feed(dom)
    parser.close()
    return parser.page


def load_status_page(chromium: Chromium, status_url: str, query: str = "") -> StatusPage:
    """The status page at ``status_url`` (with ``?query``) as Chromium renders it."""
    suffix = f"?{query}" if query else ""
    return parse_status_page(chromium.dump_dom(f"{status_url}/{suffix}"))
