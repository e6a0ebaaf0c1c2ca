"""The test kit: what the tests and the benchmarks share (not shipped with the package).

pytest finds it through ``pythonpath`` in setup.cfg; the benchmarks run from the repository
root as modules (``python -m bench.bench_render``). One module per need:

Waiting, ports, HTTP
- :mod:`testkit.waiting`: ``wait_until``, the one way to wait for a condition.
- :mod:`testkit.ports`: ``free_port`` / ``free_ports``, loopback ports chosen by the OS, and a
  block of consecutive free ports for a big cluster.
- :mod:`testkit.http`: a GET by URL or to a loopback port, "which task answered", /health.

Marathon side
- :mod:`testkit.apps`: echo-task apps, healthy task ids, "served by exactly the healthy tasks".
- :mod:`testkit.cluster`: generated clusters (valid at any size, or seeded and messy) and
  ``/v2/tasks`` bodies.
- :mod:`testkit.marathon`: the emulator with a client; with a standby and relays for faults.
- :mod:`testkit.relay`: a TCP relay a test can cut, restore or silence.
- :mod:`testkit.examples`: Marathon's example documents (tests/fixtures) and shape comparison.
- :mod:`testkit.sse`: a raw SSE client that records every byte.
- :mod:`testkit.event_clock`: when the emulator published the events a benchmark waits for.

Sidecar and HAProxy
- :mod:`testkit.node`: a sidecar daemon in a thread (``start_sidecar``, ``SidecarNode``).
- :mod:`testkit.process`: the sidecar as a child process, and whether a pid is alive.
- :mod:`testkit.system`: a whole node (emulator, sidecar, HAProxy) for zero-drop tests and benches.
- :mod:`testkit.haproxy`: HAProxy processes and masters as /proc shows them.
- :mod:`testkit.load`: the load generator (keep-alive and new-connection clients) and ``wrk``.
- :mod:`testkit.load_process`: a steady new-connection load from its own process, to any
  loopback address.
- :mod:`testkit.probe_traffic`: one keep-alive client in its own process that keeps every
  request (start time, answering task): when routing to a task stopped or began.
- :mod:`testkit.big_cluster`: a node on a big cluster (10k apps x 3 simulated tasks, a probe app
  of echo tasks, the sidecar as a process) for the big-cluster benchmarks.
- :mod:`testkit.clock`: a fake monotonic clock.

ZooKeeper
- :mod:`testkit.zookeeper`: real ZooKeeper servers and ensembles, their fixtures.
- :mod:`testkit.synapse_reader`: discovery the way synapse's ZooKeeper watcher does it.
- :mod:`testkit.zk_catalog`: what a publisher writes (through the contract), a catalog listener.
- :mod:`testkit.zk_mode`: ZooKeeper-mode sidecar processes (`--source zookeeper`, no Marathon URL).

Test machinery
- :mod:`testkit.markers`: the fixtures that mark a test (haproxy, browser, netns, ...).
- :mod:`testkit.sharding`: ``--shard K/N`` for ``scripts/test.sh --fast``.
- :mod:`testkit.fuzz`: hypothesis profiles and hostile-text strategies.
- :mod:`testkit.chromium`, :mod:`testkit.status_page`: headless Chromium and the status page's DOM.
- :mod:`testkit.machine`: what a benchmark prints about the machine.
- :mod:`testkit.proc_usage`: a process's CPU seconds and resident memory from /proc.
- :mod:`testkit.py_spy`: sampling a running sidecar with py-spy, its top functions.
"""

from __future__ import annotations

from testkit.ports import free_port, free_ports
from testkit.waiting import WaitTimeout, wait_until

__all__ = ["WaitTimeout", "free_port", "free_ports", "wait_until"]
