"""The container image, built and run for real: buildah, no Docker engine.

The base is Debian bookworm minbase made by mmdebstrap (cached between runs, see
``testkit/image.py``); ``deploy/docker/Dockerfile`` is built on it with buildah and run with
``buildah run --isolation chroot --network host`` against the Marathon emulator on loopback, with
the state directory as a host volume owned by the image's account, as deploy/ documents.

Every process inside runs under a hard limit of 1,024 open files (set explicitly through a
containers.conf; it is also what buildah's chroot isolation gives by default, and a common
container default): the sidecar must make its HAProxy start under it.

The tests share one running container; the last one stops it.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing.emulator import MarathonEmulator
from marathon_bridge.testing.tasks import echo_server_cmd
from testkit import WaitTimeout, free_port, wait_until
from testkit.http import ask, status_of
from testkit.image import (
    Container,
    ImageError,
    build_image,
    containers_conf,
    ensure_base_image,
    image_config,
    listening_inodes,
    missing_tools,
    nofile_limits,
    process_uids,
    socket_owners,
)

pytestmark = [pytest.mark.image, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SIDECAR_APP = ROOT / "deploy" / "marathon" / "marathon-sidecar.json"
CONTAINER_NOFILE = 1024
APP_ID = "/image/web"
SERVE_TIMEOUT = 90.0


@dataclass
class Image:
    tag: str
    config: dict[str, Any]
    build_seconds: float

    @property
    def uid(self) -> int:
        return int(str(self.config["User"]).split(":")[0])

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config["Env"])


@dataclass
class Running:
    """The image's entrypoint running against the emulator, and what the test knows about it."""

    image: Image
    box: Container
    emulator: MarathonEmulator
    service_port: int
    status_port: int
    state_dir: Path
    serve_failure: str = ""  # set once the container was seen not serving: no second long wait

    @property
    def status_env(self) -> dict[str, str]:
        return {"MARATHON_SIDECAR_STATUS_LISTEN": f"127.0.0.1:{self.status_port}"}

    def task_ids(self) -> set[str]:
        return {t["id"] for t in self.emulator.tasks(APP_ID, states=["TASK_RUNNING"])}

    def health(self) -> tuple[int, str]:
        return status_of(self.status_port, "/health")

    def diagnosis(self) -> str:
        status, body = self.health()
        main = self.box.main_pid()
        limits = nofile_limits(main) if main else "no main process"
        return (
            f"open-files limit (soft, hard) of the sidecar: {limits}\n/health: {status} {body}\n"
            f"container output (tail):\n{self.box.output()[-3000:]}"
        )


def wait_served(running: Running) -> None:
    """Until a request through the service port is answered by one of the app's tasks."""
    if running.serve_failure:
        pytest.fail(running.serve_failure)
    try:
        wait_until(lambda: ask(running.service_port) in running.task_ids(), timeout=SERVE_TIMEOUT)
    except WaitTimeout:
        running.serve_failure = f"the container never served its app\n{running.diagnosis()}"
        pytest.fail(running.serve_failure)


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    missing = missing_tools()
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run scripts/setup.sh")
    try:
        tag, seconds = build_image(ensure_base_image())
    except ImageError as error:
        pytest.fail(f"the image did not build: {error}")
    yield Image(tag, image_config(tag), seconds)  # kept: its layers are the next build's cache


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[Any, int]]:
    """The emulator running two real echo tasks of one app on a free service port."""
    port = free_port()
    with MarathonEmulator(run_tasks=True, heartbeat_interval=1.0) as marathon:
        client = MarathonClient(marathon.url, timeout=(3.0, 10.0))
        app = {"id": APP_ID, "cmd": echo_server_cmd(), "instances": 2, "cpus": 0.01, "mem": 16,
               "portDefinitions": [{"port": port, "protocol": "tcp", "name": "http"}]}  # fmt: skip
        client.create_app(app)
        wait_until(lambda: len(marathon.tasks(APP_ID, states=["TASK_RUNNING"])) == 2, timeout=60)
        try:
            yield marathon, port
        finally:
            client.close()


@pytest.fixture(scope="module")
def running(
    image: Image,
    emulator: tuple[MarathonEmulator, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Running]:
    marathon, service_port = emulator
    work = tmp_path_factory.mktemp("image-run")
    state_dir = work / "state"
    state_dir.mkdir(mode=0o750)  # the host volume, owned by the image's account (deploy docs)
    os.chown(state_dir, image.uid, image.uid)
    conf = containers_conf(work, CONTAINER_NOFILE)
    box = Container.create(image.tag, conf, work / "container.log")
    target = image.env["MARATHON_SIDECAR_STATE_DIR"]
    run = Running(image, box, marathon, service_port, free_port(), state_dir)
    try:
        box.start(
            [*image.config["Entrypoint"], "--marathon", marathon.url],
            env=run.status_env,
            volumes=[f"{state_dir}:{target}"],
        )
        wait_until(lambda: box.main_pid() is not None or box.exited(), timeout=60)
        assert box.main_pid() is not None, f"the entrypoint did not start:\n{box.output()}"
        yield run
    finally:
        box.remove()


def test_the_sidecar_runs_under_the_containers_descriptor_limit(running: Running) -> None:
    main = running.box.main_pid()
    assert main is not None, running.box.output()
    assert nofile_limits(main)[1] == str(CONTAINER_NOFILE)


def test_the_pip_ca_bundle_was_a_build_secret_not_a_layer(running: Running) -> None:
    """The build mounts the host's CA bundle for pip; nothing of it stays in the image."""
    assert "PIP_CERT" not in running.image.env
    left = running.box.exec(
        ["sh", "-c", "ls -A /run/secrets; ls /src /tmp/sidecar-install"], env={}
    )
    assert left.stdout.strip() == "", left.stdout
    assert "No such file" in left.stderr  # /src and the install scripts are gone too


def test_a_request_routes_through_the_containers_haproxy(running: Running) -> None:
    wait_served(running)
    answers = {ask(running.service_port) for _ in range(12)}
    assert answers == running.task_ids()  # both tasks, nothing else
    # the listener on the service port belongs to an HAProxy inside the container
    owners = socket_owners(running.box.processes(), listening_inodes(running.service_port))
    assert owners, "no process inside the container listens on the service port"
    for pid in owners:
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "haproxy"


def test_the_images_healthcheck_command_passes(running: Running) -> None:
    wait_served(running)
    kind, *command = running.image.config["Healthcheck"]["Test"]
    assert kind == "CMD"
    probe = running.box.exec(command, env=running.status_env)
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.startswith("200")


def test_haproxy_fits_the_containers_descriptor_limit(running: Running) -> None:
    """maxconn lowered to fit 1,024 open files; /health says so and still answers 200."""
    wait_served(running)
    status, body = running.health()
    report = json.loads(body)
    assert status == 200 and report["status"] == "degraded", body
    budget = report["descriptors"]
    assert budget["fd_limit"] == CONTAINER_NOFILE
    assert budget["fd_needed"] <= CONTAINER_NOFILE
    assert budget["maxconn_effective"] < budget["maxconn_wanted"] == 4096
    assert any("instead of 4096" in reason for reason in report["reasons"]), body


def test_it_runs_as_its_non_root_user(running: Running) -> None:
    assert running.image.config["User"] == "10001:10001"
    account = running.box.exec(["id", "-un"], env={})
    assert account.stdout.strip() == "sidecar", account.stdout + account.stderr
    wait_served(running)  # the sidecar and its HAProxy (master and worker) run
    processes = running.box.processes()
    names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in processes}
    assert "haproxy" in names, names
    for pid in processes:
        assert set(process_uids(pid)) == {running.image.uid}, (pid, process_uids(pid))
    config = running.state_dir / "haproxy.cfg"  # written to the volume as that user
    assert config.stat().st_uid == running.image.uid


def test_sigterm_stops_it_cleanly_within_the_grace_period(running: Running) -> None:
    """Last: stops the shared container. SIGTERM goes to the entrypoint's process, as
    ``docker stop`` (through ``--init``) and Mesos deliver it."""
    wait_served(running)
    grace = json.loads(SIDECAR_APP.read_text(encoding="utf-8"))["taskKillGracePeriodSeconds"]
    assert running.image.config["StopSignal"] == "SIGTERM"
    main = running.box.main_pid()
    assert main is not None and running.box.proc is not None
    os.kill(main, signal.SIGTERM)
    assert running.box.proc.wait(timeout=grace) == 0, running.box.output()[-3000:]
    assert running.box.processes() == []  # HAProxy went with it: nothing left inside
    assert status_of(running.status_port, "/health")[0] == 0
    assert ask(running.service_port).startswith("error:")
