"""How the client reaches Marathon: several URLs with failover, retries when safe, redirects with
the credentials kept to trusted origins. See :mod:`marathon_bridge.client` for the rules."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union
from urllib.parse import urljoin, urlsplit

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

from marathon_bridge import jsonfast
from marathon_bridge.auth import AuthorizationHeader, strip_userinfo
from marathon_bridge.errors import Forbidden, MarathonError, Unauthorized, Unavailable
from marathon_bridge.responses import (
    describe_failure,
    error_from_response,
    nothing_sent,
    payload,
)

log = logging.getLogger(__name__)

IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
FAILOVER_STATUSES = frozenset({502, 503})
MAX_REDIRECTS = 5
MAX_BACKOFF = 10.0
JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream"


class _RoundFailed(Exception):
    """No URL answered in one round and trying again is safe; carries the error to raise."""

    def __init__(self, error: MarathonError) -> None:
        super().__init__(str(error))
        self.error = error


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").lower(), port


def base_url(url: str) -> str:
    """A Marathon base URL, checked and without user info or a trailing slash."""
    url = url.strip()
    parts = urlsplit(url)
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number or out of range
        valid = False
    if not valid or parts.query or parts.fragment:
        raise ValueError(f"urls: not an http(s) base URL: {strip_userinfo(url)!r}")
    return strip_userinfo(url).rstrip("/")


class Transport:
    """Sends requests to the first Marathon URL that answers (thread-safe)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        auth_header: Optional[str],
        verify: Union[bool, str],
        timeout: tuple[float, float],
        retries: int,
        backoff: float,
        session: requests.Session,
    ) -> None:
        self._urls = list(urls)
        self._lock = threading.Lock()
        self._auth_hook = AuthorizationHeader(auth_header) if auth_header is not None else None
        self.verify = verify
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = session

    @property
    def urls(self) -> list[str]:
        """The base URLs in the order they will be tried: the last one that answered first."""
        with self._lock:
            return list(self._urls)

    def call(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        *,
        body: Optional[Mapping[str, Any]] = None,
        accept: str = JSON_TYPE,
    ) -> tuple[requests.Response, Any]:
        """Send with failover and retries; return the 2xx response and its parsed body."""
        data = jsonfast.dumps(body) if body is not None else None
        idempotent = method in IDEMPOTENT
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.backoff, max=MAX_BACKOFF)
            + wait_random(0, self.backoff),
            retry=retry_if_exception_type(_RoundFailed),
            before_sleep=functools.partial(self._log_retry, method, path),
            reraise=True,
        )
        try:
            return retrying(self._round, method, path, list(params), data, accept, idempotent)
        except _RoundFailed as failed:
            raise failed.error from failed.error.__cause__

    def _round(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]],
        data: Optional[bytes],
        accept: str,
        idempotent: bool,
    ) -> tuple[requests.Response, Any]:
        """Try each URL once. Raises ``_RoundFailed`` when none answered and a retry is safe."""
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = JSON_TYPE
        failures: list[tuple[str, MarathonError]] = []
        for base in self.urls:
            url = base + path
            started = time.monotonic()
            try:
                response = self._send(method, url, params, data, headers, self.timeout)
            except requests.RequestException as exc:
                error: MarathonError = Unavailable(describe_failure(exc), method=method, url=url)
                error.__cause__ = exc
                if not (idempotent or nothing_sent(exc)):
                    raise error from exc
                self._log_failover(method, url, error)
                failures.append((base, error))
                continue
            self._log_response(method, response, started)
            status = response.status_code
            if status in FAILOVER_STATUSES:
                error = error_from_response(response, method)
                if not idempotent:
                    raise error
                self._log_failover(method, url, error)
                failures.append((base, error))
                continue
            if status >= 300:
                self.prefer(base)
                raise error_from_response(response, method)
            try:
                body = payload(response)
            except ValueError:
                error = Unavailable(
                    "the response body is not valid JSON",
                    status=status,
                    method=method,
                    url=response.url,
                )
                if not idempotent:
                    raise error from None
                self._log_failover(method, url, error)
                failures.append((base, error))
                continue
            self.prefer(base)
            return response, body
        raise _RoundFailed(self._no_answer(method, path, failures))

    def _send(
        self,
        method: str,
        url: str,
        params: Optional[Sequence[tuple[str, str]]],
        data: Optional[bytes],
        headers: Mapping[str, str],
        timeout: tuple[float, float],
        *,
        stream: bool = False,
        trust_redirects: bool = False,
    ) -> requests.Response:
        """One request; GET/HEAD redirects are followed here (other methods get the 3xx).

        The credentials go along to the same origin and to the configured Marathon URLs, and
        with ``trust_redirects`` (the event stream: a standby's 302 names the leader) to any
        target -- never from https down to http.
        """
        response = self.session.request(
            method,
            url,
            params=params,
            data=data,
            headers=dict(headers),
            auth=self._auth_hook,
            timeout=timeout,
            verify=self.verify,
            allow_redirects=False,
            stream=stream,
        )
        hops = 0
        while response.is_redirect and method in ("GET", "HEAD") and hops < MAX_REDIRECTS:
            source = response.url
            target = strip_userinfo(urljoin(source, response.headers["Location"]))
            response.close()
            send_auth = self._may_send_auth(source, target, trust_redirects)
            log.info(
                "following a redirect",
                extra={"marathon_url": source, "location": target, "with_auth": send_auth},
            )
            response = self.session.request(
                method,
                target,
                headers=dict(headers),
                auth=self._auth_hook if send_auth else None,
                timeout=timeout,
                verify=self.verify,
                allow_redirects=False,
                stream=stream,
            )
            hops += 1
        return response

    def _may_send_auth(self, source: str, target: str, trust_redirects: bool) -> bool:
        """May the credentials follow a redirect from ``source`` to ``target``?"""
        if source.startswith("https:") and not target.startswith("https:"):
            return False
        origin = _origin(target)
        return (
            trust_redirects
            or origin == _origin(source)
            or any(origin == _origin(base) for base in self.urls)
        )

    def open_event_stream(
        self, params: Sequence[tuple[str, str]], read_timeout: float
    ) -> requests.Response:
        """Open ``/v2/events`` on the first URL that accepts it (the EventStream's opener)."""
        headers = {"Accept": SSE_TYPE, "Accept-Encoding": "identity"}
        timeout = (self.timeout[0], read_timeout)
        failures: list[tuple[str, MarathonError]] = []
        for base in self.urls:
            url = base + "/v2/events"
            try:
                response = self._send(
                    "GET", url, params, None, headers, timeout, stream=True, trust_redirects=True
                )
            except requests.RequestException as exc:
                failures.append((base, Unavailable(describe_failure(exc), method="GET", url=url)))
                continue
            content_type = response.headers.get("Content-Type", "")
            is_sse = not content_type or content_type.lower().startswith(SSE_TYPE)
            if response.status_code == 200 and is_sse:
                self.prefer(base)
                return response
            error: MarathonError
            if response.status_code == 200:
                response.close()
                error = MarathonError(
                    f"not an event stream (Content-Type {content_type!r})",
                    status=200,
                    method="GET",
                    url=strip_userinfo(response.url),
                )
            else:
                error = error_from_response(response, "GET")
                response.close()
            if isinstance(error, (Unauthorized, Forbidden)):
                raise error
            failures.append((base, error))
        raise self._no_answer("GET", "/v2/events", failures)

    def _no_answer(
        self, method: str, path: str, failures: list[tuple[str, MarathonError]]
    ) -> MarathonError:
        """The error for a round in which no URL answered."""
        if len(failures) == 1:
            return failures[0][1]
        summary = "; ".join(f"{base}: {error.message}" for base, error in failures)
        last = failures[-1][1] if failures else None
        error = Unavailable(
            f"no Marathon URL answered ({summary})",
            status=last.status if last is not None else None,
            method=method,
            url=path,
            body=last.body if last is not None else None,
        )
        if last is not None and last.__cause__ is not None:
            error.__cause__ = last.__cause__
        return error

    def prefer(self, base: str) -> None:
        """Rotate the URL list so ``base`` comes first."""
        with self._lock:
            if self._urls[0] == base or base not in self._urls:
                return
            index = self._urls.index(base)
            self._urls = self._urls[index:] + self._urls[:index]
        log.info("preferring Marathon URL", extra={"marathon_url": base})

    @staticmethod
    def _log_response(method: str, response: requests.Response, started: float) -> None:
        log.debug(
            "marathon response",
            extra={
                "http_method": method,
                "marathon_url": strip_userinfo(response.url),
                "http_status": response.status_code,
                "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )

    @staticmethod
    def _log_failover(method: str, url: str, error: MarathonError) -> None:
        log.info(
            "Marathon URL did not answer; trying the next one",
            extra={
                "http_method": method,
                "marathon_url": url,
                "http_status": error.status,
                "error": error.message,
            },
        )

    @staticmethod
    def _log_retry(method: str, path: str, state: RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "no Marathon URL answered; retrying",
            extra={
                "http_method": method,
                "path": path,
                "attempt": state.attempt_number,
                "delay_s": round(delay, 3),
            },
        )
