"""The counter: a shift, payments with receipts, a re-posted receipt, the till close."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.core.errors import ConflictError, ValidationError
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments.counter import close_shift, open_shift, take_payment
from tests.factories import Person, load_people, scalar

CLOCK = FixedClock(datetime(2026, 3, 10, 10, 0, tzinfo=BUSINESS_TZ))


def test_shift_takes_payments_and_the_till_close_finds_the_shortfall(db: Database) -> None:
    load_people(db, [Person("C1")])
    with db.session() as s:
        ledger.post_entry(s, clock=CLOCK, account_id="C1", customer_id="C1", kind="bill",
                          amount=8070, reference="C1-202602-1", due_on=date(2026, 3, 18))
    with db.session() as s:
        shift = open_shift(s, cashier="王芳", opening_float=50000, clock=CLOCK)
        r1, p1 = take_payment(s, shift_id=shift, account_id="C1", amount=5000, method="cash",
                              tendered=10000, clock=CLOCK)
        r2, p2 = take_payment(s, shift_id=shift, account_id="C1", amount=3070, method="card",
                              clock=CLOCK)
        again, p3 = take_payment(s, shift_id=shift, account_id="C1", amount=3070, method="card",
                                 receipt_no=r2, clock=CLOCK)
        with pytest.raises(ValidationError, match="less than"):
            take_payment(s, shift_id=shift, account_id="C1", amount=100, method="cash",
                         tendered=50, clock=CLOCK)
    assert (r1, r2) == (f"{shift}-00001", f"{shift}-00002")
    assert (p1.balance_after, p2.balance_after, p3.created, again) == (3070, 0, False, r2)
    with db.session() as s:
        till = close_shift(s, shift_id=shift, counted_cash=54900, clock=CLOCK)
    assert (till.receipts, till.cash_taken, till.card_taken) == (2, 5000, 3070)
    assert (till.expected_cash, till.difference) == (55000, -100)
    with pytest.raises(ConflictError, match="closed"), db.session() as s:
        take_payment(s, shift_id=shift, account_id="C1", amount=100, method="cash", clock=CLOCK)
    assert scalar(db.engine, "SELECT count(*) FROM payments WHERE channel = 'counter'") == 2
