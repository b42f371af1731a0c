"""WeChat Pay APIv3 notifications (微信支付回调通知): signature, replay window, decryption, parse.

WeChat Pay POSTs JSON to our notify URL and expects an answer within 5 seconds (else it retries,
15 times over about 24 hours). The proof travels in headers:

- ``Wechatpay-Timestamp`` (Unix seconds), ``Wechatpay-Nonce``, ``Wechatpay-Serial`` (the platform
  public key id ``PUB_KEY_ID_…`` or the platform certificate serial), ``Wechatpay-Signature``
  (base64) and ``Wechatpay-Signature-Type`` (``WECHATPAY2-SHA256-RSA2048`` when present);
- the signed text is ``timestamp\\nnonce\\nbody\\n`` over the body bytes exactly as received;
  the signature is SHA256-RSA, PKCS#1 v1.5, with the platform public key.

Only then is the body read: ``resource`` is AEAD_AES_256_GCM ciphertext (base64, the 16-byte tag at
its end) under the 32-character APIv3 key with the given ``nonce`` and ``associated_data``; inside
is the transaction (TRANSACTION.SUCCESS) or the refund (REFUND.*). A timestamp further than the
replay window (±5 minutes by default) from our clock is refused as ``replay``: a captured genuine
notification cannot be replayed later (it would post nothing anyway — the transaction id is
unique — but a stale proof is not a proof we accept). WeChat also sends probes whose signature
starts with ``WECHATPAY/SIGNTEST/``; they fail verification, as they must.

This is what ``wechatpayv3`` (``Core._verify_signature``, ``utils.rsa_verify``, ``aes_decrypt``)
checks, plus the serial, replay window, merchant and app id checks it leaves to the caller.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256

from dianfei.payments.channels.base import ChannelPayment, Outcome, Refusal, Verified, signed
from dianfei.payments.channels.common import (
    ChannelRefund,
    RefundVerified,
    positive_fen,
    rfc3339_time,
    text_field,
)
from dianfei.payments.channels.config import WechatPaySettings, not_configured

CHANNEL = "wechatpay"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
_MAX_BODY = 64 * 1024
_HEADERS = ("wechatpay-serial", "wechatpay-signature", "wechatpay-timestamp", "wechatpay-nonce")


def header_map(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers by lower-case name; also accepts WSGI/Django style ``HTTP_WECHATPAY_NONCE``."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        key = name.strip().lower().replace("_", "-")
        if key.startswith("http-"):
            key = key[5:]
        out[key] = value.strip()
    return out


def signed_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """The text WeChat Pay signs: ``timestamp\\nnonce\\nbody\\n`` (body bytes as received)."""
    return timestamp.encode("utf-8") + b"\n" + nonce.encode("utf-8") + b"\n" + body + b"\n"


class WechatPayNotifier:
    """Checks and parses WeChat Pay APIv3 notifications with the configured keys."""

    channel = CHANNEL

    def __init__(self, settings: WechatPaySettings | None) -> None:
        self.settings = settings

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: datetime) -> Outcome:
        """Check one notification (its headers and raw body) at instant ``now`` → Verified or Refusal."""
        if self.settings is None:
            return not_configured(CHANNEL)
        s = self.settings
        h = header_map(headers)
        missing = [name for name in _HEADERS if not h.get(name)]
        if missing:
            return Refusal("bad_signature", f"missing header(s): {', '.join(missing)}")
        sig_type = h.get("wechatpay-signature-type")
        if sig_type is not None and sig_type != SIGNATURE_TYPE:
            return Refusal("bad_signature", f"unsupported Wechatpay-Signature-Type {sig_type[:40]!r}")
        if len(body) > _MAX_BODY:
            return Refusal("bad_format", f"body of {len(body)} bytes exceeds {_MAX_BODY}")
        serial = h["wechatpay-serial"]
        if s.platform_public_key_id is not None and serial.upper() != s.platform_public_key_id.upper():
            return Refusal("wrong_serial", f"Wechatpay-Serial {serial[:64]!r} is not the configured "
                           "platform key id")
        timestamp, nonce = h["wechatpay-timestamp"], h["wechatpay-nonce"]
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 10):
            return Refusal("bad_signature", f"Wechatpay-Timestamp is not Unix seconds: {timestamp[:20]!r}")
        try:
            signature = base64.b64decode(h["wechatpay-signature"], validate=True)
            message = signed_message(timestamp, nonce, body)
            s.platform_public_key.verify(signature, message, PKCS1v15(), SHA256())
        except (binascii.Error, ValueError, InvalidSignature, UnicodeEncodeError):
            return Refusal("bad_signature", "signature does not verify with the platform public key")
        sent_at = datetime.fromtimestamp(int(timestamp), UTC)
        if now.tzinfo is None:  # the contract is an aware instant; a naive one is taken as UTC
            now = now.replace(tzinfo=UTC)
        if abs(sent_at - now) > s.replay_window:
            return Refusal("replay", f"Wechatpay-Timestamp {sent_at.isoformat()} is outside "
                           f"±{int(s.replay_window.total_seconds())} s of {now.astimezone(UTC).isoformat()}")
        return signed(self._open(body, s))

    def _open(self, body: bytes, s: WechatPaySettings) -> Outcome:
        try:
            envelope = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return Refusal("bad_format", "body is not UTF-8 JSON")
        if not isinstance(envelope, dict):
            return Refusal("bad_format", "body is not a JSON object")
        event_type = envelope.get("event_type")
        resource = envelope.get("resource")
        if envelope.get("resource_type") != "encrypt-resource" or not isinstance(resource, dict):
            return Refusal("bad_format", "no encrypt-resource in the notification")
        if resource.get("algorithm") != "AEAD_AES_256_GCM":
            return Refusal("bad_format", f"unsupported resource algorithm {resource.get('algorithm')!r:.40}")
        nonce, ciphertext = resource.get("nonce"), resource.get("ciphertext")
        associated = resource.get("associated_data") or ""
        if not (isinstance(nonce, str) and nonce and isinstance(ciphertext, str) and ciphertext
                and isinstance(associated, str)):
            return Refusal("bad_format", "resource lacks nonce or ciphertext")
        try:
            plain = AESGCM(s.apiv3_key).decrypt(nonce.encode("utf-8"), base64.b64decode(ciphertext),
                                                associated.encode("utf-8"))
        except (InvalidTag, binascii.Error, ValueError, OverflowError, UnicodeEncodeError):
            return Refusal("decrypt_failed", "resource does not decrypt with the APIv3 key")
        try:
            data = json.loads(plain.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return Refusal("bad_format", "decrypted resource is not UTF-8 JSON")
        if not isinstance(data, dict):
            return Refusal("bad_format", "decrypted resource is not a JSON object")
        txn = data.get("transaction_id")
        txn_id = txn if isinstance(txn, str) and 0 < len(txn) <= 64 else None
        if s.mchid is not None and data.get("mchid", data.get("sp_mchid")) != s.mchid:
            return Refusal("wrong_merchant", f"mchid {data.get('mchid')!r:.40} is not ours", txn_id)
        if isinstance(event_type, str) and event_type.startswith("REFUND."):
            return self._refund(data, event_type, txn_id)
        if s.appid is not None and data.get("appid", data.get("sp_appid")) != s.appid:
            return Refusal("wrong_app", f"appid {data.get('appid')!r:.40} is not ours", txn_id)
        return self._transaction(data, envelope, txn_id)

    def _transaction(self, data: dict[str, object], envelope: dict[str, object],
                     txn_id: str | None) -> Outcome:
        state = data.get("trade_state")
        if not isinstance(state, str) or not state:
            return Refusal("bad_format", "transaction without trade_state", txn_id)
        if state != "SUCCESS":
            return Verified(payment=None, status=state)
        if txn_id is None:
            return Refusal("bad_format", "missing or over-long transaction_id")
        order_no = text_field(data, "out_trade_no", "transaction")
        if isinstance(order_no, Refusal):
            return Refusal(order_no.code, order_no.message, txn_id)
        amount_obj = data.get("amount")
        if not isinstance(amount_obj, dict):
            return Refusal("bad_format", "transaction without amount", txn_id)
        amount = positive_fen(amount_obj.get("total"), "amount.total")
        if isinstance(amount, Refusal):
            return Refusal(amount.code, amount.message, txn_id)
        currency = amount_obj.get("currency", "CNY")
        if currency != "CNY":
            return Refusal("bad_format", f"currency {currency!r:.20} is not CNY", txn_id)
        success = data.get("success_time")
        paid_at = rfc3339_time(success if isinstance(success, str) else "", "success_time")
        if isinstance(paid_at, Refusal):
            return Refusal(paid_at.code, paid_at.message, txn_id)
        extra: dict[str, str] = {}
        for key in ("appid", "mchid", "trade_type", "bank_type", "attach", "success_time"):
            value = data.get(key)
            if isinstance(value, str) and value:
                extra[key] = value[:128]
        payer_total = amount_obj.get("payer_total")
        if isinstance(payer_total, int) and not isinstance(payer_total, bool):
            extra["payer_total"] = str(payer_total)
        for key in ("id", "event_type", "create_time"):
            value = envelope.get(key)
            if isinstance(value, str) and value:
                extra[f"notify_{key}"] = value[:64]
        payment = ChannelPayment(channel=CHANNEL, transaction_id=txn_id, amount=amount, paid_at=paid_at,
                                 order_no=order_no, extra=extra)
        return Verified(payment=payment, status=state)

    def _refund(self, data: dict[str, object], event_type: str, txn_id: str | None) -> Outcome:
        status = data.get("refund_status")
        if not isinstance(status, str) or not status:
            return Refusal("bad_format", "refund without refund_status", txn_id)
        if status != "SUCCESS":
            return Verified(payment=None, status=f"REFUND.{status}")
        if txn_id is None:
            return Refusal("bad_format", "refund without transaction_id")
        refund_id = text_field(data, "refund_id", "refund")
        if isinstance(refund_id, Refusal):
            return Refusal(refund_id.code, refund_id.message, txn_id)
        amount_obj = data.get("amount")
        if not isinstance(amount_obj, dict):
            return Refusal("bad_format", "refund without amount", txn_id)
        amount = positive_fen(amount_obj.get("refund"), "amount.refund")
        if isinstance(amount, Refusal):
            return Refusal(amount.code, amount.message, txn_id)
        success = data.get("success_time")
        at = rfc3339_time(success if isinstance(success, str) else "", "success_time")
        if isinstance(at, Refusal):
            return Refusal(at.code, at.message, txn_id)
        order_no = data.get("out_trade_no")
        extra = {k: str(data[k])[:64] for k in ("out_refund_no", "refund_status")
                 if isinstance(data.get(k), str)}
        refund = ChannelRefund(channel=CHANNEL, transaction_id=txn_id, refund_id=refund_id, amount=amount,
                               refunded_at=at, order_no=order_no if isinstance(order_no, str) else None,
                               extra=extra)
        return RefundVerified(payment=None, status=event_type, refund=refund)
