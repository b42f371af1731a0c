"""What `pay order` hands to each channel, in the channel's own units."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dianfei.core.errors import ValidationError
from dianfei.payments.channels.orders import channel_order_fields, check_order_no, new_order_no

NOW = datetime(2024, 3, 1, 2, 35, 0, tzinfo=UTC)


def test_order_numbers_suit_both_channels() -> None:
    no = new_order_no(NOW)
    assert no.startswith("DF20240301103500") and len(no) == 28 and check_order_no(no) == no
    assert new_order_no(NOW) != no


def test_fields_in_each_channels_units() -> None:
    expires = datetime(2024, 3, 1, 4, 35, 0, tzinfo=UTC)
    ali = channel_order_fields(
        "alipay", order_no="DF0001", amount_fen=12345, description="电费", expires_at=expires
    )
    assert ali == {
        "out_trade_no": "DF0001",
        "total_amount": "123.45",
        "subject": "电费",
        "time_expire": "2024-03-01 12:35:00",
    }
    wx = channel_order_fields(
        "wechatpay", order_no="DF0001", amount_fen=12345, description="电费", expires_at=expires
    )
    assert (
        wx["amount"] == {"total": 12345, "currency": "CNY"}
        and wx["time_expire"] == "2024-03-01T12:35:00+08:00"
    )


@pytest.mark.parametrize(
    ("channel", "order_no", "amount"),
    [("cash", "DF0001", 1), ("alipay", "DF 01", 1), ("alipay", "DF0001", 0), ("alipay", "x" * 33, 1)],
)
def test_bad_orders_are_refused(channel: str, order_no: str, amount: int) -> None:
    with pytest.raises(ValidationError):
        channel_order_fields(channel, order_no=order_no, amount_fen=amount, description="d", expires_at=NOW)
