"""Payment channel callbacks and the payments REST API.

The callback routes are the only payment routes without a signed-in user: the payment channels call them,
and their proof is the channel's signature, checked by the adapter before anything is posted.
Each answers the channel's "received" reply (Alipay ``success``, WeChat Pay 204) only after the
payment is durably posted (or was already posted); anything refused gets the channel's failure
reply and stays on the inbox worklist.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from dianfei.core.clock import Clock
from dianfei.db.engine import Database
from dianfei.payments import fastpath, inbox
from dianfei.payments.channels.alipay import AlipayNotifier
from dianfei.payments.channels.base import Outcome, Refusal
from dianfei.payments.channels.config import load_channel_settings
from dianfei.payments.channels.online import OnlineNotifier
from dianfei.payments.channels.wechatpay import WechatPayNotifier
from dianfei.payments.service import allocation_order
from dianfei.web.auth import guard

#: refusals that mean "you are not who you say": 401 rather than 400
_AUTH_REFUSALS = {"bad_signature", "wrong_serial", "stale_timestamp", "replay", "decrypt_failed",
                  "not_configured", "wrong_app", "wrong_merchant", "bad_sign_type"}


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    channels = load_channel_settings(db.settings, os.environ)
    alipay = AlipayNotifier(channels.alipay)
    wechat = WechatPayNotifier(channels.wechatpay)
    online = OnlineNotifier(channels.online)
    order = allocation_order(db.settings)

    # one writer thread per server process posts what the requests queue, many per transaction
    # (group commit, payments/fastpath.py); each request is answered after its batch committed
    batcher = fastpath.Batcher(db, clock=clock, order=order)
    app.state.callback_batcher = batcher

    async def _receive(channel: str, headers: Mapping[str, str], body: bytes,
                       verify: Any) -> inbox.InboxResult:
        received_at = clock.now()
        try:
            outcome: Outcome = verify()  # signature checks: ~0.2 ms, no database
        except Exception as exc:  # an adapter bug must not lose the message: it stays listed
            outcome = Refusal("verify_error", f"{type(exc).__name__}: {exc}")
        item = fastpath.Incoming(channel, headers, body, outcome, received_at)
        return await asyncio.wrap_future(batcher.submit(item))

    @app.post("/api/v1/payments/notify/alipay", response_class=PlainTextResponse, tags=["payments"])
    async def notify_alipay(request: Request) -> Response:
        """Alipay asynchronous notification (form-encoded, RSA2). Answers ``success`` once
        posted; ``fail`` (and the refusal on the worklist) otherwise."""
        body = await request.body()
        ctype = request.headers.get("content-type", "")
        res = await _receive("alipay", dict(request.headers), body,
                             lambda: alipay.verify(body, ctype))
        if res.accepted:
            return PlainTextResponse("success")
        status = 401 if res.code in _AUTH_REFUSALS else 400
        return PlainTextResponse("fail", status_code=status)

    @app.post("/api/v1/payments/notify/wechatpay", tags=["payments"])
    async def notify_wechatpay(request: Request) -> Response:
        """WeChat Pay APIv3 notification (Wechatpay-* headers, AEAD_AES_256_GCM resource).
        204 once posted; 4xx with ``{"code": "FAIL", "message"}`` otherwise."""
        body = await request.body()
        headers = dict(request.headers)
        res = await _receive("wechatpay", headers, body,
                             lambda: wechat.verify(headers, body, now=clock.now()))
        if res.accepted:
            return Response(status_code=204)
        status = 401 if res.code in _AUTH_REFUSALS else 400
        return JSONResponse({"code": "FAIL", "message": f"{res.code}: {res.message}"},
                            status_code=status)

    @app.post("/api/v1/payments/notify/online", tags=["payments"])
    async def notify_online(request: Request) -> Response:
        """Online banking / app gateway callback (JSON, HMAC-SHA256; docs/payment-channels.md)."""
        body = await request.body()
        headers = dict(request.headers)
        res = await _receive("online", headers, body,
                             lambda: online.verify(headers, body, now=clock.now()))
        if res.accepted:
            return JSONResponse({"code": "SUCCESS"})
        status = 401 if res.code in _AUTH_REFUSALS else 400
        return JSONResponse({"code": "FAIL", "message": f"{res.code}: {res.message}"},
                            status_code=status)

    @app.get("/api/v1/payments/{account}", tags=["payments"], **guard("payments:read"))
    def api_payments(account: str) -> list[dict[str, Any]]:
        """The account's posted payments, oldest first."""
        from dianfei.payments.service import account_payments, payment_summary

        frame = account_payments(db.engine, account)
        return [payment_summary(r) for r in frame.iter_rows(named=True)]

    @app.get("/api/v1/payments-worklist", tags=["payments"], **guard("payments:worklist"))
    def api_worklist() -> list[dict[str, Any]]:
        """Refused notifications awaiting clarification (oldest first)."""
        return [{"id": m.id, "channel": m.channel, "received_at": m.received_at.isoformat(),
                 "refusal": m.refusal, "detail": m.detail, "transaction_id": m.transaction_id,
                 "owner": m.owner} for m in inbox.worklist(db)]
