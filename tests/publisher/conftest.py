"""Fixtures for the publisher's tests: real ZooKeeper (the test kit's), the Marathon emulator, and
`marathon-publisher` processes that are stopped after each test."""

from __future__ import annotations

import pytest

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder that uses a ZooKeeper fixture."""
    for item in items:
        if {"zk_server", "zk_server_factory"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.zookeeper)
