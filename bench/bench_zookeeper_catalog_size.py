"""Catalog size in ZooKeeper at 10k apps x 3 tasks, against ZooKeeper's limits (issue 11).

Run from the repository root: ``python -m bench.bench_zookeeper_catalog_size [--apps 10000]
[--tasks 3] [--big 3000]``.

A `Publisher` in this process writes `--apps` apps x `--tasks` tasks, as `marathon-publisher`
writes them (Marathon-shaped task ids, agent addresses, versions, an HTTP health check), into one
ZooKeeper server. Printed: the time the write took, the server's znode count and
`zk_approximate_data_size` (paths plus data), the JVM's resident memory, the sizes of instance
names and options nodes, the children per service, and the `getChildren` responses (ZooKeeper's
wire format: a 16-byte reply header, then a 4-byte count and a 4-byte length before each name)
of a service, of `<zk-path>` itself (one child per service) and of the options root, each
against `jute.maxbuffer` (0xfffff bytes, the default on servers and Java clients). Then how long
one sidecar watcher takes to read the whole catalog and how many read requests that costs the
server (what every node pays at start and after a session expiry), and one app with `--big`
tasks: its write (split into transactions under the limit) and its `getChildren`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

from kazoo.client import KazooClient

from bench.bench_zookeeper_storm import reads_served
from bench.zookeeper_fleet import app_service, catalog
from publisher.plan import ServiceSpec
from publisher.publisher import Publisher
from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.watcher import CatalogWatcher
from testkit.machine import load_average
from testkit.zookeeper import ZooKeeperServer, four_letter_word

ZK_PATH = "/smartstack/services"
JUTE_MAXBUFFER = 0xFFFFF
REPLY_HEADER = 16  # xid, zxid, err
LENGTH = 4


def children_response_bytes(names: list[str]) -> int:
    return REPLY_HEADER + LENGTH + sum(LENGTH + len(n.encode()) for n in names)


def mntr(server: ZooKeeperServer) -> dict[str, str]:
    answer = four_letter_word(server.host, server.port, "mntr", timeout=5.0)
    return dict(line.split("\t", 1) for line in answer.splitlines() if "\t" in line)


def limit_line(what: str, size: int) -> str:
    return f"{what:<46} {size:>10,} bytes  ({size / JUTE_MAXBUFFER:6.1%} of jute.maxbuffer)"


def write(publisher: Publisher, wanted: dict[str, ServiceSpec]) -> float:
    started = time.monotonic()
    assert publisher.wait_written(publisher.publish(wanted), 1800)
    return time.monotonic() - started


def report_catalog(server: ZooKeeperServer, reader: KazooClient, apps: int) -> None:
    figures = mntr(server)
    print(f"znodes: {int(figures['zk_znode_count']):,}")
    data_size = int(figures["zk_approximate_data_size"])
    print(f"zk_approximate_data_size: {data_size:,} bytes ({data_size / apps:,.0f} per app)")
    print(f"server JVM resident memory: {(server.resident_kib() or 0) / 1024:.0f} MiB")
    services = reader.get_children(ZK_PATH)
    sample = services[: min(len(services), 200)]
    names = [c for s in sample for c in reader.get_children(f"{ZK_PATH}/{s}")]
    options = [len(reader.get(layout.options_path(ZK_PATH, s))[0]) for s in sample]
    per_service = [len(reader.get_children(f"{ZK_PATH}/{s}")) for s in sample]
    print(f"children per service: median {statistics.median(per_service):g}")
    first = services[0]
    data = [
        len(reader.get(f"{ZK_PATH}/{first}/{n}")[0])
        for n in reader.get_children(f"{ZK_PATH}/{first}")
    ]
    print(f"instance child name: median {statistics.median(map(len, names)):g} bytes; "
          f"its data (the JSON): median {statistics.median(data):g} bytes")  # fmt: skip
    print(f"options node: median {statistics.median(options):g} bytes")
    one = reader.get_children(f"{ZK_PATH}/{services[0]}")
    print(limit_line("getChildren of one service", children_response_bytes(one)))
    print(limit_line(f"getChildren of {ZK_PATH} ({len(services):,} services)",
                     children_response_bytes(services)))  # fmt: skip
    listed = reader.get_children(layout.options_root(ZK_PATH))
    print(limit_line("getChildren of the options root", children_response_bytes(listed)))
    average = statistics.fmean(len(n) for n in names)
    print(f"instances per service that fit one getChildren under jute.maxbuffer: "
          f"{int((JUTE_MAXBUFFER - REPLY_HEADER - LENGTH) / (LENGTH + average)):,}")  # fmt: skip


def watcher_read(server: ZooKeeperServer) -> None:
    """One sidecar watcher's first read of the whole catalog: seconds and read requests."""
    client = KazooClient(hosts=server.address)
    client.start(timeout=30)
    before = reads_served(server) or 0
    started = time.monotonic()
    watcher = CatalogWatcher(client, ZK_PATH, lambda update: None)
    watcher.start()
    assert watcher.wait_synced(1800)
    took = time.monotonic() - started
    reads = (reads_served(server) or 0) - before
    print(f"one watcher reads the whole catalog: {took:.1f} s, {reads:,} read requests")
    watcher.stop()
    client.stop()
    client.close()


def big_service(publisher: Publisher, reader: KazooClient, wanted: dict[str, ServiceSpec],
                tasks: int) -> None:  # fmt: skip
    name, spec = app_service(99999, [(n, 0) for n in range(tasks)])
    transactions = publisher.writer.counters.transactions
    took = write(publisher, {**wanted, name: spec})
    written = publisher.writer.counters.transactions - transactions
    children = reader.get_children(f"{ZK_PATH}/{name}")
    print(f"one app with {tasks:,} tasks: written in {took:.1f} s, {written} transactions")
    print(limit_line(f"getChildren of that service ({len(children):,})",
                     children_response_bytes(children)))  # fmt: skip


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=10000)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--big", type=int, default=3000, help="tasks of the one big app")
    parser.add_argument("--heap-mb", type=int, default=512, help="the ZooKeeper JVM's -Xmx")
    args = parser.parse_args(argv)
    print(f"load average at start: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        # 10k apps are ~50k znodes and 25 MB of paths and data: more than the tests' 64 MB heap
        server = ZooKeeperServer(Path(tmp), tick_ms=500, heap_mb=args.heap_mb)
        server.start()
        client = KazooClient(hosts=server.address)
        client.start(timeout=30)
        publisher = Publisher(client, ZK_PATH, "bench")
        try:
            publisher.start()
            wanted = catalog(args.apps, args.tasks)
            took = write(publisher, wanted)
            transactions = publisher.writer.counters.transactions
            print(f"{args.apps:,} apps x {args.tasks} tasks written in {took:.1f} s "
                  f"({transactions:,} transactions)")  # fmt: skip
            report_catalog(server, client, args.apps)
            watcher_read(server)
            big_service(publisher, client, wanted, args.big)
            print(f"load average at the end: {load_average()}")
        finally:
            publisher.stop()
            client.stop()
            client.close()
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
