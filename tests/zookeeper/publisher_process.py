"""A publisher in its own process, for tests that pause it (SIGSTOP) past its session.

Usage: python publisher_process.py HOSTS ZK_PATH IDENTIFIER SESSION_TIMEOUT
stdin: one JSON catalog per line, {"<service>": [instance JSON, ...]}; each is published.
stdout: one JSON event per line: {"role": ...} on each election change, {"published": n} when
catalog n was handed to the publisher, {"written": n} once it is in ZooKeeper, and
{"transactions": n} with each role change.
"""

from __future__ import annotations

import sys
import threading

import orjson
from kazoo.client import KazooClient

from publisher.plan import ServiceSpec
from publisher.publisher import Publisher
from sidecar.sources.zookeeper import layout

_out = threading.Lock()


def emit(**event: object) -> None:
    with _out:
        sys.stdout.write(orjson.dumps(event).decode() + "\n")
        sys.stdout.flush()


def catalog(line: bytes) -> dict[str, ServiceSpec]:
    document = orjson.loads(line)
    return {
        service: ServiceSpec.of(
            [layout.parse_instance(orjson.dumps(i)) for i in items], {"port": 1}
        )
        for service, items in document.items()
    }


def main() -> None:
    hosts, zk_path, identifier, timeout = sys.argv[1:5]
    client = KazooClient(hosts=hosts, timeout=float(timeout))
    client.start(timeout=30)
    box: list[Publisher] = []

    def on_role(role: str) -> None:
        emit(role=role, transactions=box[0].writer.counters.transactions if box else 0)

    publisher = Publisher(
        client, zk_path, identifier=identifier, heartbeat_interval=0.5, on_role=on_role
    )
    box.append(publisher)
    publisher.start()
    for number, line in enumerate(sys.stdin.buffer, start=1):
        assert publisher.publish(catalog(line)) == number
        emit(published=number)
        threading.Thread(target=report_written, args=(publisher, number), daemon=True).start()
    publisher.stop()


def report_written(publisher: Publisher, number: int) -> None:
    if publisher.wait_written(number):
        emit(written=number)


if __name__ == "__main__":
    main()
