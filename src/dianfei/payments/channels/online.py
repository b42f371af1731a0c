"""Online banking and app payments (网上银行 / 掌上电力 App): our own gateway's signed JSON callbacks.

The utility's app and its online-banking partners collect through one gateway we run (or a bank
aggregator configured to speak this format). It POSTs JSON, proven with HMAC-SHA256 under a shared
secret (``DIANFEI_ONLINE_PAY_SECRET``). The wire format mirrors WeChat Pay's so one set of habits
serves both:

Headers::

    Dianfei-Timestamp: 1709260496            (Unix seconds; ±5 minutes of our clock)
    Dianfei-Nonce:     5K8264ILTKCH16CQ2502SI8ZNMTM67VS   (random, 16–64 characters)
    Dianfei-Signature: <lower-case hex HMAC-SHA256(secret, timestamp + "\\n" + nonce + "\\n" + body + "\\n")>

Body (UTF-8 JSON object)::

    {"order_no": "DF2024030112345678", "transaction_id": "ICBC20240301000123",
     "amount": 12345, "paid_at": "2024-03-01T10:34:56+08:00",
     "status": "SUCCESS", "payer_channel": "app"}

``amount`` is integer fen; ``status`` is SUCCESS (a payment) or anything else (acknowledged, not
posted; default SUCCESS when absent); ``payer_channel`` is optional (``app``, ``ebank``, a bank
code). The HMAC is compared in constant time by ``cryptography``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from dianfei.payments.channels.base import ChannelPayment, Outcome, Refusal, Verified, signed
from dianfei.payments.channels.common import positive_fen, rfc3339_time, text_field
from dianfei.payments.channels.config import OnlineSettings, not_configured
from dianfei.payments.channels.wechatpay import header_map

CHANNEL = "online"
_MAX_BODY = 64 * 1024


def sign(secret: bytes, timestamp: str, nonce: str, body: bytes) -> str:
    """The Dianfei-Signature header value for a callback (used by the gateway and the tests)."""
    mac = hmac.HMAC(secret, hashes.SHA256())
    mac.update(timestamp.encode("utf-8") + b"\n" + nonce.encode("utf-8") + b"\n" + body + b"\n")
    return mac.finalize().hex()


class OnlineNotifier:
    """Checks and parses callbacks of the online banking / app gateway."""

    channel = CHANNEL

    def __init__(self, settings: OnlineSettings | None) -> None:
        self.settings = settings

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: datetime) -> Outcome:
        if self.settings is None:
            return not_configured(CHANNEL)
        h = header_map(headers)
        timestamp = h.get("dianfei-timestamp", "")
        nonce = h.get("dianfei-nonce", "")
        signature = h.get("dianfei-signature", "")
        if not (timestamp and nonce and signature):
            return Refusal("bad_signature", "missing Dianfei-Timestamp, Dianfei-Nonce or Dianfei-Signature")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 10):
            return Refusal("bad_signature", f"Dianfei-Timestamp is not Unix seconds: {timestamp[:20]!r}")
        if not (16 <= len(nonce) <= 64 and nonce.isascii()):
            return Refusal("bad_signature", "Dianfei-Nonce must be 16–64 ASCII characters")
        if len(body) > _MAX_BODY:
            return Refusal("bad_format", f"body of {len(body)} bytes exceeds {_MAX_BODY}")
        try:
            given = bytes.fromhex(signature)
        except ValueError:
            return Refusal("bad_signature", "Dianfei-Signature is not hex")
        mac = hmac.HMAC(self.settings.secret, hashes.SHA256())
        mac.update(timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n")
        try:
            mac.verify(given)
        except InvalidSignature:
            return Refusal("bad_signature", "HMAC-SHA256 does not verify with the shared secret")
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        sent_at = datetime.fromtimestamp(int(timestamp), UTC)
        if abs(sent_at - now) > self.settings.replay_window:
            return Refusal("replay", f"Dianfei-Timestamp {sent_at.isoformat()} is outside the replay window")
        return signed(_parse(body))


def _parse(body: bytes) -> Outcome:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return Refusal("bad_format", "body is not UTF-8 JSON")
    if not isinstance(data, dict):
        return Refusal("bad_format", "body is not a JSON object")
    txn = text_field(data, "transaction_id", "callback")
    if isinstance(txn, Refusal):
        return txn
    status = data.get("status", "SUCCESS")
    if not isinstance(status, str) or not status:
        return Refusal("bad_format", "status must be a non-empty string", txn)
    if status != "SUCCESS":
        return Verified(payment=None, status=status)
    order_no = text_field(data, "order_no", "callback", max_len=40)
    if isinstance(order_no, Refusal):
        return Refusal(order_no.code, order_no.message, txn)
    amount = positive_fen(data.get("amount"), "amount")
    if isinstance(amount, Refusal):
        return Refusal(amount.code, amount.message, txn)
    paid = data.get("paid_at")
    paid_at = rfc3339_time(paid if isinstance(paid, str) else "", "paid_at")
    if isinstance(paid_at, Refusal):
        return Refusal(paid_at.code, paid_at.message, txn)
    extra: dict[str, str] = {}
    payer_channel = data.get("payer_channel")
    if isinstance(payer_channel, str) and payer_channel:
        extra["payer_channel"] = payer_channel[:32]
    payment = ChannelPayment(channel=CHANNEL, transaction_id=txn, amount=amount, paid_at=paid_at,
                             order_no=order_no, extra=extra)
    return Verified(payment=payment, status=status)
