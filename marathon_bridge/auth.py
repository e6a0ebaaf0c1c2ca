"""Credentials for Marathon: HTTP basic auth and DC/OS tokens, never shown in logs or ``repr``."""

from __future__ import annotations

import base64
from typing import NamedTuple, Optional, Union
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
import requests.auth


class BasicAuth(NamedTuple):
    """HTTP basic credentials (Marathon's ``--http_credentials``). ``repr`` hides the password."""

    user: str
    password: str

    def __repr__(self) -> str:
        return f"BasicAuth(user={self.user!r}, password='***')"

    def header(self) -> str:
        """The ``Authorization`` header value."""
        raw = f"{self.user}:{self.password}"
        try:
            encoded = raw.encode("latin-1")
        except UnicodeEncodeError:
            encoded = raw.encode("utf-8")
        return "Basic " + base64.b64encode(encoded).decode("ascii")


class TokenAuth(NamedTuple):
    """A DC/OS authentication token, sent as ``Authorization: token=<token>``. ``repr`` hides it."""

    token: str

    def __repr__(self) -> str:
        return "TokenAuth(token='***')"

    def header(self) -> str:
        """The ``Authorization`` header value."""
        return f"token={self.token}"


Auth = Union[BasicAuth, TokenAuth]


class AuthorizationHeader(requests.auth.AuthBase):
    """Sets a fixed ``Authorization`` header (and keeps requests from reading ~/.netrc)."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request

    def __repr__(self) -> str:
        return "AuthorizationHeader('***')"


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: safe to log and to put in error messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def userinfo_auth(url: str) -> Optional[BasicAuth]:
    """The basic credentials written into a URL (``http://user:pass@host``), if any."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    return BasicAuth(unquote(parts.username), unquote(parts.password or ""))
