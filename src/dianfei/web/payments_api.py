"""Payment channel callbacks and the payments REST API.

The callback routes are the only payment routes without a signed-in user: the payment channels call them,
and their proof is the channel's signature, checked by the adapter before anything is posted.
Each answers the channel's "received" reply (Alipay ``success``, WeChat Pay 204) only after the
payment is durably posted (or was already posted); anything refused gets the channel's failure
reply and stays on the inbox worklist.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse, Response

from dianfei.core.clock import Clock
from dianfei.db.engine import Database
from dianfei.payments import fastpath, inbox
from dianfei.payments.channels.alipay import AlipayNotifier
from dianfei.payments.channels.base import Outcome, Refusal
from dianfei.payments.channels.config import load_channel_settings, missing_merchant_ids
from dianfei.payments.channels.online import OnlineNotifier
from dianfei.payments.channels.wechatpay import WechatPayNotifier
from dianfei.payments.refusal_log import CallbackGuard, load_guard_settings, recent_refusals
from dianfei.payments.service import allocation_order
from dianfei.web.auth import SECURITY_HEADERS, guard
from dianfei.web.observability import request_id_for
from dianfei.web.paging import MAX_ID, ListWindow, list_window

log = logging.getLogger(__name__)

#: refusals that mean "you are not who you say": 401 rather than 400
_AUTH_REFUSALS = {"bad_signature", "wrong_serial", "stale_timestamp", "replay", "decrypt_failed",
                  "not_configured", "wrong_app", "wrong_merchant", "bad_sign_type"}


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    channels = load_channel_settings(db.settings, os.environ)
    missing = missing_merchant_ids(channels)
    if missing:
        log.warning("payment channels without merchant identities (a notification signed for "
                    "another merchant under the same key would be accepted): set %s, or "
                    "[payments] require_merchant_ids = true to refuse to start without them",
                    ", ".join(missing))
    alipay = AlipayNotifier(channels.alipay)
    wechat = WechatPayNotifier(channels.wechatpay)
    online = OnlineNotifier(channels.online)
    order = allocation_order(db.settings)

    # one writer thread per server process posts what the requests queue, many per transaction
    # (group commit, payments/fastpath.py); each request is answered after its batch committed
    batcher = fastpath.Batcher(db, clock=clock, order=order)
    app.state.callback_batcher = batcher

    junk = CallbackGuard(db, clock, load_guard_settings(db.settings.raw))
    app.state.callback_guard = junk
    # both writer threads end with the server (what they hold is written first) and with the
    # database they write to, whichever closes first
    for writer in (junk, batcher):
        db.on_close(writer.stop)
        app.router.on_shutdown.append(writer.stop)

    verifiers: dict[str, Callable[[bytes, Mapping[str, str]], Outcome]] = {
        "alipay": lambda body, headers: alipay.verify(body, headers.get("content-type", "")),
        "wechatpay": lambda body, headers: wechat.verify(dict(headers), body, now=clock.now()),
        "online": lambda body, headers: online.verify(dict(headers), body, now=clock.now()),
    }
    endpoint = CallbackEndpoint(junk, batcher, verifiers, clock)
    app.state.callback_endpoint = endpoint
    # Outermost of our middlewares (observability's was added before this): a callback POST is
    # answered here without the console's stack — caller lookup, CSRF, request context, routing
    # and FastAPI's parameter machinery cost ~0.4 ms a request, most of what a junk request
    # costs, and under a flood that is the CPU the genuine callbacks need (docs/benchmarks.md).
    # The routes below stay for the OpenAPI description and answer the same way through the
    # same CallbackEndpoint if the front door is ever not in front.
    app.add_middleware(CallbackFrontDoor, endpoint=endpoint,
                       latency=getattr(app.state, "latency", None))

    @app.post(ALIPAY_PATH, response_class=PlainTextResponse, tags=["payments"])
    async def notify_alipay(request: Request) -> Response:
        """Alipay asynchronous notification (form-encoded, RSA2). Answers ``success`` once
        posted; ``fail`` (and the refusal on the worklist or the refusal log) otherwise."""
        return _response(await endpoint.answer("alipay", _peer(request), dict(request.headers),
                                               request.stream()))

    @app.post(WECHATPAY_PATH, tags=["payments"])
    async def notify_wechatpay(request: Request) -> Response:
        """WeChat Pay APIv3 notification (Wechatpay-* headers, AEAD_AES_256_GCM resource).
        204 once posted; 4xx with ``{"code": "FAIL", "message"}`` otherwise."""
        return _response(await endpoint.answer("wechatpay", _peer(request), dict(request.headers),
                                               request.stream()))

    @app.post(ONLINE_PATH, tags=["payments"])
    async def notify_online(request: Request) -> Response:
        """Online banking / app gateway callback (JSON, HMAC-SHA256; docs/payment-channels.md)."""
        return _response(await endpoint.answer("online", _peer(request), dict(request.headers),
                                               request.stream()))

    @app.get("/api/v1/payments/{account}", tags=["payments"], **guard("payments:read"))
    def api_payments(account: str, response: Response,
                     window: Annotated[ListWindow, Depends(list_window)]) -> list[dict[str, Any]]:
        """The account's posted payments, oldest first (``?limit=&offset=``: a slice, the
        count in ``X-Total-Count``; ``GET /api/v1/payments`` pages and filters)."""
        from dianfei.payments.service import account_payments, payment_summary

        frame = account_payments(db.engine, account)
        return window.cut([payment_summary(r) for r in frame.iter_rows(named=True)], response)

    @app.get("/api/v1/payments-worklist", tags=["payments"], **guard("payments:worklist"))
    def api_worklist(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     after_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None) -> dict[str, Any]:
        """Refused notifications of the channels awaiting clarification, oldest first, one page;
        ``next_after_id`` asks for the next page (null on the last)."""
        rows = inbox.worklist(db, limit=limit + 1, after_id=after_id)
        page = rows[:limit]
        return {"items": [{"id": m.id, "channel": m.channel, "received_at": m.received_at.isoformat(),
                           "refusal": m.refusal, "detail": m.detail,
                           "transaction_id": m.transaction_id, "owner": m.owner} for m in page],
                "next_after_id": page[-1].id if len(rows) > limit else None}

    @app.get("/api/v1/payments-refusals", tags=["payments"], **guard("payments:worklist"))
    def api_refusals(limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     before_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None) -> dict[str, Any]:
        """The capped log of unverifiable notifications (bad signatures, junk, throttled),
        newest first, one page; ``next_before_id`` asks for the next page."""
        rows = recent_refusals(db, limit=limit + 1, before_id=before_id)
        page = rows[:limit]
        return {"items": page, "next_before_id": page[-1]["id"] if len(rows) > limit else None}


def _status(res: inbox.InboxResult) -> int:
    if res.code == "too_large":
        return 413
    if res.code == "throttled":
        return 429
    return 401 if res.code in _AUTH_REFUSALS else 400


ALIPAY_PATH = "/api/v1/payments/notify/alipay"
WECHATPAY_PATH = "/api/v1/payments/notify/wechatpay"
ONLINE_PATH = "/api/v1/payments/notify/online"
_CHANNEL_OF_PATH = {ALIPAY_PATH: "alipay", WECHATPAY_PATH: "wechatpay", ONLINE_PATH: "online"}

_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"


@dataclass(frozen=True)
class Answer:
    """What a callback is answered: the channel's own reply for "received" or "refused"."""

    status: int
    media_type: bytes | None
    body: bytes


def answer_for(channel: str, res: inbox.InboxResult) -> Answer:
    """The channel's reply: Alipay ``success``/``fail``, WeChat Pay 204 or ``{"code": "FAIL"}``,
    the online gateway ``{"code": "SUCCESS"}`` or FAIL (docs/payment-channels.md)."""
    if channel == "alipay":
        return Answer(200, _TEXT, b"success") if res.accepted else Answer(_status(res), _TEXT, b"fail")
    if res.accepted:
        return Answer(204, None, b"") if channel == "wechatpay" else Answer(200, _JSON, b'{"code":"SUCCESS"}')
    fail = {"code": "FAIL", "message": f"{res.code}: {res.message}"}
    # the bytes JSONResponse would send (compact, UTF-8)
    return Answer(_status(res), _JSON, json.dumps(fail, ensure_ascii=False, separators=(",", ":")).encode())


def _response(a: Answer) -> Response:
    return Response(a.body, status_code=a.status,
                    media_type=a.media_type.decode() if a.media_type else None)


def _peer(request: Request) -> str | None:
    return request.client.host if request.client else None


class CallbackEndpoint:
    """Guard, verify, then post: an unproven message never reaches the postings' writer.

    The cheap refusals come first and cost no body read: a throttled source (429), a declared
    body over the limit (413); then the body, read at most to the limit; then the signature
    (~0.1–0.2 ms, no database); only a verified message is queued for the writer."""

    def __init__(self, guard: CallbackGuard, batcher: fastpath.Batcher,
                 verifiers: Mapping[str, Callable[[bytes, Mapping[str, str]], Outcome]],
                 clock: Clock) -> None:
        self.guard, self.batcher, self.verifiers, self.clock = guard, batcher, verifiers, clock

    async def answer(self, channel: str, peer: str | None, headers: Mapping[str, str],
                     chunks: AsyncIterator[bytes]) -> Answer:
        return answer_for(channel, await self.receive(channel, peer, headers, chunks))

    async def receive(self, channel: str, peer: str | None, headers: Mapping[str, str],
                      chunks: AsyncIterator[bytes]) -> inbox.InboxResult:
        junk = self.guard
        source = junk.source_of(peer, headers)
        if junk.throttled(source):
            junk.refused(channel=channel, source=source, code="throttled",
                         detail="too many unverifiable notifications from this source")
            return inbox.InboxResult(0, "refused", "throttled", "too many unverifiable notifications")
        limit = junk.settings.max_body
        declared = headers.get("content-length")
        body = None if declared is not None and (not declared.isdigit() or int(declared) > limit) \
            else await _capped(chunks, limit)
        if body is None:
            declared = declared or ""
            junk.refused(channel=channel, source=source, code="too_large",
                         detail=f"body over {limit} bytes (Content-Length {declared[:20]})",
                         body_size=int(declared) if declared.isdigit() else limit + 1)
            return inbox.InboxResult(0, "refused", "too_large", f"the body exceeds {limit} bytes")
        received_at = self.clock.now()
        try:
            outcome: Outcome = self.verifiers[channel](body, headers)  # no database
        except Exception as exc:  # an adapter bug must not lose the message: it stays listed
            outcome = Refusal("verify_error", f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, Refusal) and not outcome.signed:
            junk.refused(channel=channel, source=source, code=outcome.code, detail=outcome.message,
                         claimed_transaction_id=outcome.transaction_id, body=body)
            return inbox.InboxResult(0, "refused", outcome.code, outcome.message)
        junk.verified(source)
        item = fastpath.Incoming(channel, dict(headers), body, outcome, received_at)
        return await asyncio.wrap_future(self.batcher.submit(item))


async def _capped(chunks: AsyncIterator[bytes], limit: int) -> bytes | None:
    """The body, or None as soon as it passes ``limit`` (never read further: a sender that lies
    about Content-Length or streams without one gets no more of our memory than the limit)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


class ClientGone(Exception):
    """The caller hung up before its body was complete: there is nobody to answer."""


class CallbackFrontDoor:
    """Pure ASGI middleware in front of the console's stack: answers POSTs to the callback URLs
    with :class:`CallbackEndpoint`, as the routes would (the channel's reply, the security
    headers, an ``x-request-id``, the request's latency under its route), and hands every other
    request on untouched."""

    def __init__(self, app: Any, endpoint: CallbackEndpoint, latency: Any = None) -> None:
        self.app, self.endpoint, self.latency = app, endpoint, latency

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        channel = _CHANNEL_OF_PATH.get(scope["path"]) if scope["type"] == "http" else None
        if channel is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # ASGI header names are lower case; a repeated header keeps its last value, as
        # dict(request.headers) does on the route
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        try:
            a = await self.endpoint.answer(channel, client[0] if client else None, headers, chunks())
        except ClientGone:
            return  # nothing was posted (the body never arrived) and nobody waits for an answer
        rid = request_id_for(headers.get("x-request-id"))
        out = [(b"content-length", str(len(a.body)).encode())]
        if a.media_type is not None:
            out.append((b"content-type", a.media_type))
        out += [*SECURITY_HEADERS, (b"x-request-id", rid.encode())]
        await send({"type": "http.response.start", "status": a.status, "headers": out})
        await send({"type": "http.response.body", "body": a.body})
        if self.latency is not None:
            self.latency.observe("POST", scope["path"], a.status, time.perf_counter() - start)
