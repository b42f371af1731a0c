"""Payment channel callbacks and the payments REST API.

The callback routes are the only payment routes without a signed-in user: the payment channels call them,
and their proof is the channel's signature, checked by the adapter before anything is posted.
Each answers the channel's "received" reply (Alipay ``success``, WeChat Pay 204) only after the
payment is durably posted (or was already posted); anything refused gets the channel's failure
reply and stays on the inbox worklist.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

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
from dianfei.web.auth import guard
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

    async def _receive(request: Request, channel: str,
                       verify: Callable[[bytes, dict[str, str]], Outcome]) -> inbox.InboxResult:
        """Guard, verify, then post: an unproven message never reaches the postings' writer."""
        source = junk.source_of(request.client.host if request.client else None, request.headers)
        if junk.throttled(source):
            junk.refused(channel=channel, source=source, code="throttled",
                          detail="too many unverifiable notifications from this source")
            return inbox.InboxResult(0, "refused", "throttled", "too many unverifiable notifications")
        body = await _capped_body(request, junk.settings.max_body)
        if body is None:
            declared = request.headers.get("content-length", "")
            junk.refused(channel=channel, source=source, code="too_large",
                          detail=f"body over {junk.settings.max_body} bytes "
                                 f"(Content-Length {declared[:20]})",
                          body_size=int(declared) if declared.isdigit() else junk.settings.max_body + 1)
            return inbox.InboxResult(0, "refused", "too_large",
                                     f"the body exceeds {junk.settings.max_body} bytes")
        headers = dict(request.headers)
        received_at = clock.now()
        try:
            outcome: Outcome = verify(body, headers)  # signature checks: ~0.2 ms, no database
        except Exception as exc:  # an adapter bug must not lose the message: it stays listed
            outcome = Refusal("verify_error", f"{type(exc).__name__}: {exc}")
        if isinstance(outcome, Refusal) and not outcome.signed:
            junk.refused(channel=channel, source=source, code=outcome.code, detail=outcome.message,
                          claimed_transaction_id=outcome.transaction_id, body=body)
            return inbox.InboxResult(0, "refused", outcome.code, outcome.message)
        junk.verified(source)
        item = fastpath.Incoming(channel, headers, body, outcome, received_at)
        return await asyncio.wrap_future(batcher.submit(item))

    @app.post("/api/v1/payments/notify/alipay", response_class=PlainTextResponse, tags=["payments"])
    async def notify_alipay(request: Request) -> Response:
        """Alipay asynchronous notification (form-encoded, RSA2). Answers ``success`` once
        posted; ``fail`` (and the refusal on the worklist or the refusal log) otherwise."""
        ctype = request.headers.get("content-type", "")
        res = await _receive(request, "alipay", lambda body, _h: alipay.verify(body, ctype))
        if res.accepted:
            return PlainTextResponse("success")
        return PlainTextResponse("fail", status_code=_status(res))

    @app.post("/api/v1/payments/notify/wechatpay", tags=["payments"])
    async def notify_wechatpay(request: Request) -> Response:
        """WeChat Pay APIv3 notification (Wechatpay-* headers, AEAD_AES_256_GCM resource).
        204 once posted; 4xx with ``{"code": "FAIL", "message"}`` otherwise."""
        res = await _receive(request, "wechatpay",
                             lambda body, headers: wechat.verify(headers, body, now=clock.now()))
        if res.accepted:
            return Response(status_code=204)
        return JSONResponse({"code": "FAIL", "message": f"{res.code}: {res.message}"},
                            status_code=_status(res))

    @app.post("/api/v1/payments/notify/online", tags=["payments"])
    async def notify_online(request: Request) -> Response:
        """Online banking / app gateway callback (JSON, HMAC-SHA256; docs/payment-channels.md)."""
        res = await _receive(request, "online",
                             lambda body, headers: online.verify(headers, body, now=clock.now()))
        if res.accepted:
            return JSONResponse({"code": "SUCCESS"})
        return JSONResponse({"code": "FAIL", "message": f"{res.code}: {res.message}"},
                            status_code=_status(res))

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


async def _capped_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit``: refused from Content-Length before
    reading, and never read past the limit when the sender lies or streams."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
