"""Fixtures for the publisher's tests: real ZooKeeper (the test kit's), the Marathon emulator, and
`marathon-publisher` processes that are stopped after each test. A test using a server gets the
``zookeeper`` marker from the fixture (testkit/markers.py)."""

from __future__ import annotations

from testkit.publisher import (  # noqa: F401  (fixtures pytest finds by name)
    marathon,
    marathon_client,
    publishers,
    reader,
    zk_path,
)
from testkit.zookeeper import (  # noqa: F401  (fixtures pytest finds by name)
    kazoo_client_factory,
    zk_chroot,
    zk_server,
    zk_server_factory,
)
