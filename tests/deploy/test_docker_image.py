"""The container image recipe: the Dockerfile refers to real files, commands and paths.

These tests read the Dockerfile and its .dockerignore as text (test_image_live.py builds and
runs the image with buildah) and check them against the repository (sources exist and reach the
build context, the entrypoint is the console script setup.cfg declares, every ENV is a setting
the sidecar reads) and run the HEALTHCHECK's probe against a real status server.
"""

from __future__ import annotations

import configparser
import fnmatch
import importlib.util
import json
import shlex
from pathlib import Path
from types import ModuleType

import pytest

from sidecar.metrics import SidecarMetrics
from sidecar.settings import OPTIONS
from sidecar.status import StatusBoard, StatusServer
from testkit import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, args = pending.partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def only(keyword: str) -> str:
    found = [args for kw, args in instructions() if kw == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def env_values() -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, args in instructions():
        if keyword == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV item without '=': {item}"
                values[key] = value
    return values


def copied_sources() -> list[str]:
    sources: list[str] = []
    for keyword, args in instructions():
        if keyword == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources.extend(words[:-1])
    return sources


def ignore_patterns() -> list[tuple[bool, str]]:
    """(is_exception, pattern) in file order, as BuildKit reads a .dockerignore."""
    patterns = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        patterns.append((exception, line.lstrip("!").rstrip("/")))
    return patterns


def ignored(relative: str) -> bool:
    """Whether the build context leaves out ``relative`` (last matching pattern wins)."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for exception, pattern in ignore_patterns():
        if any(fnmatch.fnmatch(c, pattern) for c in candidates):
            verdict = not exception
    return verdict


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sidecar_healthcheck", DOCKER / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_copied_source_exists_in_the_repository() -> None:
    sources = copied_sources()
    assert sources, "the Dockerfile copies nothing"
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert missing == []


def test_every_copied_file_reaches_the_build_context() -> None:
    left_out = []
    for source in copied_sources():
        path = ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" in relative or relative.endswith(".pyc"):
                continue
            if ignored(relative):
                left_out.append(relative)
    assert left_out == []


def test_the_build_context_leaves_out_tests_and_the_venv() -> None:
    assert ignored("tests/deploy/test_docker_image.py")
    assert ignored(".venv/bin/python")
    assert ignored("sidecar/__pycache__/main.cpython-311.pyc")
    assert not ignored("sidecar/main.py")


def test_the_install_script_the_image_runs_is_copied_in() -> None:
    run = " ".join(args for kw, args in instructions() if kw == "RUN")
    assert "/tmp/sidecar-install/install.sh --source /src" in run
    assert "deploy/docker/install.sh" in copied_sources()
    assert "deploy/docker/healthcheck.py" in copied_sources()


def test_entrypoint_is_the_sidecar_console_script() -> None:
    entrypoint = json.loads(only("ENTRYPOINT"))
    assert entrypoint == ["marathon-sidecar"]
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    scripts = setup["options.entry_points"]["console_scripts"]
    assert "marathon-sidecar = sidecar.main:main" in [s.strip() for s in scripts.splitlines()]


def test_image_runs_as_the_unprivileged_account_install_sh_creates() -> None:
    assert only("USER") == "10001:10001"
    run = " ".join(args for kw, args in instructions() if kw == "RUN")
    assert "--user sidecar --uid 10001" in run


def test_every_env_setting_is_one_the_sidecar_reads() -> None:
    sidecar_vars = {option.env_var for option in OPTIONS}
    image_vars = {k for k in env_values() if k.startswith("MARATHON_")}
    assert image_vars, "the image sets no sidecar settings"
    assert image_vars <= sidecar_vars


def test_healthcheck_runs_the_probe_installed_by_install_sh() -> None:
    healthcheck = only("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    assert json.loads(command) == ["marathon-sidecar-healthcheck"]
    install = (DOCKER / "install.sh").read_text(encoding="utf-8")
    assert '"$venv/bin/marathon-sidecar-healthcheck"' in install


def test_healthcheck_probes_the_status_servers_liveness() -> None:
    probe = load_healthcheck()
    url = probe.health_url(None, env_values())
    assert url == "http://127.0.0.1:9090/livez"
    assert probe.health_url(None, env_values(), "readyz") == "http://127.0.0.1:9090/readyz"
    assert only("EXPOSE") == "9090 9092"


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("127.0.0.1:9090", "http://127.0.0.1:9090/livez"),
        ("0.0.0.0:9191", "http://127.0.0.1:9191/livez"),
        ("[::]:9090", "http://[::1]:9090/livez"),
        ("[fd00::5]:9090", "http://[fd00::5]:9090/livez"),
        ("10.0.0.7:9090", "http://10.0.0.7:9090/livez"),
    ],
)
def test_healthcheck_turns_a_listen_address_into_a_probe_url(listen: str, url: str) -> None:
    assert load_healthcheck().url_from_listen(listen) == url


def test_healthcheck_rejects_a_listen_address_without_port() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        load_healthcheck().url_from_listen("localhost")


def test_healthcheck_exit_status_follows_the_real_status_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    probe = load_healthcheck()
    now = [1000.0]
    board = StatusBoard(SidecarMetrics(), max_sync_age=60.0, clock=lambda: now[0])
    server = StatusServer(board, host="127.0.0.1", port=0).start()
    listen = {"MARATHON_SIDECAR_STATUS_LISTEN": f"127.0.0.1:{server.port}"}
    try:
        health = f"http://127.0.0.1:{server.port}/health"
        assert probe.main(["--url", health]) == 1  # nothing synced, HAProxy not running
        with pytest.MonkeyPatch.context() as env:
            for name, value in listen.items():
                env.setenv(name, value)
            env.delenv("MARATHON_SIDECAR_HEALTH_URL", raising=False)
            assert probe.main([]) == 0  # live: waiting for the first catalog
            assert probe.main(["--probe", "readyz"]) == 1  # ...but not ready
            board.set_haproxy_running(True)
            board.record_sync()
            board.record_catalog_served()
            assert probe.main(["--probe", "readyz"]) == 0
            capsys.readouterr()
            board.set_haproxy_starting()  # HAProxy died; the restart takes longer than the grace
            now[0] += board.haproxy_grace + 1
            board.beat()
            assert probe.main([]) == 1
            out = capsys.readouterr().out
            assert out.startswith("503 failing: HAProxy's master has not run for"), out
        board.set_haproxy_running(True)
        board.set_problem("marathon", "Marathon answered 500 for 2 minutes")
        assert probe.main(["--url", health]) == 0  # degraded still serves traffic
    finally:
        server.stop()


def test_healthcheck_fails_when_nothing_listens() -> None:
    assert load_healthcheck().main(["--url", f"http://127.0.0.1:{free_port()}/livez"]) == 1
