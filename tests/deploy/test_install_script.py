"""deploy/docker/install.sh, the image's only build step: its plan (dry run) and a real install.

The dry-run tests check the plan for an empty image (``--fresh``) and for this machine, where
HAProxy is installed (the suite needs it), so the apt step must be skipped. The real run builds
a wheel of this checkout and installs it into a temporary prefix: a new virtualenv, the command
links, the directories with their modes, and the installed ``marathon-sidecar --help`` must run.
"""

from __future__ import annotations

import getpass
import grp
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "docker" / "install.sh"


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


def steps(output: str) -> list[str]:
    """The commands the script ran or would run ("+ " lines), in order."""
    return [line[2:] for line in output.splitlines() if line.startswith("+ ")]


def index_of(plan: list[str], prefix: str) -> int:
    for i, step in enumerate(plan):
        if step.startswith(prefix):
            return i
    raise AssertionError(f"no step starting with {prefix!r} in:\n" + "\n".join(plan))


def test_fresh_image_plan_installs_everything_in_order() -> None:
    result = run_script("--dry-run", "--fresh", "--source", "/src")
    assert result.returncode == 0, result.stderr
    plan = steps(result.stdout)
    apt = plan[index_of(plan, "apt-get install")]
    assert apt.split()[-2:] == ["haproxy", "ca-certificates"]
    assert "--no-install-recommends" in apt
    order = [
        index_of(plan, "apt-get update"),
        index_of(plan, "apt-get install"),
        index_of(plan, "rm -rf /var/lib/apt/lists"),
        index_of(plan, "groupadd --system --gid 10001 sidecar"),
        index_of(plan, "useradd --system --uid 10001 --gid sidecar"),
        index_of(plan, "python3 -m venv /opt/marathon-sidecar"),
        index_of(plan, "/opt/marathon-sidecar/bin/python -m pip install"),
        index_of(plan, "ln -sf /opt/marathon-sidecar/bin/marathon-sidecar /usr/local/bin/"),
        index_of(plan, "install -d -m 0750 -o sidecar -g sidecar /var/lib/marathon-sidecar"),
        index_of(plan, "/usr/local/bin/marathon-sidecar --help"),
    ]
    assert order == sorted(order)
    pip = plan[index_of(plan, "/opt/marathon-sidecar/bin/python -m pip install")]
    assert pip.endswith(" /src[zookeeper]")  # kazoo: the publisher and ZooKeeper mode need it
    assert "/usr/sbin/nologin" in plan[index_of(plan, "useradd")]
    assert not any(step.startswith("setcap") for step in plan)


def test_system_only_plan_installs_packages_account_and_directories_but_no_source() -> None:
    result = run_script("--dry-run", "--fresh", "--system-only")
    assert result.returncode == 0, result.stderr
    plan = steps(result.stdout)
    apt = plan[index_of(plan, "apt-get install")]
    assert {"python3", "python3-venv", "haproxy", "ca-certificates"} <= set(apt.split())
    index_of(plan, "useradd --system --uid 10001 --gid sidecar")
    index_of(plan, "install -d -m 0750 -o sidecar -g sidecar /var/lib/marathon-sidecar")
    assert not any("venv" in step.split()[:3] or "pip" in step for step in plan)
    assert not any(step.startswith(("ln -sf", "/usr/local/bin/marathon-sidecar")) for step in plan)


def test_system_only_refuses_a_source() -> None:
    result = run_script("--dry-run", "--system-only", "--source", "/src")
    assert result.returncode == 2
    assert "--system-only installs no --source" in result.stderr


def test_low_ports_adds_the_bind_capability_to_haproxy() -> None:
    result = run_script("--dry-run", "--fresh", "--source", "/src", "--low-ports")
    assert result.returncode == 0, result.stderr
    plan = steps(result.stdout)
    assert "libcap2-bin" in plan[index_of(plan, "apt-get install")]
    assert "setcap cap_net_bind_service=+ep /usr/sbin/haproxy" in plan


def test_dry_run_changes_nothing_and_skips_what_this_machine_has(tmp_path: Path) -> None:
    prefix = tmp_path / "root"
    user = getpass.getuser()
    result = run_script("--dry-run", "--source", "/src", "--prefix", str(prefix), "--user", user)
    assert result.returncode == 0, result.stderr
    assert "= apt package haproxy: already present" in result.stdout
    assert f"= user {user}: already present" in result.stdout
    plan = steps(result.stdout)
    assert not any(step.startswith(("apt-get", "useradd", "groupadd")) for step in plan)
    assert not prefix.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--source is required"),
        (("--source", "/src", "--bogus"), "unknown option: --bogus"),
        (("--source", "/src", "--fresh"), "--fresh only makes sense with --dry-run"),
        (("--source", "/src", "--dry-run", "--uid", "x1"), "--uid must be a number"),
        (("--source", "/src", "--dry-run", "--user", "Bad User"), "--user must be a plain"),
        (("--source", "/no/such/source"), "does not exist"),
    ],
)
def test_bad_arguments_stop_before_any_step(args: tuple[str, ...], message: str) -> None:
    result = run_script(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert steps(result.stdout) == []


def test_help_describes_the_options() -> None:
    result = run_script("--help")
    assert result.returncode == 0
    for option in ("--source", "--prefix", "--low-ports", "--dry-run", "--fresh"):
        assert option in result.stdout


def image_sources() -> list[tuple[Path, str]]:
    """What the Dockerfile copies into /src: (path in the repository, path under /src)."""
    pairs: list[tuple[Path, str]] = []
    text = (ROOT / "deploy" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or words[0] != "COPY" or not words[-1].startswith("/src/"):
            continue
        dest = words[-1]
        for source in words[1:-1]:
            name = Path(source).name if dest.endswith("/") else ""
            pairs.append((ROOT / source, (dest + name).removeprefix("/src/")))
    return pairs


def copy_like_the_image(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source, relative in image_sources():
        destination = target / relative
        if source.is_dir():
            shutil.copytree(source, destination, ignore=ignore)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


@pytest.mark.slow
@pytest.mark.image  # pip builds the package, fetching its build backend like scripts/setup.sh
@pytest.mark.usefixtures("haproxy_bin")  # install.sh finds Debian's haproxy installed
def test_real_install_into_a_prefix(tmp_path: Path) -> None:
    source = tmp_path / "src"
    copy_like_the_image(source)
    assert (source / "setup.cfg").is_file() and (source / "sidecar" / "main.py").is_file()

    prefix = tmp_path / "root"
    user = getpass.getuser()
    env = dict(os.environ)
    # pip builds the package from the copied tree (fetching its build backend like
    # scripts/setup.sh does); the runtime dependencies come from the test environment through
    # PYTHONPATH, so only this package is installed into the new virtualenv.
    site = [p for p in sys.path if p.endswith("site-packages")]
    env["PYTHONPATH"] = os.pathsep.join(site)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    args = ("--source", str(source), "--prefix", str(prefix), "--user", user,
            "--pip-opt", "--no-deps")  # fmt: skip
    result = run_script(*args, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# done" in result.stdout

    venv = prefix / "opt" / "marathon-sidecar"
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sidecar; print(sidecar.__file__)"],
        capture_output=True, text=True, env=env, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.strip().startswith(str(venv)), "the installed copy must be the one used"

    commands = ("marathon-sidecar", "marathon-publisher", "marathon-bridge")
    for command in (*commands, "marathon-sidecar-healthcheck"):
        link = prefix / "usr" / "local" / "bin" / command
        assert link.is_symlink() and os.readlink(link) == str(venv / "bin" / command)
        assert os.access(link, os.X_OK)
    group = grp.getgrgid(os.getgid()).gr_name
    for directory in (
        "var/lib/marathon-sidecar",
        "var/lib/marathon-publisher",
        "etc/marathon-sidecar",
    ):
        info = (prefix / directory).stat()
        assert stat.S_IMODE(info.st_mode) == 0o750
        assert grp.getgrgid(info.st_gid).gr_name == group

    probe = subprocess.run(
        [str(prefix / "usr/local/bin/marathon-sidecar-healthcheck"), "--url",
         "http://127.0.0.1:9/health", "--timeout", "2"],
        capture_output=True, text=True, env=env, timeout=60, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert probe.returncode == 1
    assert "no answer" in probe.stdout

    again = run_script(*args, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"= virtualenv {venv}: already present" in again.stdout
