"""Full render time (catalog, build_model, render_config) and RSS at 1k, 5k and 10k apps x 3 tasks.

Run: ``python -m bench.bench_render [--sizes 1000,5000,10000] [--runs 5] [--unique-labels]``.
Each size runs in a fresh child process so its RSS is not inflated by a bigger earlier size.
Prints, per size, medians of ``--runs`` runs:

- ``full``: the Marathon translation to the catalog, build_model and render_config from scratch
  (wall and CPU seconds, and the best run), split into build (translation and model, with the
  garbage collector paused as the daemon does) and render; the goal is 10k apps in <= 0.3 s
  with linear growth (``x_time`` ~= ``x_size``; ``us/app`` and ``x_time`` come from the median
  CPU time);
- ``event``: the same after one task event, with the source's translator and the daemon's
  BuildCache and RenderCache (what a running sidecar pays per change);
- RSS of the process holding the state, the model and the text.

CPU time (``time.process_time``) is printed next to wall time: on a shared machine the CPU figures
are the comparable ones. Every generated app has the same labels by default (the translation
parses an equal label set once); ``--unique-labels`` gives each app its own vhost label instead, so
every app's labels are parsed.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sidecar.desired import BuildCache, build_model
from sidecar.gc_pause import collector_paused
from sidecar.render import RenderCache, render_config
from sidecar.render_settings import RenderSettings
from sidecar.sources.marathon.model import MarathonState
from sidecar.sources.marathon.translate import MarathonTranslator
from testkit.cluster import AGENTS, generated_cluster
from testkit.machine import load_average

ROOT = Path(__file__).resolve().parent.parent

TASKS_PER_APP = 3
GOAL_SECONDS_10K = 0.3


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: int, runs: int, unique_labels: bool = False) -> dict[str, Any]:
    """Medians for ``size`` apps: full build + render, and build + render after one event."""
    state = MarathonState.from_apps(generated_cluster(size, unique_labels=unique_labels))
    settings = RenderSettings(admin_socket="/tmp/bench.sock", server_state_file="/tmp/bench.state")
    resolve = AGENTS.get
    build_times, render_times, totals, cpu_totals = [], [], [], []
    text = ""
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), time.process_time()
        with collector_paused():
            model = build_model(MarathonTranslator().translate(state), settings, resolve)
        built = time.perf_counter()
        text = render_config(model, settings)
        done, cpu_done = time.perf_counter(), time.process_time()
        build_times.append(built - start)
        render_times.append(done - built)
        totals.append(done - start)
        cpu_totals.append(cpu_done - cpu_start)
    translator, cache, text_cache = MarathonTranslator(), BuildCache(), RenderCache()
    model = build_model(translator.translate(state), settings, resolve, cache)
    render_config(model, settings, cache=text_cache)
    event_totals = []
    for n in range(runs):
        app_id = sorted(state.apps)[(n * 7919) % size]
        task_id = sorted(state.tasks[app_id])[0]
        event = {"appId": app_id, "taskId": task_id, "taskStatus": "TASK_KILLED"}
        start = time.perf_counter()
        state = state.apply_event("status_update_event", event).state
        with collector_paused():
            model = build_model(translator.translate(state), settings, resolve, cache)
        render_config(model, settings, cache=text_cache)
        event_totals.append(time.perf_counter() - start)
    return {
        "apps": size,
        "servers": size * TASKS_PER_APP,
        "build_s": statistics.median(build_times),
        "render_s": statistics.median(render_times),
        "total_s": statistics.median(totals),
        "cpu_s": statistics.median(cpu_totals),
        "best_s": min(totals),
        "best_cpu_s": min(cpu_totals),
        "event_s": statistics.median(event_totals),
        "config_kb": len(text) // 1024,
        "rss_mb": round(rss_mb(), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--unique-labels", action="store_true", help="a distinct vhost per app")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.runs, args.unique_labels)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for size in sizes:
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_render", "--child", str(size)]
            + ["--runs", str(args.runs)]
            + (["--unique-labels"] if args.unique_labels else []),
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        results.append(json.loads(out.stdout))
    base = results[0]
    labels = "a distinct vhost label per app" if args.unique_labels else "the same labels"
    print(
        f"median of {args.runs} runs per size; {TASKS_PER_APP} tasks per app; {labels}; "
        f"load {load_average()}"
    )
    print(
        "apps    servers  build_s  render_s  full_s  full_cpu_s  best_s  best_cpu_s  us/app  "
        "x_time  x_size  event_s  rss_MB  cfg_KB"
    )
    for r in results:
        print(
            f"{r['apps']:<7} {r['servers']:<8} {r['build_s']:<8.3f} {r['render_s']:<9.3f} "
            f"{r['total_s']:<7.3f} {r['cpu_s']:<11.3f} {r['best_s']:<7.3f} "
            f"{r['best_cpu_s']:<11.3f} {r['cpu_s'] / r['apps'] * 1e6:<7.0f} "
            f"{r['cpu_s'] / base['cpu_s']:<7.2f} {r['apps'] / base['apps']:<7.1f} "
            f"{r['event_s']:<8.3f} {r['rss_mb']:<7} {r['config_kb']}"
        )
    biggest = results[-1]
    if biggest["apps"] == 10000:
        verdict = "met" if biggest["cpu_s"] <= GOAL_SECONDS_10K else "MISSED"
        print(
            f"goal: 10k apps <= {GOAL_SECONDS_10K} s (full, median CPU): {verdict} "
            f"({biggest['cpu_s']:.3f} s CPU, {biggest['total_s']:.3f} s wall)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
