#!/usr/bin/env python3
"""Container health probe for marathon-sidecar: GET <status address>/livez, exit 0 on HTTP 200.

By default it asks liveness (``/livez``: the sidecar's loop runs and its HAProxy is up, or
restarting within a grace period), the question a container HEALTHCHECK answers: an unhealthy
container is one to restart. A sidecar that lost Marathon stays healthy; ``--probe readyz`` asks
readiness instead (HAProxy serves a config built from a fresh enough catalog), ``--probe health``
the older combined ``/health``.

The image has no curl; this uses only the standard library so it runs with any python3.
The address comes from ``--url``, else ``MARATHON_SIDECAR_HEALTH_URL``, else the sidecar's own
status listen setting (``MARATHON_SIDECAR_STATUS_LISTEN``, default ``127.0.0.1:9090``); a
wildcard listen address (``0.0.0.0``, ``::``) is probed on loopback. Exit 1 when the sidecar
answers anything but 200 (its reasons are printed) or does not answer within the timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Optional

DEFAULT_LISTEN = "127.0.0.1:9090"
LISTEN_ENV = "MARATHON_SIDECAR_STATUS_LISTEN"
URL_ENV = "MARATHON_SIDECAR_HEALTH_URL"
PROBES = ("livez", "readyz", "health")
# A status server listening on every address is probed on loopback.
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}  # noqa: S104


def url_from_listen(listen: str, probe: str = "livez") -> str:
    """``HOST:PORT`` (or ``[v6]:PORT``) the status server listens on -> the URL to probe."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"status listen address must be HOST:PORT, got {listen!r}")
    host = WILDCARDS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/{probe}"


def health_url(explicit: Optional[str], environ: Mapping[str, str], probe: str = "livez") -> str:
    """The URL to probe: an explicit one, else the environment, else the sidecar's default."""
    if explicit:
        return explicit
    if environ.get(URL_ENV):
        return environ[URL_ENV]
    return url_from_listen(environ.get(LISTEN_ENV) or DEFAULT_LISTEN, probe)


def probe(url: str, timeout: float) -> tuple[bool, str]:
    """(healthy, one line saying why) for one GET of ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            return response.status == 200, summary(response.status, response.read(8192))
    except urllib.error.HTTPError as error:
        return False, summary(error.code, error.read(8192))
    except (OSError, ValueError) as error:
        return False, f"no answer from {url}: {error}"


def summary(status: int, body: bytes) -> str:
    """``503 failing: reason; reason`` from the sidecar's JSON answer (the raw text otherwise)."""
    text = body.decode("utf-8", "replace")
    try:
        answer = json.loads(text)
        word, reasons = answer["status"], "; ".join(answer.get("reasons") or [])
    except (ValueError, KeyError, TypeError):
        return f"{status} {' '.join(text.split())[:300]}".strip()
    return f"{status} {word}: {reasons}" if reasons else f"{status} {word}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help=f"the URL to probe (default: from ${URL_ENV}/${LISTEN_ENV})")
    parser.add_argument(
        "--probe", choices=PROBES, default="livez", help="what to ask (default livez)"
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        url = health_url(args.url, os.environ, args.probe)
    except ValueError as error:
        print(f"marathon-sidecar-healthcheck: {error}", file=sys.stderr)
        return 2
    healthy, reason = probe(url, args.timeout)
    print(reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
