"""The test kit's ZooKeeper: a standalone server and a three-server ensemble, really serving."""

from __future__ import annotations

from typing import Callable

from kazoo.client import KazooClient

from testkit import wait_until
from testkit.zookeeper import ZooKeeperEnsemble, ZooKeeperServer


def test_standalone_server_serves_on_loopback_and_keeps_data_across_restart(
    zk_server_factory: Callable[..., ZooKeeperServer],
    kazoo_client_factory: Callable[..., KazooClient],
) -> None:
    server = zk_server_factory()
    assert server.mode() == "standalone"
    assert server.host == "127.0.0.1"
    client = kazoo_client_factory(server.address)
    client.create("/kept", b"value")

    server.restart()

    assert server.mode() == "standalone"
    wait_until(lambda: client.connected, 30, "the client to reconnect")
    assert client.retry(client.get, "/kept")[0] == b"value"


def test_killed_server_answers_nothing(zk_server_factory: Callable[..., ZooKeeperServer]) -> None:
    server = zk_server_factory()
    server.kill()
    assert not server.running()
    assert server.mode() is None


def test_each_chroot_client_sees_only_its_own_nodes(
    zk_server: ZooKeeperServer,
    kazoo_client_factory: Callable[..., KazooClient],
    zk_chroot: str,
) -> None:
    mine = kazoo_client_factory(zk_server.address, chroot=zk_chroot)
    other = kazoo_client_factory(zk_server.address, chroot=zk_chroot + "-other")
    mine.create("/only-here")
    assert other.exists("/only-here") is None
    assert mine.exists("/only-here") is not None


def test_ensemble_elects_one_leader_and_survives_its_kill(
    zk_ensemble: ZooKeeperEnsemble,
    kazoo_client_factory: Callable[..., KazooClient],
    zk_chroot: str,
) -> None:
    hosts = {server.host for server in zk_ensemble.servers}
    assert len(hosts) == 3
    leader = zk_ensemble.wait_quorum()
    assert len(zk_ensemble.followers()) == 2
    follower = zk_ensemble.followers()[0]
    writer = kazoo_client_factory(leader.address, chroot=zk_chroot)
    writer.create("/written", b"through the leader")
    reader = kazoo_client_factory(follower.address, chroot=zk_chroot)
    reader.sync("/written")
    assert reader.get("/written")[0] == b"through the leader"

    leader.kill()
    new_leader = zk_ensemble.wait_quorum()
    assert new_leader is not leader
    reader.retry(reader.create, "/after-kill", b"still writable")

    leader.start()
    assert zk_ensemble.wait_quorum() is new_leader
    assert leader.mode() == "follower"
