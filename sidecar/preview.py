"""``marathon-sidecar --once``: the config one snapshot of the source gives, checked, printed.

A preview never touches a running node: the config goes to stdout, or to ``--output FILE``
(written atomically; its folder must exist). Nothing else is written: no directory is created
(not even ``--state-dir``, whose paths the config names as the daemon would), no state is saved,
no HAProxy is started or reloaded, and ``--haproxy-config`` is not written.

What the daemon would leave out is reported on stderr, one log line each: every label it does
not honor ("label not honored", with the app, the label and why) and every app, port or task it
leaves out ("left out", with why; apps HAProxy refuses included, as the daemon would find them),
then a summary. ``--strict`` makes any of them exit status :data:`EXIT_PROBLEMS`.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import IO, TYPE_CHECKING, Callable, Optional

from .apply.config_file import ConfigFile
from .apply.results import ApplyCounters
from .apply.validation import Validator
from .catalog import Problem, Skipped
from .desired import build_model
from .haproxy_model import HAProxyModel
from .resolve import Resolver

if TYPE_CHECKING:
    from .render_settings import RenderSettings
    from .settings import Settings
    from .sources.base import CatalogSource

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1  # the source could not be read, or HAProxy refuses even the config without apps
EXIT_PROBLEMS = 3  # --strict: written, but labels not honored or apps left out
DNS_WAIT = 5.0  # a preview waits this long for each host name (the daemon rebuilds instead)

Renderer = Callable[[HAProxyModel], str]


def run_preview(
    settings: Settings,
    source: CatalogSource,
    render_settings: RenderSettings,
    render: Renderer,
    *,
    stdout: Optional[IO[str]] = None,
) -> int:
    """Snapshot, build, check and print (or write) the config; the exit status."""
    if settings.haproxy_config and not settings.output:
        log.info("--once prints the config; --haproxy-config is not written (--output FILE is)")
    try:
        catalog = source.snapshot_once()
    except Exception as exc:
        log.error(f"cannot read {source.name}", extra={"error": str(exc)[:300]})
        return EXIT_FAILED
    resolver = Resolver(timeout=DNS_WAIT)
    try:
        model = build_model(catalog, render_settings, resolver)
    finally:
        resolver.close()
    with tempfile.TemporaryDirectory(prefix="marathon-sidecar-once-") as scratch:
        target = settings.output or os.path.join(scratch, "haproxy.cfg")
        validator = Validator(
            render, ConfigFile(target), [settings.haproxy_bin, "-c", "-f"], ApplyCounters()
        )
        checked = validator.validated(model, lambda m: m)
        if checked.candidate is None or checked.text is None or checked.model is None:
            log.error("haproxy refuses the config", extra={"error": checked.error[:2000]})
            return EXIT_FAILED
        if settings.output:
            validator.config.install(checked.candidate)
        else:
            validator.config.discard(checked.candidate)
            out = stdout if stdout is not None else sys.stdout
            out.write(checked.text)
            out.flush()
    found = report(model.problems, model.skipped + checked.skipped)
    log.info(
        "preview done",
        extra={
            "output": settings.output or "-",
            "backends": len(checked.model.backends),
            "label_problems": len(model.problems),
            "skipped": len(model.skipped) + len(checked.skipped),
        },
    )
    return EXIT_PROBLEMS if settings.strict and found else EXIT_OK


def report(problems: tuple[Problem, ...], skipped: tuple[Skipped, ...]) -> int:
    """Log every label problem and everything left out, one line each; how many there were."""
    for problem in problems:
        log.warning(
            "label not honored",
            extra={"app_id": problem.app_id, "label": problem.label, "reason": problem.reason},
        )
    for entry in skipped:
        where: dict[str, object] = {"app_id": entry.app_id}
        if entry.port_index is not None:
            where["port_index"] = entry.port_index
        if entry.task_id:
            where["task_id"] = entry.task_id
        log.warning("left out", extra={**where, "reason": entry.reason})
    return len(problems) + len(skipped)
