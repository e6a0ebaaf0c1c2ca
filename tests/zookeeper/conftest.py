"""ZooKeeper fixtures from the test kit. A test using a server gets the ``zookeeper`` marker from
the fixture (testkit/markers.py)."""

from __future__ import annotations

from testkit.zookeeper import (  # noqa: F401  (fixtures pytest finds by name)
    kazoo_client_factory,
    zk_chroot,
    zk_ensemble,
    zk_server,
    zk_server_factory,
)
