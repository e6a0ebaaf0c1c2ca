"""The container image for real: a Debian base made by mmdebstrap (cached), buildah, a running box.

No Docker engine is needed. The base image is ``mmdebstrap --variant=minbase bookworm`` (what
``debian:bookworm-slim`` is made of), kept as a tarball in the cache directory and imported into
buildah's own store under a tag keyed by its recipe, so it is made once per machine, not once per
run. ``deploy/docker/Dockerfile`` is built from it with ``buildah build --layers`` (unchanged
steps come from buildah's layer cache) and run with ``buildah run --isolation chroot --network
host``: no OCI runtime is needed and HAProxy's loopback binds are the host's.

Cache: the base tarball in ``$MB_IMAGE_CACHE`` if set, else ``/var/tmp/marathon-bridge-image-cache``
(outside the repository; /var/tmp survives reboots), named by a hash of its recipe (suite,
variant, architecture, config); the images live in buildah's store (/var/lib/containers/storage):
``localhost/marathon-bridge-base:<recipe hash>`` and ``localhost/marathon-sidecar-test:<checkout
hash>``, whose layers are the build cache. Delete the directory and ``buildah rmi`` the base tag
to make the base again from today's Debian; deploy/docker/README.md says the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]  # the repository (testkit/..)
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
CACHE_ENV = "MB_IMAGE_CACHE"
DEFAULT_CACHE = Path("/var/tmp/marathon-bridge-image-cache")
BASE_REPOSITORY = "localhost/marathon-bridge-base"
TEST_REPOSITORY = "localhost/marathon-sidecar-test"
# What the base holds: the key of the cached tarball and image follows from these alone.
BASE_SUITE = "bookworm"
BASE_VARIANT = "minbase"
# debian:bookworm-slim's own config, so BASE= that image or this one builds the same way.
BASE_CONFIG = {"env": "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "cmd": "bash"}  # fmt: skip
# The CA bundle pip inside the build must trust (a TLS-intercepting proxy signs with its own CA).
CA_BUNDLES = ("/etc/ssl/certs/ca-certificates.crt",)
ISOLATION = ("--isolation", "chroot")


class ImageError(RuntimeError):
    """A buildah or mmdebstrap step failed; the message carries its output."""


def run(argv: Sequence[str], timeout: float = 900.0, **kwargs: Any) -> str:
    """Run a command to completion; its stdout, or ImageError with everything it printed."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    if result.returncode != 0:
        raise ImageError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-4000:]}"
            f"\n{result.stderr[-4000:]}"
        )
    return result.stdout


def missing_tools() -> list[str]:
    return [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]


def cache_dir() -> Path:
    path = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    path.mkdir(parents=True, exist_ok=True)
    return path


def base_recipe() -> dict[str, str]:
    arch = run(["dpkg", "--print-architecture"]).strip()
    return {"suite": BASE_SUITE, "variant": BASE_VARIANT, "architecture": arch, **BASE_CONFIG}


def base_key(recipe: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def cache_lock(directory: Path) -> Iterator[None]:
    """One maker of the base at a time on this machine (several suites may run at once)."""
    with (directory / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def image_exists(reference: str) -> bool:
    result = subprocess.run(
        ["buildah", "images", "--quiet", reference],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result.returncode == 0 and bool(result.stdout.strip())


def make_rootfs(recipe: dict[str, str], tarball: Path) -> None:
    """mmdebstrap the base into ``tarball`` (written aside, renamed when complete)."""
    partial = tarball.with_suffix(".partial.tar")
    partial.unlink(missing_ok=True)
    variant, arch = recipe["variant"], recipe["architecture"]
    run(["mmdebstrap", f"--variant={variant}", f"--architectures={arch}", "--quiet",
         recipe["suite"], str(partial)])  # fmt: skip
    partial.rename(tarball)
    made = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tarball.with_suffix(".json").write_text(json.dumps({**recipe, "made": made}), "utf-8")


def import_rootfs(tarball: Path, reference: str, recipe: dict[str, str]) -> None:
    """A tarball of a root filesystem -> an image in buildah's store (``docker import``-like)."""
    container = run(["buildah", "from", "scratch"]).strip()
    try:
        run(["buildah", "add", "--quiet", container, str(tarball), "/"])
        run(["buildah", "config", "--env", recipe["env"], "--cmd", recipe["cmd"], container])
        run(["buildah", "commit", "--quiet", "--rm", container, reference])
    except ImageError:
        subprocess.run(["buildah", "rm", container], capture_output=True, check=False)
        raise


def ensure_base_image() -> str:
    """The local bookworm minbase image, made and imported only when the cache lacks it."""
    directory = cache_dir()
    recipe = base_recipe()
    key = base_key(recipe)
    reference = f"{BASE_REPOSITORY}:{key}"
    with cache_lock(directory):
        if image_exists(reference):
            return reference
        tarball = directory / f"base-{key}.tar"
        if not tarball.is_file():
            make_rootfs(recipe, tarball)
        import_rootfs(tarball, reference, recipe)
    return reference


def ca_bundle() -> Optional[str]:
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), *CA_BUNDLES):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def build_command(base: str, tag: str) -> list[str]:
    argv = ["buildah", "build", *ISOLATION, "--network", "host", "--pull=never", "--layers",
            "--format", "docker",
            "-f", str(DOCKERFILE), "--build-arg", f"BASE={base}", "-t", tag]  # fmt: skip
    bundle = ca_bundle()
    if bundle:
        argv += ["--secret", f"id=pip-ca,src={bundle}"]
    return [*argv, str(ROOT)]


def image_id(reference: str) -> str:
    result = subprocess.run(
        ["buildah", "images", "--quiet", "--no-trunc", reference],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else ""


def build_image(base: str) -> tuple[str, float]:
    """Build the Dockerfile on ``base``: (tag, seconds the build took).

    The tag is this checkout's own and stays after the run: its layers are buildah's cache for
    the next build (removing the image would remove them). The image it replaces is removed.
    """
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    tag = f"{TEST_REPOSITORY}:{checkout}"
    previous = image_id(tag)
    started = time.monotonic()
    run(build_command(base, tag), timeout=1800)
    seconds = time.monotonic() - started
    if previous and previous != image_id(tag):
        remove_image(previous)
    return tag, seconds


def image_config(reference: str) -> dict[str, Any]:
    """The image's Docker-format config (User, Entrypoint, Env, Healthcheck, StopSignal...)."""
    info = json.loads(run(["buildah", "inspect", "--type", "image", reference]))
    config: dict[str, Any] = info["Docker"]["config"]
    return config


def remove_image(reference: str) -> None:
    subprocess.run(["buildah", "rmi", reference], capture_output=True, timeout=300, check=False)


def containers_conf(directory: Path, nofile: int) -> Path:
    """A containers.conf whose only setting is the descriptor limit of every process inside."""
    path = directory / "containers.conf"
    path.write_text(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}"]\n', "utf-8")
    return path


def parent_pids() -> dict[int, int]:
    """pid -> parent pid for every process on the machine."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def argv_of(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def mount_namespace(pid: int) -> Optional[str]:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


@dataclass
class Container:
    """One ``buildah run`` of the image's entrypoint in a working container, host networking.

    buildah's chroot isolation turns a SIGTERM sent to ``buildah run`` into a SIGKILL of the
    command (and an orphaned HAProxy), unlike ``docker stop``; stopping therefore signals the
    entrypoint's own process (the container's main process), as Docker and Mesos do.
    """

    name: str
    image: str
    conf: Path
    log: Path
    proc: Optional[subprocess.Popen[bytes]] = None
    namespace: Optional[str] = None
    _log_handle: Any = field(default=None, repr=False)

    @classmethod
    def create(cls, image: str, conf: Path, log: Path) -> Container:
        name = f"mb-test-{uuid.uuid4().hex[:12]}"
        run(["buildah", "from", "--quiet", "--pull=never", "--name", name, image])
        return cls(name=name, image=image, conf=conf, log=log)

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def run_argv(self, command: Sequence[str], env: dict[str, str],
                 volumes: Sequence[str] = ()) -> list[str]:  # fmt: skip
        argv = ["buildah", "run", *ISOLATION, "--network", "host"]
        for name, value in env.items():
            argv += ["--env", f"{name}={value}"]
        for volume in volumes:
            argv += ["--volume", volume]
        return [*argv, self.name, "--", *command]

    def start(self, command: Sequence[str], env: dict[str, str], volumes: Sequence[str]) -> None:
        self._log_handle = self.log.open("wb")
        self.proc = subprocess.Popen(
            self.run_argv(command, env, volumes),
            env=self.env(), stdout=self._log_handle, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def exec(self, command: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """Run another command in the same container (``docker exec``-like)."""
        return subprocess.run(
            self.run_argv(command, env), env=self.env(),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def main_pid(self) -> Optional[int]:
        """The entrypoint's process: the child of buildah's in-chroot launcher."""
        if self.proc is None:
            return None
        children: dict[int, list[int]] = {}
        for pid, parent in parent_pids().items():
            children.setdefault(parent, []).append(pid)
        pending = [self.proc.pid]
        while pending:
            pid = pending.pop()
            if argv_of(pid)[:1] == ["buildah-chroot-exec"] and children.get(pid):
                main = children[pid][0]
                self.namespace = self.namespace or mount_namespace(main)
                return main
            pending.extend(children.get(pid, []))
        return None

    def processes(self) -> list[int]:
        """Every process inside the container (its private mount namespace)."""
        if self.namespace is None or self.namespace == mount_namespace(os.getpid()):
            return []
        return [pid for pid in parent_pids() if mount_namespace(pid) == self.namespace]

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def output(self) -> str:
        return self.log.read_text("utf-8", errors="replace") if self.log.exists() else ""

    def remove(self) -> None:
        """Stop the entrypoint (SIGTERM, then SIGKILL for anything left inside), remove the box."""
        main = self.main_pid()
        if main is not None and self.proc is not None:
            with contextlib.suppress(OSError):
                os.kill(main, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=40)
        for pid in self.processes():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            try:  # buildah run cleans its bundle up once its command is gone
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=60)
        if self._log_handle is not None:
            self._log_handle.close()
        subprocess.run(["buildah", "rm", self.name], capture_output=True, timeout=120, check=False)


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP ``port`` (IPv4 and IPv6) on this machine."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(inode)
    return inodes


def socket_owners(pids: Sequence[int], inodes: set[str]) -> set[int]:
    """Which of ``pids`` hold one of the socket ``inodes`` open."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    owners: set[int] = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        owners.add(pid)
    return owners


def process_uids(pid: int) -> tuple[int, ...]:
    """Real, effective, saved and filesystem uid of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return tuple(int(x) for x in line.split()[1:])
    raise ImageError(f"no Uid line for pid {pid}")


def nofile_limits(pid: int) -> tuple[str, str]:
    """(soft, hard) open-files limit of a process, as /proc shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise ImageError(f"no open-files limit for pid {pid}")
