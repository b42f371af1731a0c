"""The service-hall counter (营业厅柜台收费): cashier shifts, receipts, and the till close.

A shift opens with a float; every payment taken gets a receipt number ``{shift}-{n}`` which is
the payment's transaction id, so a receipt posted twice (a double click, a retried request) is
the same payment. At close the cashier counts the till; the difference from float + cash taken
is recorded (长款/短款) and the shift takes no more payments.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dianfei.core.clock import Clock, business_date
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.payments.channels.base import ChannelPayment
from dianfei.payments.models import CashierShift, CounterReceipt
from dianfei.payments.service import PostResult, post_channel_payment

METHODS = ("cash", "card")


@dataclass(frozen=True)
class TillClose:
    shift_id: str
    receipts: int
    cash_taken: int
    card_taken: int
    expected_cash: int
    counted_cash: int
    difference: int


def open_shift(session: Session, *, cashier: str, opening_float: int, clock: Clock) -> str:
    if not cashier.strip():
        raise ValidationError("a shift needs a cashier")
    if opening_float < 0:
        raise ValidationError("the opening float cannot be negative")
    now = clock.now()
    n = session.execute(select(func.count()).select_from(CashierShift).where(
        CashierShift.cashier == cashier)).scalar_one()
    shift_id = f"{cashier}-{business_date(now):%Y%m%d}-{n + 1}"
    session.add(CashierShift(shift_id=shift_id, cashier=cashier, opened_at=now,
                             opening_float=opening_float, status="open"))
    session.flush()
    return shift_id


def _open(session: Session, shift_id: str) -> CashierShift:
    shift = session.execute(select(CashierShift).where(CashierShift.shift_id == shift_id)
                            .with_for_update()).scalar_one_or_none()
    if shift is None:
        raise NotFoundError(f"no cashier shift {shift_id}")
    if shift.status != "open":
        raise ConflictError(f"shift {shift_id} is closed")
    return shift


def take_payment(session: Session, *, shift_id: str, account_id: str, amount: int, method: str,
                 clock: Clock, tendered: int | None = None, receipt_no: str | None = None,
                 order: str | None = None) -> tuple[str, PostResult]:
    """Post a counter payment; returns (receipt number, post result). Giving the same
    ``receipt_no`` again posts nothing new."""
    if method not in METHODS:
        raise ValidationError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if amount <= 0:
        raise ValidationError("the amount must be positive")
    change = None
    if method == "cash":
        tendered = amount if tendered is None else tendered
        if tendered < amount:
            raise ValidationError(f"tendered {tendered} fen is less than the amount {amount} fen")
        change = tendered - amount
    _open(session, shift_id)
    if receipt_no is None:
        n = session.execute(select(func.count()).select_from(CounterReceipt).where(
            CounterReceipt.shift_id == shift_id)).scalar_one()
        receipt_no = f"{shift_id}-{n + 1:05d}"
    elif not receipt_no.startswith(f"{shift_id}-"):
        raise ValidationError(f"receipt {receipt_no} does not belong to shift {shift_id}")
    res = post_channel_payment(session, ChannelPayment(
        channel="counter", transaction_id=receipt_no, amount=amount, paid_at=clock.now(),
        account_id=account_id, extra={"method": method}), clock=clock, source="counter",
        order=order)
    if res.created:
        session.add(CounterReceipt(receipt_no=receipt_no, shift_id=shift_id,
                                   payment_id=res.payment_id, method=method, amount=amount,
                                   tendered=tendered if method == "cash" else None, change=change))
        session.flush()
    return receipt_no, res


def close_shift(session: Session, *, shift_id: str, counted_cash: int, clock: Clock) -> TillClose:
    shift = _open(session, shift_id)
    rows = session.execute(select(CounterReceipt.method, func.count(), func.sum(CounterReceipt.amount))
                           .where(CounterReceipt.shift_id == shift_id)
                           .group_by(CounterReceipt.method)).all()
    taken = {str(m): (int(c), int(s or 0)) for m, c, s in rows}
    cash = taken.get("cash", (0, 0))[1]
    expected = shift.opening_float + cash
    shift.status, shift.closed_at = "closed", clock.now()
    shift.counted_cash, shift.expected_cash = counted_cash, expected
    shift.difference = counted_cash - expected
    session.flush()
    return TillClose(shift_id, sum(c for c, _ in taken.values()), cash,
                     taken.get("card", (0, 0))[1], expected, counted_cash, counted_cash - expected)
