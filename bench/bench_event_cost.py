"""CPU per Marathon event through the sidecar's own pipeline, at 1k, 5k and 10k apps x 3 tasks.

Run: ``python -m bench.bench_event_cost [--sizes 1000,5000,10000] [--events 200] [--profile]``.

A real daemon (:func:`sidecar.main.build_daemon`) with its Marathon source, builder, applier and
status board, driven on the calling thread: no threads, no sockets, no HAProxy. HAProxy's
runtime API is :class:`bench.scripted_runtime.ScriptedRuntime` (answers in HAProxy's formats);
host names resolve from a table. Each size runs in a fresh child process. Per event, the
median CPU time (``time.process_time``) of each stage:

- ``source``: the event applied to Marathon's state, the translation to the catalog and the
  keeper (the follower's ``_handle_event``, then the daemon's ``catalog_changed``);
- ``build``: :func:`sidecar.desired.build_model` from the catalog (the daemon's cache);
- ``apply``: :meth:`Applier.apply`: the listener check, the servers diff, the runtime commands;
- ``daemon``: the rest of the daemon's ``apply_pending`` (coalescer, status, metrics);
- ``total``: all of it.

The events alternate, on random apps: a running task killed (``TASK_KILLED``: its server is
drained) and a new task running (``TASK_RUNNING``: a server added). Then a resync that finds
nothing changed: its wall and CPU time (parsing Marathon's JSON answer included), the runtime
commands it sends and reloads (goal: 0).
``--profile`` prints cProfile's top entries over the events of the largest size.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench.scripted_runtime import ScriptedRuntime
from marathon_bridge import jsonfast
from sidecar.apply import Applier
from sidecar.haproxy_model import HAProxyModel
from sidecar.main import build_daemon, make_render_settings
from sidecar.render import RenderCache, render_config
from sidecar.resolve import Resolver
from sidecar.settings import Settings
from sidecar.sources.marathon.follower import _Event
from sidecar.sources.marathon.source import MarathonSource
from testkit.cluster import AGENT_COUNT, AGENTS, generated_cluster
from testkit.fakes import FakeHAProxy, FakeMarathonClient
from testkit.machine import load_average

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("source", "build", "apply", "daemon", "total")


class _Timer:
    """CPU seconds spent inside wrapped calls since the last :meth:`take`."""

    def __init__(self) -> None:
        self.spent = 0.0

    def wrap(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return call(*args, **kwargs)
            finally:
                self.spent += time.process_time() - started

        return timed

    def take(self) -> float:
        spent, self.spent = self.spent, 0.0
        return spent


class JsonMarathonClient(FakeMarathonClient):
    """Answers ``GET /v2/apps`` by parsing a JSON body on every call, as the real client does
    (the fake's deep copy would cost more than the sidecar's own work)."""

    def __init__(self, apps: Any) -> None:
        super().__init__(apps, streams=False)
        self.body = jsonfast.dumps(apps)

    def list_apps(self, embed: Any = ()) -> Any:
        return jsonfast.loads(self.body)


class Bench:
    """One daemon at one size, and the events to drive it."""

    def __init__(self, size: int, workdir: str) -> None:
        self.apps = generated_cluster(size)
        self.client = JsonMarathonClient(self.apps)
        settings = Settings(
            marathon_urls=("http://127.0.0.1:9",),
            state_dir=workdir,
            haproxy_bin="haproxy",
            status_port=0,
            debounce=0.05,
        )
        render_settings = make_render_settings(settings)
        self.runtime = ScriptedRuntime()
        cache = RenderCache()
        self.applier = Applier(
            FakeHAProxy(),
            self.runtime,
            settings.haproxy_config_path,
            lambda model: render_config(model, render_settings, cache=cache),
            validate_cmd=["true"],
            check_ports=False,
            config_write_delay=3600.0,  # the deferred rewrite is not per event
        )
        self.source = MarathonSource(self.client)
        self.daemon = build_daemon(
            settings,
            source=self.source,
            haproxy=self.applier.haproxy,
            applier=self.applier,
            resolver=Resolver(AGENTS.get),
        )
        self.source.keeper.attach(self.daemon)
        self.build_timer, self.apply_timer = _Timer(), _Timer()
        self.daemon._build = self.build_timer.wrap(self.daemon._build)  # type: ignore[method-assign]
        self.applier.apply = self.apply_timer.wrap(self.applier.apply)  # type: ignore[method-assign]
        self.rng = random.Random(size)
        self.serial = 0

    def start(self) -> None:
        """The first snapshot, applied (a start: the runtime then has every server)."""
        self.source.follower._snapshot("start")
        self.daemon._start_haproxy()
        model = self.applier.running_config
        assert isinstance(model, HAProxyModel) and len(model.backends) == len(self.apps)
        self.runtime.load(model)
        self.applier.tick()

    def next_event(self) -> _Event:
        """Alternately: a task of a random app killed, a new task of a random app running."""
        state = self.source.follower.state
        assert state is not None
        app_id = self.apps[self.rng.randrange(len(self.apps))]["id"]
        tasks = state.app_tasks(app_id)
        self.serial += 1
        if self.serial % 2 and tasks:
            task_id = sorted(tasks)[0]
            data = {"appId": app_id, "taskId": task_id, "taskStatus": "TASK_KILLED"}
            return _Event("status_update_event", data)
        data = {
            "appId": app_id,
            "taskId": f"{app_id.strip('/').replace('/', '_')}.bench-{self.serial}",
            "taskStatus": "TASK_RUNNING",
            "host": f"agent-{self.serial % AGENT_COUNT}.example.com",
            "ports": [32000 + self.serial % 1000],
            "version": "2021-02-10T11:59:59.000Z",
        }
        return _Event("status_update_event", data)

    def one_event(self) -> dict[str, float]:
        event = self.next_event()
        self.build_timer.take(), self.apply_timer.take()
        started = time.process_time()
        self.source.follower._handle_event(event)
        sourced = time.process_time()
        self.daemon.apply_pending()
        done = time.process_time()
        build, apply = self.build_timer.take(), self.apply_timer.take()
        return {
            "source": sourced - started,
            "build": build,
            "apply": apply,
            "daemon": done - sourced - build - apply,
            "total": done - started,
        }

    def resync(self) -> dict[str, float]:
        """A snapshot equal to what runs: time, commands and reloads it costs."""
        state = self.source.follower.state
        assert state is not None
        self.client.body = jsonfast.dumps(state.apps_with_tasks())
        commands, reloads = self.runtime.commands_sent, self.applier.counters.reloads
        started, cpu_started = time.perf_counter(), time.process_time()
        self.source.follower._snapshot("resync interval")
        self.daemon.apply_pending()
        return {
            "resync_wall_s": time.perf_counter() - started,
            "resync_cpu_s": time.process_time() - cpu_started,
            "resync_commands": self.runtime.commands_sent - commands,
            "resync_reloads": self.applier.counters.reloads - reloads,
        }


def measure(size: int, events: int, profile: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        bench = Bench(size, workdir)
        bench.start()
        for _ in range(20):  # warm up: first events fill caches
            bench.one_event()
        commands = bench.runtime.commands_sent
        samples = [bench.one_event() for _ in range(events)]
        out: dict[str, Any] = {"apps": size, "events": events}
        for stage in STAGES:
            out[stage] = statistics.median(s[stage] for s in samples)
        out["commands_per_event"] = (bench.runtime.commands_sent - commands) / events
        out["reloads"] = bench.applier.counters.reloads
        out.update(bench.resync())
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(events):
                bench.one_event()
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
            out["profile"] = text.getvalue()
        bench.daemon.resolver.close()
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="cProfile of the largest size")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.events, args.profile)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for size in sizes:
        command = [sys.executable, "-m", "bench.bench_event_cost", "--child", str(size)]
        command += ["--events", str(args.events)]
        if args.profile and size == sizes[-1]:
            command.append("--profile")
        out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
        results.append(json.loads(out.stdout))
    print(
        f"median CPU ms per event over {args.events} events; 3 tasks per app; load {load_average()}"
    )
    print(
        "apps    source  build   apply   daemon  total   cmds/ev  resync_ms  resync_cpu_ms  "
        "resync_cmds  resync_reloads"
    )
    for r in results:
        ms = {stage: r[stage] * 1000 for stage in STAGES}
        print(
            f"{r['apps']:<7} {ms['source']:<7.3f} {ms['build']:<7.3f} {ms['apply']:<7.3f} "
            f"{ms['daemon']:<7.3f} {ms['total']:<7.3f} {r['commands_per_event']:<8.1f} "
            f"{r['resync_wall_s'] * 1000:<10.1f} {r['resync_cpu_s'] * 1000:<14.1f} "
            f"{r['resync_commands']:<12} {r['resync_reloads']}"
        )
    for r in results:
        if "profile" in r:
            print(f"\ncProfile, {r['events']} events at {r['apps']} apps (top by own time):")
            print(r["profile"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
