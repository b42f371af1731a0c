"""What the Alipay, WeChat Pay and online adapters share: strict field parsers and the refund notice.

Every parser here returns a value or a :class:`Refusal` — never raises on what a channel (or an
attacker) sent — so an adapter's ``verify`` answers every input with an ``Outcome``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from dianfei.core.clock import BUSINESS_TZ
from dianfei.payments.channels.base import Refusal, Verified

#: yuan with at most two decimals, no sign, no exponent, no spaces ("0.01", "123", "45.6")
_YUAN = re.compile(r"(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?")
_BEIJING = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?")
#: RFC 3339 with a mandatory offset (WeChat Pay success_time "2024-03-01T10:34:56+08:00")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})")


@dataclass(frozen=True)
class ChannelRefund:
    """A refund (退款) the channel reports as done; reverses what the payment was allocated to."""

    channel: str
    #: the channel's id of the PAYMENT refunded (Alipay trade_no, WeChat transaction_id)
    transaction_id: str
    #: the channel's id of this refund (Alipay out_biz_no, WeChat refund_id); unique per refund
    refund_id: str
    #: fen refunded. Alipay: the TOTAL refunded on the trade so far (refund_fee); WeChat: this refund
    amount: int
    refunded_at: datetime
    order_no: str | None = None
    #: True when ``amount`` is cumulative over the trade (Alipay) rather than this refund (WeChat)
    cumulative: bool = False
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundVerified(Verified):
    """A verified refund notification: acknowledged (``payment`` is None), carries the refund."""

    refund: ChannelRefund | None = None


def yuan_to_fen(text: str, what: str) -> int | Refusal:
    """Alipay's yuan amount text ("123.45") → fen, exactly; refuses signs, 3+ places and junk."""
    m = _YUAN.fullmatch(text)
    if m is None:
        return Refusal("bad_format", f"{what}: not a yuan amount with at most two places: {text[:40]!r}")
    whole, part = m.group(1), (m.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(part)


def beijing_time(text: str, what: str) -> datetime | Refusal:
    """Alipay's "YYYY-MM-DD HH:MM:SS[.fff]" in Beijing time → an aware instant."""
    m = _BEIJING.fullmatch(text)
    if m is None:
        return Refusal("bad_format", f"{what}: expected 'YYYY-MM-DD HH:MM:SS', got {text[:40]!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "0").ljust(6, "0"))
    try:
        return datetime(y, mo, d, h, mi, s, micro, tzinfo=BUSINESS_TZ)
    except ValueError:
        return Refusal("bad_format", f"{what}: not a valid date and time: {text[:40]!r}")


def rfc3339_time(text: str, what: str) -> datetime | Refusal:
    """RFC 3339 with an offset → an aware instant (a time without an offset is refused)."""
    if _RFC3339.fullmatch(text) is None:
        return Refusal("bad_format", f"{what}: expected RFC 3339 with an offset, got {text[:40]!r}")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return Refusal("bad_format", f"{what}: not a valid date and time: {text[:40]!r}")
    if value.tzinfo is None:  # pragma: no cover - the pattern requires an offset
        return Refusal("bad_format", f"{what}: no offset in {text[:40]!r}")
    return value


def positive_fen(value: object, what: str) -> int | Refusal:
    """An integer fen amount from JSON (an int, never a bool, float or string), > 0."""
    if isinstance(value, bool) or not isinstance(value, int):
        return Refusal("bad_format", f"{what}: expected an integer amount in fen, got {value!r:.40}")
    if value <= 0:
        return Refusal("bad_format", f"{what}: amount must be positive, got {value}")
    if value >= 10**14:
        return Refusal("bad_format", f"{what}: amount out of range: {value}")
    return value


def text_field(data: dict[str, object], key: str, what: str, *, max_len: int = 64) -> str | Refusal:
    """A required, non-empty string field of a JSON object, bounded in length."""
    value = data.get(key)
    if not isinstance(value, str) or value == "":
        return Refusal("bad_format", f"{what}: missing or empty field {key!r}")
    if len(value) > max_len:
        return Refusal("bad_format", f"{what}: field {key!r} longer than {max_len} characters")
    return value
