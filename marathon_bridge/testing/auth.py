"""Marathon's authentication as the emulator checks it: HTTP basic (``--http_credentials``, a
Jetty 401 page) or a DC/OS token (JSON 401 without a header, 403 with a wrong one)."""

from __future__ import annotations

import base64
from typing import Any, Optional

from marathon_bridge.testing.responses import Response, html_error, message


def auth_kind(auth: Any) -> tuple[str, Any]:
    """("basic", (user, password)) | ("token", token) | ("", None) from whatever was given."""
    if auth is None:
        return "", None
    if isinstance(auth, str):
        return "token", auth
    if hasattr(auth, "token"):
        return "token", str(auth.token)
    if hasattr(auth, "user") and hasattr(auth, "password"):
        return "basic", (str(auth.user), str(auth.password))
    if isinstance(auth, (tuple, list)) and len(auth) == 2:
        return "basic", (str(auth[0]), str(auth[1]))
    raise TypeError("auth must be BasicAuth, TokenAuth, (user, password) or a token string")


def check_auth(auth: Any, header: Optional[str], path: str) -> Optional[Response]:
    """None when the request may pass; else the 401/403 answer."""
    kind, expected = auth_kind(auth)
    if not kind:
        return None
    if kind == "basic":
        ok = False
        if header and header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
            ok = (user, password) == expected
        if ok:
            return None
        response = html_error(401, "Unauthorized", path, marathon_headers=False)
        response.headers.append(("WWW-Authenticate", 'basic realm="Mesosphere"'))
        return response
    if header is None:
        response = message(401, "Invalid username or password.")
        response.headers.append(("WWW-Authenticate", "acsjwt"))
        return response
    if header.strip() != f"token={expected}":
        return message(403, "Not Authorized to perform this action!")
    return None


# --------------------------------------------------------------------------- server
