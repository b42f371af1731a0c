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

COOKIE = "dianfei_session"

#: routes that answer without a signed-in user (each proves itself another way, or is harmless)
PUBLIC_PATHS = frozenset({
    "/api/v1/auth/token", "/api/v1/auth/logout", "/api/v1/health", "/healthz", "/readyz",
    "/openapi.json",
    "/login", "/session", "/logout", "/api/v1/payments/notify/alipay", "/api/v1/payments/notify/wechatpay",
    "/api/v1/payments/notify/online"})

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
        token = presented_token(dict(request.headers), dict(request.cookies))
        principal = await run_in_threadpool(self._lookup, token) if token else None
        scope.setdefault("state", {})["principal"] = principal

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
