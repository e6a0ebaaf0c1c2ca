"""``marathon-sidecar``: parse settings, set up logging and signals, build and run the daemon.

:func:`build_daemon` is the wiring: the catalog source the settings pick, the HAProxy to drive,
the applier, the resolver and the state store, connected to one :class:`~sidecar.daemon.Daemon`.

``--once`` is a preview (:mod:`sidecar.preview`): the config of one snapshot on stdout or in
``--output FILE``; it creates no directory and touches no file of a running node.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), a successful ``--once``, ``--help`` or
``--version``; 1 when the daemon cannot start or ``--once`` fails; 2 for bad settings (the
message names the option); 3 when ``--once --strict`` found labels not honored or apps left out
(the config was still printed or written). SIGHUP takes a fresh snapshot of the source.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar, Union

from marathon_bridge.logs import FieldsFormatter, JSONFormatter, RedactingFilter

from .common_settings import CommonSettings
from .gc_pause import CollectionTimer
from .option_table import parse_listen
from .settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from .apply.results import ApplierControl
    from .daemon import Daemon
    from .fd_budget import BudgetFacts
    from .haproxy.process import HAProxyControl
    from .haproxy_model import HAProxyModel
    from .metrics import SidecarMetrics
    from .render_settings import RenderSettings
    from .resolve import Resolver
    from .sources.base import CatalogSource
    from .sources.marathon.follower import MarathonAPI
    from .traffic_poller import TrafficPoller

log = logging.getLogger("sidecar")

# how long a thread may hold the interpreter lock while another waits for it (Python's default
# is 5 ms): the loop that applies changes gives the lock up at every HAProxy round trip, and
# under an event storm the event reader, the pollers and the writers take it meanwhile. With 1 ms,
# two A/B pairs of the 10k storm: probe p99 180 / 191 ms against 299 / 355 ms, the applies more
# than 100 ms after their change 3.8 / 2.4 % against 4.4 / 3.5 %, CPU per event the same
THREAD_SWITCH_SECONDS = 0.001

# the settings type a command loads (sidecar or publisher)
LoadedSettings = TypeVar("LoadedSettings", bound=CommonSettings)


def secrets_of(settings: CommonSettings) -> list[str]:
    """Every credential the settings hold: password, token, passwords inside Marathon URLs."""
    found = [s for s in (settings.password, settings.token) if s]
    for url in settings.marathon_urls:
        authority = url.partition("://")[2].partition("/")[0]
        userinfo = authority.rpartition("@")[0]
        if ":" in userinfo:
            found.append(urllib.parse.unquote(userinfo.split(":", 1)[1]))
            found.append(userinfo.split(":", 1)[1])
    return found


def setup_logging(settings: CommonSettings, stream: Any = None) -> logging.Handler:
    """Root logging to stderr in the chosen format, with the credentials scrubbed."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter() if settings.log_format == "json" else FieldsFormatter())
    handler.addFilter(RedactingFilter(secrets_of(settings)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for noisy in ("urllib3", "requests"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # kazoo warns at every failed reconnect; the ZooKeeper source logs state changes itself
    logging.getLogger("kazoo").setLevel(max(logging.ERROR, root.level))
    return handler


def prepare_directories(settings: Settings) -> str:
    """Create --state-dir (mode 700) and the config file's folder; "" or what went wrong."""
    return make_folders(
        [(Path(settings.state_dir), 0o700), (Path(settings.haproxy_config_path).parent, 0o755)]
    )


def make_folders(wanted: Sequence[tuple[Path, int]]) -> str:
    """Create each folder with its mode unless it exists; "" or what went wrong with the first."""
    for folder, mode in wanted:
        try:
            folder.mkdir(mode=mode, parents=True, exist_ok=True)
        except OSError as exc:
            return (
                f"cannot create {folder}: {exc.strerror or exc} (create it, writable by this user)"
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{folder} is not writable by this user"
    return ""


def settings_or_exit_code(
    prog: str,
    load: Callable[[list[str], Mapping[str, str]], LoadedSettings],
    argv: Optional[Sequence[str]],
    environ: Optional[Mapping[str, str]],
) -> Union[LoadedSettings, int]:
    """Settings from the command line (``sys.argv`` by default) and the environment, or the exit
    code: 2 for bad settings (the message, naming the option, on stderr), argparse's own for
    ``--help``, ``--version`` (0) or an unknown flag (2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if environ is None else environ
    try:
        return load(args, env)
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2


def main(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    """Entry point of ``marathon-sidecar``."""
    settings = settings_or_exit_code("marathon-sidecar", load_settings, argv, environ)
    if isinstance(settings, int):
        return settings
    setup_logging(settings)
    if settings.once:
        return preview(settings)
    problem = prepare_directories(settings)
    if problem:
        print(f"marathon-sidecar: {problem}", file=sys.stderr)
        return 2
    try:
        daemon = build_daemon(settings)
    except Exception as exc:
        log.error("cannot start", extra={"error": str(exc)[:500]})
        return 1
    log.info("starting", extra={"settings": json.dumps(settings.public_dict(), sort_keys=True)})
    install_signal_handlers(daemon, log, "SIGHUP: taking a fresh snapshot of the source")
    sys.setswitchinterval(THREAD_SWITCH_SECONDS)
    collections = CollectionTimer(daemon.metrics.observe_gc_pause)
    collections.install()
    try:
        return daemon.run()
    except Exception as exc:
        log.exception("stopped by an error", extra={"error": str(exc)[:500]})
        return 1
    finally:
        collections.remove()


def preview(settings: Settings) -> int:
    """``--once``: print (or ``--output``) the config of one snapshot (:mod:`sidecar.preview`)."""
    from .metrics import SidecarMetrics
    from .preview import EXIT_FAILED, run_preview
    from .sources.factory import make_source

    try:
        source = make_source(settings, SidecarMetrics())
        render_settings = make_render_settings(settings)
        render = make_renderer(settings, render_settings)
    except Exception as exc:
        log.error("cannot start", extra={"error": str(exc)[:500]})
        return EXIT_FAILED
    return run_preview(settings, source, render_settings, render)


class Stoppable(Protocol):
    """What the signal handlers drive: a daemon that stops and takes a fresh snapshot."""

    def stop(self) -> None: ...

    def resync(self) -> None: ...


def install_signal_handlers(daemon: Stoppable, logger: logging.Logger, resync_note: str) -> None:
    """SIGTERM and SIGINT stop the daemon, SIGHUP resyncs it; each logged on ``logger``."""

    def handle(signum: int, frame: Optional[FrameType]) -> None:
        logger.info("signal received; stopping", extra={"signal": signal.Signals(signum).name})
        daemon.stop()

    def resync(signum: int, frame: Optional[FrameType]) -> None:
        logger.info(resync_note)
        daemon.resync()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGHUP, resync)


# --- wiring -------------------------------------------------------------------------------------
# imported inside the functions: --help and --version stay fast


def build_daemon(
    settings: Settings,
    *,
    marathon_client: Optional[MarathonAPI] = None,
    source: Optional[CatalogSource] = None,
    haproxy: Optional[HAProxyControl] = None,
    applier: Optional[ApplierControl] = None,
    resolver: Optional[Resolver] = None,
    metrics: Optional[SidecarMetrics] = None,
    startup_wait: Optional[float] = None,
    stream_silence: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
) -> Daemon:
    """A daemon with every part the settings describe; any part may be given instead."""
    from .daemon import STARTUP_WAIT, Daemon
    from .metrics import SidecarMetrics
    from .resolve import Resolver
    from .sources.factory import legacy_state_reader, make_source
    from .state_store import StateStore
    from .systemd_notify import SystemdNotifier, SystemdReporter

    metrics = metrics if metrics is not None else SidecarMetrics()
    render_settings = make_render_settings(settings)
    if source is None:
        source = make_source(
            settings, metrics, marathon_client=marathon_client, stream_silence=stream_silence
        )
    haproxy = haproxy if haproxy is not None else make_haproxy(settings, render_settings)
    fd_facts = make_fd_facts(settings, render_settings, haproxy)
    applier = applier if applier is not None else make_applier(settings, haproxy, render_settings)
    resolver = resolver if resolver is not None else Resolver()
    traffic = make_traffic_poller(haproxy, render_settings)
    systemd = SystemdReporter(SystemdNotifier())  # silent unless systemd set $NOTIFY_SOCKET
    daemon = Daemon(
        settings,
        source=source,
        haproxy=haproxy,
        applier=applier,
        resolver=resolver,
        state_store=StateStore(settings.state_dir, legacy=legacy_state_reader()),
        render_settings=render_settings,
        metrics=metrics,
        traffic=traffic,
        systemd=systemd,
        startup_wait=STARTUP_WAIT if startup_wait is None else startup_wait,
        fd_facts=fd_facts,
        clock=clock,
    )
    resolver.on_update = daemon.dns_changed
    applier.on_started = daemon.haproxy_started
    return daemon


def run_dir(settings: Settings) -> str:
    """Where HAProxy's sockets and pid file live (private to the sidecar)."""
    return str(Path(settings.state_dir) / "run")


def make_render_settings(settings: Settings) -> RenderSettings:
    from .render_settings import RenderSettings
    from .tuning import render_values

    listeners = [settings.status_port]
    if settings.probe_listen:
        listeners.append(parse_listen(settings.probe_listen)[1])
    reserved = tuple(port for port in listeners if port)
    return RenderSettings(
        bind_addrs=settings.binds,
        groups=(settings.group,) if settings.group else (),
        vhost_port=settings.vhost_port,
        reserved_ports=reserved,
        admin_socket=str(Path(run_dir(settings)) / "admin.sock"),
        server_state_file=str(Path(settings.state_dir) / "haproxy-server-state"),
        hard_stop_after=f"{max(1, int(settings.drain_timeout))}s",
        **render_values(settings),
    )


def make_fd_facts(
    settings: Settings, render_settings: RenderSettings, haproxy: HAProxyControl
) -> Callable[[], BudgetFacts]:
    """What the descriptor budget starts from: the limit of the HAProxy we drive (our own hard
    limit, the soft one raised to it first; an external master's), the wanted maxconn,
    HAProxy's threads and the listeners the template adds beside the model (``--once`` needs
    none of it: a preview starts no HAProxy)."""
    from .fd_budget import BudgetFacts, template_needs
    from .fd_limits import ProcessLimit, haproxy_threads, raise_soft_limit
    from .haproxy_model import HAProxyModel
    from .render import render_config

    template = Path(settings.template).read_text(encoding="utf-8") if settings.template else None
    listeners, checks = template_needs(render_config(HAProxyModel(), render_settings, template))
    threads = haproxy_threads(render_settings.nbthread)

    def facts(limit: Optional[int]) -> BudgetFacts:
        return BudgetFacts(limit, render_settings.maxconn, threads, listeners, checks)

    if settings.master_socket:

        def master_pid() -> Optional[int]:
            status = haproxy.proc_status()
            return status.master.pid if status is not None and status.master else None

        limit = ProcessLimit(master_pid)
        return lambda: facts(limit())
    fixed = facts(raise_soft_limit())
    return lambda: fixed


def make_haproxy(settings: Settings, render_settings: RenderSettings) -> HAProxyControl:
    """The HAProxy we drive: one we start and supervise, or an external one (--master-socket)."""
    from .haproxy.process import ExternalHAProxy, HAProxyProcess

    if settings.master_socket:
        return ExternalHAProxy(settings.master_socket, render_settings.admin_socket)
    return HAProxyProcess(
        settings.haproxy_bin,
        settings.haproxy_config_path,
        run_dir(settings),
        admin_socket=render_settings.admin_socket,
    )


def make_applier(
    settings: Settings, haproxy: HAProxyControl, render_settings: RenderSettings
) -> ApplierControl:
    """The applier with the renderer of :func:`make_renderer`."""
    from .apply import Applier
    from .haproxy.runtime import RuntimeAPI

    return Applier(
        haproxy,
        RuntimeAPI(render_settings.admin_socket, master_socket=haproxy.master_socket),
        settings.haproxy_config_path,
        make_renderer(settings, render_settings),
        haproxy_bin=settings.haproxy_bin,
        state_file=render_settings.server_state_file,
        drain_timeout=settings.drain_timeout,
        background_rewrites=True,  # a 10k-service rewrite must not hold back the loop
    )


def make_renderer(
    settings: Settings, render_settings: RenderSettings
) -> Callable[[HAProxyModel], str]:
    """Model -> config text: the default template or ``--template`` (sandboxed), cached."""
    from .render import RenderCache, render_config

    template = Path(settings.template).read_text(encoding="utf-8") if settings.template else None
    cache = RenderCache()
    lock = threading.Lock()

    def render(model: HAProxyModel) -> str:
        with lock:
            return render_config(model, render_settings, template, cache=cache)

    return render


def make_traffic_poller(haproxy: HAProxyControl, render_settings: RenderSettings) -> TrafficPoller:
    """The poller of HAProxy's counters for the status page (its own runtime API client)."""
    from .haproxy.runtime import RuntimeAPI
    from .traffic_poller import TrafficPoller

    stats = RuntimeAPI(render_settings.admin_socket, master_socket=haproxy.master_socket)
    return TrafficPoller(stats)
