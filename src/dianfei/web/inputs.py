"""Refuse NUL characters in a request before any route sees it.

PostgreSQL text cannot hold U+0000: a NUL in a query parameter, a path segment or a JSON string
that reaches a query (even only a comparison) fails in the driver — a 500 for what is bad input.
SQLite takes it, so the two databases would also disagree. No field of the API has any use for
it, so it is refused once here, as 422 ``invalid`` naming where it was.

JSON bodies are checked after parsing (``\\u0000`` escapes included); the payment channels'
callbacks are left alone (they read their raw, size-capped body themselves and store it
verbatim).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, unquote

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: the largest JSON body inspected; a larger one goes on unchecked (routes refuse it anyway)
MAX_CHECKED_BODY = 1 << 20
_CALLBACKS = "/api/v1/payments/notify/"


class RefuseNul:
    """ASGI middleware: 422 for a NUL in the path, the query string or a JSON body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_CALLBACKS):
            await self.app(scope, receive, send)
            return
        where = _nul_in_url(scope)
        if where is not None:
            await _refuse(send, where)
            return
        if not _is_json(scope):
            await self.app(scope, receive, send)
            return
        messages, body = await _read_body(receive)
        where = _nul_in_json(body) if body is not None else None
        if where is not None:
            await _refuse(send, where)
            return
        replay = list(messages)

        async def replayed() -> Message:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replayed, send)


def _nul_in_url(scope: Scope) -> str | None:
    if "\x00" in scope["path"] or "%00" in (scope.get("raw_path") or b"").decode("latin-1"):
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" in query or "\x00" in query:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                return f"query.{name.replace(chr(0), '')}"
        return "query"
    if "\x00" in unquote(query):
        return "query"
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return b"json" in value.lower()
    return False


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The request's messages as read, and the body (None when over the checked size)."""
    messages: list[Message] = []
    size = 0
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_CHECKED_BODY:
            return messages, None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return messages, b"".join(chunks)


def _nul_in_json(body: bytes) -> str | None:
    if b"\\u0000" not in body and b"\x00" not in body:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None  # not JSON: the route's parser says so, with its own message
    return _walk(doc, "body")


def _walk(value: Any, where: str) -> str | None:
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                return where
            found = _walk(v, f"{where}.{k}")
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _walk(v, f"{where}.{i}")
            if found:
                return found
    return None


async def _refuse(send: Send, where: str) -> None:
    body = json.dumps({"error": "invalid", "message": f"{where}: a NUL character (U+0000) is "
                       "not allowed", "field": where}).encode()
    await send({"type": "http.response.start", "status": 422,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
