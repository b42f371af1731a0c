"""What the counter page shows of a cashier's shift (营业厅柜台): the open shift, the next
receipt number, the receipts taken and the takings by method. Read only: payments are posted
and tills closed by :mod:`dianfei.payments.counter` alone."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dianfei.core.clock import BUSINESS_TZ
from dianfei.payments.models import CashierShift, CounterReceipt, Payment


def _shift(s: CashierShift) -> dict[str, Any]:
    return {"shift_id": s.shift_id, "cashier": s.cashier, "status": s.status,
            "opened_at": s.opened_at.astimezone(BUSINESS_TZ).isoformat(timespec="seconds"),
            "closed_at": (s.closed_at.astimezone(BUSINESS_TZ).isoformat(timespec="seconds")
                          if s.closed_at else None),
            "opening_float": s.opening_float, "counted_cash": s.counted_cash,
            "expected_cash": s.expected_cash, "difference": s.difference}


def open_shift_of(session: Session, cashier: str) -> dict[str, Any] | None:
    """The cashier's open shift (the newest, should there be several), or None."""
    s = session.scalars(select(CashierShift).where(CashierShift.cashier == cashier,
                                                   CashierShift.status == "open")
                        .order_by(CashierShift.opened_at.desc()).limit(1)).first()
    return _shift(s) if s else None


def shift(session: Session, shift_id: str) -> dict[str, Any] | None:
    s = session.get(CashierShift, shift_id)
    return _shift(s) if s else None


def next_receipt_no(session: Session, shift_id: str) -> str:
    """The number the next payment of the shift will get: the form carries it, so the same form
    posted twice (a double click, a resent request) is the same payment."""
    n = session.execute(select(func.count()).select_from(CounterReceipt).where(
        CounterReceipt.shift_id == shift_id)).scalar_one()
    return f"{shift_id}-{n + 1:05d}"


def takings(session: Session, shift_id: str) -> dict[str, dict[str, int]]:
    """Receipts and fen taken per method (cash, card) in the shift."""
    rows = session.execute(select(CounterReceipt.method, func.count(),
                                  func.sum(CounterReceipt.amount))
                           .where(CounterReceipt.shift_id == shift_id)
                           .group_by(CounterReceipt.method)).all()
    return {str(m): {"count": int(c), "amount": int(a or 0)} for m, c, a in rows}


def _receipt_query() -> Any:
    return (select(CounterReceipt.receipt_no, CounterReceipt.shift_id, CounterReceipt.method,
                   CounterReceipt.amount, CounterReceipt.tendered, CounterReceipt.change,
                   CounterReceipt.payment_id, Payment.account_id, Payment.paid_at,
                   CashierShift.cashier)
            .join(Payment, Payment.payment_id == CounterReceipt.payment_id)
            .join(CashierShift, CashierShift.shift_id == CounterReceipt.shift_id))


def _receipt_row(r: Any) -> dict[str, Any]:
    return {"receipt_no": r.receipt_no, "shift_id": r.shift_id, "method": r.method,
            "amount": int(r.amount), "tendered": r.tendered, "change": r.change,
            "payment_id": r.payment_id, "account_id": r.account_id, "cashier": r.cashier,
            "paid_at": r.paid_at.astimezone(BUSINESS_TZ).isoformat(timespec="seconds")}


def receipts(session: Session, shift_id: str, offset: int, limit: int
             ) -> tuple[list[dict[str, Any]], int]:
    """One page of the shift's receipts, newest first, and how many there are."""
    total = session.execute(select(func.count()).select_from(CounterReceipt).where(
        CounterReceipt.shift_id == shift_id)).scalar_one()
    rows = session.execute(_receipt_query().where(CounterReceipt.shift_id == shift_id)
                           .order_by(CounterReceipt.receipt_no.desc())
                           .offset(offset).limit(limit)).all()
    return [_receipt_row(r) for r in rows], int(total)


def receipt(session: Session, receipt_no: str) -> dict[str, Any] | None:
    r = session.execute(_receipt_query().where(CounterReceipt.receipt_no == receipt_no)).first()
    return _receipt_row(r) if r else None
