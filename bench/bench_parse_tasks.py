"""Benchmark: parsing a 50k-task ``GET /v2/tasks`` body, ours against ``json.loads``.

Builds a realistic body from the task shape in the Marathon examples (tests/fixtures)
(``derived-from-code/task.running.with-health.v1.10.json``: 50k running tasks with health
results, over 500 apps, compact JSON as Marathon writes it), then reports the median of
``--runs`` timings (taking turns, with the garbage collector on and then off) of:

* ``json.loads``         the standard library on the body bytes, then ``["tasks"]``;
* ``jsonfast.loads``     our parse step (orjson) on the same bytes, then ``["tasks"]``;
* ``client.list_tasks``  the whole client call, answered from memory by a requests adapter
                         (request building, response handling, parse, unwrap);
* ``marathon-python``    ``json.loads`` plus ``MarathonTask.from_json`` per task, if installed.

Run: ``python -m bench.bench_parse_tasks [--tasks 50000] [--runs 9] [--slow-runs 3]``
Goal (issue 2): ours within 1.5x of ``json.loads``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from typing import Any, Callable, Optional

import requests
import requests.adapters
from requests.structures import CaseInsensitiveDict

from marathon_bridge import jsonfast
from marathon_bridge.client import MarathonClient
from testkit.cluster import wire_tasks


class MemoryAdapter(requests.adapters.BaseAdapter):
    """Answers every request with the same 200 JSON body, without a network."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = requests.Response()
        response.status_code = 200
        response.reason = "OK"
        response._content = self.body
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def timed(run: Callable[[], Any]) -> float:
    """Wall time of one call (the result is dropped before the next measurement)."""
    gc.collect()
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    del result
    return elapsed


def interleaved_medians(cases: list[tuple[str, Callable[[], Any]]], runs: int) -> list[float]:
    """Median time of each case; the cases take turns every round, so a load spike on the
    (shared) machine hits all of them alike instead of one."""
    for _, run in cases:
        run()  # warm-up
    timings: list[list[float]] = [[] for _ in cases]
    for round_number in range(runs):
        order = list(range(len(cases)))
        shift = round_number % len(cases)
        for index in order[shift:] + order[:shift]:
            timings[index].append(timed(cases[index][1]))
    return [statistics.median(t) for t in timings]


def marathon_python_parser() -> Optional[Callable[[bytes], Any]]:
    try:
        from marathon.models import MarathonTask
    except Exception:
        return None

    def parse(body: bytes) -> list[Any]:
        return [MarathonTask.from_json(t) for t in json.loads(body)["tasks"]]

    return parse


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--slow-runs", type=int, default=3, help="runs of marathon-python")
    args = parser.parse_args(argv)

    body = json.dumps({"tasks": wire_tasks(args.tasks)}, separators=(",", ":")).encode()
    session = requests.Session()
    session.mount("http://", MemoryAdapter(body))
    client = MarathonClient("http://marathon.invalid:8080", session=session)
    assert client.list_tasks() == json.loads(body)["tasks"]

    cases: list[tuple[str, Callable[[], Any]]] = [
        ("json.loads", lambda: json.loads(body)["tasks"]),
        ("jsonfast.loads (orjson)", lambda: jsonfast.loads(body)["tasks"]),
        ("client.list_tasks (in-memory)", client.list_tasks),
    ]
    marathon_python = marathon_python_parser()

    print(f"body: {args.tasks} tasks, {len(body) / 1e6:.1f} MB; python {sys.version.split()[0]}")
    for label, collector in (("gc enabled (as in production)", True), ("gc disabled", False)):
        (gc.enable if collector else gc.disable)()
        medians = interleaved_medians(cases, args.runs)
        print(f"\n{label}: median of {args.runs} interleaved runs")
        for (name, _), seconds in zip(cases, medians):
            print(f"  {name:32s} {seconds * 1000:8.1f} ms  {seconds / medians[0]:5.2f}x json.loads")
    gc.enable()
    if marathon_python is None:
        print("\nmarathon-python: not importable, skipped")
    else:
        seconds = statistics.median(
            timed(lambda: marathon_python(body)) for _ in range(args.slow_runs)
        )
        baseline = statistics.median(timed(lambda: json.loads(body)) for _ in range(args.slow_runs))
        print(
            f"\nmarathon-python (json.loads + MarathonTask.from_json), median of {args.slow_runs}:"
        )
        print(
            f"  {seconds * 1000:.1f} ms  {seconds / baseline:.2f}x json.loads"
            f" (json.loads alone: {baseline * 1000:.1f} ms)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
