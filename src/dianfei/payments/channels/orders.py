"""Payment orders as each channel wants them (支付下单参数): what ``dianfei pay order`` hands over.

We do not call the channels' order APIs ourselves (that needs the merchant private key, which
belongs to the cashier front end or a payment gateway). ``pay order`` creates the order row and
prints the fields the front end passes to the channel's SDK, in that channel's own units:
Alipay takes ``total_amount`` in yuan text, WeChat Pay ``amount.total`` in integer fen.

Order numbers (out_trade_no) are at most 32 characters of ``[0-9A-Za-z_-]`` so both channels
accept them (WeChat Pay: 6–32 characters; Alipay: up to 64).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from dianfei.core.clock import BUSINESS_TZ
from dianfei.core.errors import ValidationError
from dianfei.core.money import fmt_yuan

ORDER_CHANNELS = ("alipay", "wechatpay", "online")
#: how long an order may be paid (Alipay timeout_express / WeChat time_expire)
DEFAULT_ORDER_TTL = timedelta(hours=2)
_ORDER_NO = re.compile(r"[0-9A-Za-z_-]{6,32}")


def new_order_no(now: datetime, *, prefix: str = "DF") -> str:
    """A fresh order number: prefix + Beijing timestamp to the second + 12 random digits (28 chars)."""
    stamp = now.astimezone(BUSINESS_TZ).strftime("%Y%m%d%H%M%S")
    return f"{prefix}{stamp}{secrets.randbelow(10**12):012d}"


def check_order_no(order_no: str) -> str:
    if _ORDER_NO.fullmatch(order_no) is None:
        raise ValidationError(f"order number must be 6–32 characters of 0-9 A-Z a-z _ -, got {order_no!r}")
    return order_no


def channel_order_fields(channel: str, *, order_no: str, amount_fen: int, description: str,
                         expires_at: datetime, notify_url: str | None = None) -> dict[str, Any]:
    """The fields the cashier front end passes to the channel's order API, in the channel's units."""
    check_order_no(order_no)
    if amount_fen <= 0:
        raise ValidationError(f"order amount must be positive, got {amount_fen} fen")
    expire = expires_at.astimezone(BUSINESS_TZ)
    if channel == "alipay":
        fields: dict[str, Any] = {"out_trade_no": order_no, "total_amount": fmt_yuan(amount_fen),
                                  "subject": description[:256],
                                  "time_expire": expire.strftime("%Y-%m-%d %H:%M:%S")}
    elif channel == "wechatpay":
        fields = {"out_trade_no": order_no, "description": description[:127],
                  "amount": {"total": amount_fen, "currency": "CNY"},
                  "time_expire": expire.isoformat(timespec="seconds")}
    elif channel == "online":
        fields = {"order_no": order_no, "amount": amount_fen, "description": description,
                  "expires_at": expire.isoformat(timespec="seconds")}
    else:
        raise ValidationError(f"channel must be one of {ORDER_CHANNELS}, got {channel!r}")
    if notify_url:
        fields["notify_url"] = notify_url
    return fields
