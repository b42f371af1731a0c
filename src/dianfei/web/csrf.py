"""CSRF protection for the browser's session cookie.

A bearer token is never sent by a browser on its own, so API clients need nothing. A session
cookie is: SameSite=Strict already keeps other sites from sending it, and on top of that every
state-changing request that is signed in by the cookie must carry the page's CSRF token — in
the ``X-CSRF-Token`` header (htmx sends it from ``hx-headers`` on ``<body>``) or, for a plain
form, in a ``csrf_token`` field.

The token is derived from the session token (HMAC-SHA256 with a fixed label): another site can
read neither, a new session gets a new one, and several server processes agree on it without
sharing state.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs

HEADER = "x-csrf-token"
FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: a form larger than this is not searched for the field (uploads send the header)
MAX_FORM_BYTES = 1 << 20


def csrf_token(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"dianfei-csrf-v1", hashlib.sha256).hexdigest()


def valid(session_token: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(csrf_token(session_token), presented or "")


def token_in_form(body: bytes) -> str | None:
    """The ``csrf_token`` field of a url-encoded form body, if there is one."""
    if len(body) > MAX_FORM_BYTES:
        return None
    values = parse_qs(body.decode("utf-8", "replace")).get(FIELD)
    return values[0] if values else None
