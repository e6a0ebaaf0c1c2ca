"""The ZooKeeper server the demo's ZooKeeper mode uses in tests (the test kit's fixture)."""

from __future__ import annotations

from testkit.zookeeper import zk_server  # noqa: F401  (a fixture pytest finds by name)
