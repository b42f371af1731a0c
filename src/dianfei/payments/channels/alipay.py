"""Alipay asynchronous notifications (支付宝异步通知): RSA2 check and parse.

When a customer pays an order, Alipay POSTs a form (``application/x-www-form-urlencoded``) to our
notify URL and retries (8 times over about 25 hours) until we answer ``success``. The form carries
every trade field plus ``sign`` and ``sign_type``. How the proof is checked (支付宝验签):

1. decode the form with its ``charset`` field (utf-8 by default; GBK and GB2312 occur);
2. drop ``sign`` and ``sign_type``, sort the remaining parameters by name, join them as
   ``k=v&k=v`` with the URL-DECODED values;
3. verify ``sign`` (base64) as SHA256withRSA, PKCS#1 v1.5, with the Alipay public key over that
   text encoded in the charset.

Alipay's own SDK skips parameters with an empty value in step 2, the popular ``python-alipay-sdk``
keeps them as ``k=``; its ``rsaCheckV2`` also keeps ``sign_type``. All these strings are signed only
by Alipay's private key, so accepting any of them is as safe as accepting one: we try the official
form first and the others only when it fails.

Then the fields: ``app_id`` must be ours when configured (``wrong_app``); TRADE_SUCCESS and
TRADE_FINISHED are payments (Alipay sends TRADE_FINISHED again for the same trade_no when the refund
period ends — the same transaction id, so it posts once); WAIT_BUYER_PAY and TRADE_CLOSED are
acknowledged, not posted. A notification carrying ``refund_fee`` reports a refund (退款通知).
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256

from dianfei.payments.channels.base import ChannelPayment, Outcome, Refusal, Verified, signed
from dianfei.payments.channels.common import ChannelRefund, RefundVerified, beijing_time, yuan_to_fen
from dianfei.payments.channels.config import AlipaySettings, not_configured

CHANNEL = "alipay"
PAID_STATUSES = ("TRADE_SUCCESS", "TRADE_FINISHED")
UNPAID_STATUSES = ("WAIT_BUYER_PAY", "TRADE_CLOSED")
#: charsets Alipay notifications use, and the Python codec that decodes each
_CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030"}
#: channel fields kept with the payment (no personal data: buyer_logon_id is left out)
_KEPT = ("notify_id", "notify_time", "notify_type", "app_id", "seller_id", "buyer_id", "receipt_amount",
         "buyer_pay_amount", "invoice_amount", "point_amount", "gmt_create", "trade_status", "charset")
_MAX_BODY = 64 * 1024
_CT_CHARSET = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9_-]+)", re.IGNORECASE)


def _charset_of(pairs: list[tuple[bytes, bytes]], content_type: str) -> str | Refusal:
    declared: str | None = None
    for k, v in pairs:
        if k == b"charset":
            declared = v.decode("ascii", "replace").strip().lower()
            break
    if declared is None:
        m = _CT_CHARSET.search(content_type or "")
        declared = m.group(1).lower() if m else "utf-8"
    codec = _CHARSETS.get(declared)
    if codec is None:
        return Refusal("bad_format", f"unsupported charset {declared[:20]!r}")
    return codec


def parse_form(body: bytes, content_type: str = "") -> tuple[dict[str, str], str] | Refusal:
    """The notification's parameters (URL-decoded, in its charset) and the codec used."""
    if len(body) > _MAX_BODY:
        return Refusal("bad_format", f"body of {len(body)} bytes exceeds {_MAX_BODY}")
    # latin-1 maps every byte to one character and back, so percent-escapes and raw bytes alike
    # come out as the original bytes, decoded below in the notification's own charset
    try:
        text_pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, strict_parsing=False,
                               encoding="latin-1", errors="strict", max_num_fields=200)
    except (ValueError, UnicodeError) as exc:
        return Refusal("bad_format", f"not a form body: {exc}")
    pairs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in text_pairs]
    codec = _charset_of(pairs, content_type)
    if isinstance(codec, Refusal):
        return codec
    params: dict[str, str] = {}
    for kb, vb in pairs:
        try:
            k, v = kb.decode(codec), vb.decode(codec)
        except UnicodeDecodeError:
            return Refusal("bad_format", f"a parameter is not valid {codec}")
        if k in params:
            # two values for one name: which one did Alipay sign? refuse rather than guess
            return Refusal("bad_format", f"parameter {k[:40]!r} appears more than once")
        params[k] = v
    if not params:
        return Refusal("bad_format", "empty notification")
    return params, codec


def canonical_strings(params: dict[str, str]) -> list[str]:
    """The texts Alipay may have signed, official form first (see the module docstring)."""
    out: list[str] = []
    for drop in (("sign", "sign_type"), ("sign",)):
        items = sorted((k, v) for k, v in params.items() if k not in drop)
        for skip_empty in (True, False):
            text = "&".join(f"{k}={v}" for k, v in items if v != "" or not skip_empty)
            if text not in out:
                out.append(text)
    return out


class AlipayNotifier:
    """Checks and parses Alipay notifications with the configured Alipay public key."""

    channel = CHANNEL

    def __init__(self, settings: AlipaySettings | None) -> None:
        self.settings = settings

    def _signature_ok(self, params: dict[str, str], codec: str) -> bool:
        assert self.settings is not None
        try:
            signature = base64.b64decode(params["sign"].replace(" ", "+"), validate=False)
        except (binascii.Error, ValueError):
            return False
        if not signature:
            return False
        key = self.settings.public_key
        codecs = [codec] if codec == "utf-8" else [codec, "utf-8"]
        for text in canonical_strings(params):
            for c in codecs:
                try:
                    message = text.encode(c)
                except UnicodeEncodeError:
                    continue
                try:
                    key.verify(signature, message, PKCS1v15(), SHA256())
                    return True
                except InvalidSignature:
                    continue
        return False

    def verify(self, body: bytes, content_type: str = "") -> Outcome:
        """Check one notification as POSTed (raw body and its Content-Type) → Verified or Refusal."""
        if self.settings is None:
            return not_configured(CHANNEL)
        parsed = parse_form(body, content_type)
        if isinstance(parsed, Refusal):
            return parsed
        params, codec = parsed
        txn = params.get("trade_no") or None
        if txn is not None and len(txn) > 64:
            txn = None
        sign_type = params.get("sign_type")
        if not params.get("sign") or sign_type is None:
            return Refusal("bad_signature", "no sign or sign_type parameter", txn)
        if sign_type != "RSA2":
            return Refusal("bad_signature", f"sign_type must be RSA2, got {sign_type[:20]!r}", txn)
        if not self._signature_ok(params, codec):
            return Refusal("bad_signature", "RSA2 signature does not verify with the Alipay public key", txn)
        app_id = self.settings.app_id
        if app_id is not None and params.get("app_id") != app_id:
            return Refusal("wrong_app", f"app_id {params.get('app_id', '')[:40]!r} is not ours", txn,
                           signed=True)
        seller_id = self.settings.seller_id
        if seller_id is not None and params.get("seller_id") != seller_id:
            # signed for another merchant under the same Alipay key (a service provider's apps)
            return Refusal("wrong_merchant", f"seller_id {params.get('seller_id', '')[:40]!r} is not ours",
                           txn, signed=True)
        return signed(self._parse(params, txn))

    def _parse(self, params: dict[str, str], txn: str | None) -> Outcome:
        status = params.get("trade_status", "")
        if txn is None:
            return Refusal("bad_format", "missing or over-long trade_no")
        order_no = params.get("out_trade_no", "")
        if not order_no or len(order_no) > 64:
            return Refusal("bad_format", "missing or over-long out_trade_no", txn)
        if "refund_fee" in params or "out_biz_no" in params:
            return self._refund(params, txn, order_no, status)
        if status in UNPAID_STATUSES:
            return Verified(payment=None, status=status)
        if status not in PAID_STATUSES:
            return Refusal("bad_format", f"unknown trade_status {status[:30]!r}", txn)
        amount = yuan_to_fen(params.get("total_amount", ""), "total_amount")
        if isinstance(amount, Refusal):
            return Refusal(amount.code, amount.message, txn)
        if amount <= 0:
            return Refusal("bad_format", "total_amount must be positive", txn)
        paid_at = beijing_time(params.get("gmt_payment", ""), "gmt_payment")
        if isinstance(paid_at, Refusal):
            return Refusal(paid_at.code, paid_at.message, txn)
        extra = {k: params[k] for k in _KEPT if k in params}
        payment = ChannelPayment(channel=CHANNEL, transaction_id=txn, amount=amount, paid_at=paid_at,
                                 order_no=order_no, extra=extra)
        return Verified(payment=payment, status=status)

    def _refund(self, params: dict[str, str], txn: str, order_no: str, status: str) -> Outcome:
        refund_id = params.get("out_biz_no", "")
        if not refund_id or len(refund_id) > 64:
            return Refusal("bad_format", "refund notification without out_biz_no", txn)
        amount = yuan_to_fen(params.get("refund_fee", ""), "refund_fee")
        if isinstance(amount, Refusal):
            return Refusal(amount.code, amount.message, txn)
        if amount <= 0:
            return Refusal("bad_format", "refund_fee must be positive", txn)
        at = beijing_time(params.get("gmt_refund", ""), "gmt_refund")
        if isinstance(at, Refusal):
            return Refusal(at.code, at.message, txn)
        extra = {k: params[k] for k in _KEPT if k in params}
        refund = ChannelRefund(channel=CHANNEL, transaction_id=txn, refund_id=refund_id, amount=amount,
                               refunded_at=at, order_no=order_no, cumulative=True, extra=extra)
        return RefundVerified(payment=None, status=status or "REFUND", refund=refund)
