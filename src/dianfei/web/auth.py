"""Who is calling, and may they: sign-in, the caller middleware and the role check.

- :class:`CallerMiddleware` (every request) resolves a bearer token (``Authorization: Bearer``)
  or the console's session cookie to the signed-in user, puts it on ``request.state.principal``
  and makes the user the audit chain's actor for whatever the request changes; it also adds the
  security headers to every response.
- :func:`guard` is what every route is declared with: it names the permission(s) the route
  needs (``security.roles``), adds the check as a dependency (401 without a valid token, 403
  for a role without the permission) and writes the permission into the OpenAPI document as
  ``x-permission``, where the route-walking test reads it.
- Only :data:`PUBLIC_PATHS` (sign-in, health, the OpenAPI document and the payment channels'
  signed callbacks) go without a guard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from dianfei.audit.service import acting_as
from dianfei.db.engine import Database
from dianfei.security.service import Principal, allows, principal_for
from dianfei.web import csrf

COOKIE = "dianfei_session"

#: routes that answer without a signed-in user (each proves itself another way, or is harmless)
PUBLIC_PATHS = frozenset({
    "/api/v1/auth/token", "/api/v1/auth/logout", "/api/v1/health", "/healthz", "/readyz",
    "/openapi.json",
    "/", "/docs", "/login", "/session", "/logout",
    "/api/v1/payments/notify/alipay", "/api/v1/payments/notify/wechatpay",
    "/api/v1/payments/notify/online",
    # the customer portal's sign-in (web/portal.py): by one-time code or password
    "/portal/login", "/portal/login/code", "/portal/login/verify", "/portal/login/password",
    "/portal/logout"})

#: path prefixes served without a user: the console's CSS/JS and the front-end libraries
PUBLIC_PREFIXES = ("/static",)

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
     b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def presented_token(headers: dict[str, str], cookies: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return cookies.get(COOKIE) or None


class CallerMiddleware:
    """Resolve the caller once per request; add the security headers to every response."""

    def __init__(self, app: Any, db: Database) -> None:
        self.app = app
        self.db = db

    def _lookup(self, token: str) -> Principal | None:
        with self.db.session() as s:
            return principal_for(s, token, datetime.now(UTC))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        headers = dict(request.headers)
        token = presented_token(headers, dict(request.cookies))
        principal = await run_in_threadpool(self._lookup, token) if token else None
        scope.setdefault("state", {})["principal"] = principal
        if (principal is not None and token is not None and not _bearer(headers)
                and scope["method"] not in csrf.SAFE_METHODS
                and scope["path"] not in CSRF_EXEMPT):
            receive, ok = await _csrf_checked(scope, receive, headers, token)
            if not ok:
                await _refuse_csrf(send)
                return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in have]
                if principal is not None and b"cache-control" not in have:
                    headers.append((b"cache-control", b"no-store"))  # personal data
                message["headers"] = headers
            await send(message)

        actor = f"user:{principal.username}" if principal else "anonymous"
        with acting_as(actor):
            await self.app(scope, receive, send_with_headers)


#: signing in has no session yet; signing out with a forged form only signs the user out
CSRF_EXEMPT = frozenset({"/session", "/logout", "/api/v1/auth/token", "/api/v1/auth/logout",
                         "/portal/login/code", "/portal/login/verify", "/portal/login/password",
                         "/portal/logout"})


def _bearer(headers: dict[str, str]) -> bool:
    return headers.get("authorization", "")[:7].lower() == "bearer "


async def _csrf_checked(scope: Scope, receive: Receive, headers: dict[str, str],
                        token: str) -> tuple[Receive, bool]:
    """Is the request signed in by the cookie carrying the page's CSRF token (header, or the
    ``csrf_token`` field of a url-encoded form)? The body read to find the field is replayed
    to the route."""
    if csrf.valid(token, headers.get(csrf.HEADER)):
        return receive, True
    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return receive, False
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > csrf.MAX_FORM_BYTES:
            return receive, False
    sent = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay, csrf.valid(token, csrf.token_in_form(body))


async def _refuse_csrf(send: Send) -> None:
    body = b'{"error":"csrf","message":"missing or wrong CSRF token: reload the page and try again"}'
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


def caller_address(request: Request) -> str:
    """The caller's address for the per-address limits (sign-in failures, the portal's codes):
    through a proxy in ``trusted_proxies`` the address it forwarded, the rule of the payment
    callbacks' throttle (core/proxies.py)."""
    from dianfei.core.proxies import client_address

    trusted: frozenset[str] = getattr(request.app.state, "trusted_proxies", frozenset())
    return client_address(request.client.host if request.client else None, request.headers,
                          trusted)


def caller(request: Request) -> Principal | None:
    return getattr(request.state, "principal", None)


def _checker(permissions: tuple[str, ...]) -> Callable[[Request], Principal]:
    def check(request: Request) -> Principal:
        who = caller(request)
        if who is None:
            raise HTTPException(status_code=401, detail="sign in first",
                                headers={"WWW-Authenticate": "Bearer"})
        if not any(allows(who.role, p) for p in permissions):
            raise HTTPException(status_code=403, detail="your role may not do this")
        return who

    return check


def guard(*permissions: str) -> dict[str, Any]:
    """Route keyword arguments: the role check as a dependency, and ``x-permission`` in the
    OpenAPI document. Use: ``@app.get(path, **guard("bills:read"))``."""
    for p in permissions:
        allows("admin", p)  # raises on an unknown permission name
    return {"dependencies": [Depends(_checker(permissions))],
            "openapi_extra": {"x-permission": list(permissions)}}


def signed_in(request: Request) -> Principal:
    """The guarded route's caller (the guard has run)."""
    who = caller(request)
    if who is None:  # a route declared without a guard: refuse rather than serve
        raise HTTPException(status_code=401, detail="sign in first")
    return who


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only. ``//evil.example``,
    ``/\\evil.example``, ``https://evil.example`` and anything with a scheme or host become
    ``/`` (an open redirect would hand a phishing site our sign-in's credibility)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(c in target for c in "\\\r\n\t") or any(ord(c) < 32 for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target
