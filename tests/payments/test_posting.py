"""Posting exactly once, allocation to bills and late fees, credit, refunds — on a real database."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import text

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import inbox, service
from dianfei.payments.channels.base import ChannelPayment, Refusal, Verified
from tests.factories import Person, load_people, scalar

CLOCK = FixedClock(datetime(2026, 3, 10, 10, 0, tzinfo=BUSINESS_TZ))


def debit(db: Database, account: str, kind: str, reference: str, fen: int, due: date) -> None:
    with db.session() as s:
        ledger.post_entry(s, clock=CLOCK, account_id=account, customer_id=account, kind=kind,
                          amount=fen, reference=reference, due_on=due)


def pay(account: str | None, txn: str, fen: int, *, channel: str = "counter",
        order_no: str | None = None) -> ChannelPayment:
    return ChannelPayment(channel=channel, transaction_id=txn, amount=fen,
                          paid_at=datetime(2026, 3, 10, 9, 30, tzinfo=BUSINESS_TZ),
                          order_no=order_no, account_id=account)


def allocations(db: Database) -> list[tuple[str, str | None, int]]:
    with db.engine.connect() as conn:
        return [(r[0], r[1], int(r[2])) for r in conn.execute(text(
            "SELECT allocated_to, item_reference, SUM(amount) FROM payment_allocations "
            "GROUP BY allocated_to, item_reference HAVING SUM(amount) <> 0 "
            "ORDER BY allocated_to, item_reference"))]


@pytest.fixture
def two_bills(db: Database) -> Database:
    load_people(db, [Person("C1"), Person("C2")])
    debit(db, "C1", "bill", "C1-202601-1", 8000, date(2026, 2, 18))
    debit(db, "C1", "late_fee", "LF:C1-202601-1:2026-02-20", 120, date(2026, 2, 20))
    debit(db, "C1", "bill", "C1-202602-1", 5000, date(2026, 3, 18))
    return db


def test_partial_payment_settles_the_oldest_bill_first_and_posts_one_ledger_entry(
        two_bills: Database) -> None:
    db = two_bills
    with db.session() as s:
        res = service.post_channel_payment(s, pay("C1", "T1", 9000), clock=CLOCK, source="counter")
    assert res.created and res.balance_after == 8000 + 120 + 5000 - 9000
    assert allocations(db) == [("bill", "C1-202601-1", 8000), ("bill", "C1-202602-1", 880),
                               ("late_fee", "LF:C1-202601-1:2026-02-20", 120)]
    assert scalar(db.engine, "SELECT count(*) FROM ledger_entries WHERE kind = 'payment'") == 1
    with db.engine.connect() as conn:
        assert service.check(conn) == []


def test_the_same_transaction_twice_posts_once(two_bills: Database) -> None:
    db = two_bills
    with db.session() as s:
        first = service.post_channel_payment(s, pay("C1", "T1", 3000), clock=CLOCK, source="x")
    with db.session() as s:
        second = service.post_channel_payment(s, pay("C1", "T1", 3000), clock=CLOCK, source="x")
    assert (first.created, second.created, first.payment_id) == (True, False, second.payment_id)
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 1
    assert scalar(db.engine, "SELECT sum(amount) FROM payment_allocations") == 3000
    assert ledger.balance(db.engine.connect(), "C1") == 13120 - 3000


def test_a_replay_with_another_amount_is_refused_and_changes_nothing(two_bills: Database) -> None:
    db = two_bills
    with db.session() as s:
        service.post_channel_payment(s, pay("C1", "T1", 3000), clock=CLOCK, source="x")
    with pytest.raises(service.PaymentRefused) as err, db.session() as s:
        service.post_channel_payment(s, pay("C1", "T1", 9999), clock=CLOCK, source="x")
    assert err.value.code == "conflicting_duplicate"
    assert scalar(db.engine, "SELECT sum(amount) FROM payment_allocations") == 3000


def test_overpayment_becomes_credit_used_by_the_next_bill(two_bills: Database) -> None:
    db = two_bills
    with db.session() as s:
        service.post_channel_payment(s, pay("C1", "T1", 20000), clock=CLOCK, source="x")
    assert ("credit", None, 20000 - 13120) in allocations(db)
    # the credit clears the new bill in the bill's own posting: no separate settlement step
    debit(db, "C1", "bill", "C1-202603-1", 4000, date(2026, 4, 18))
    got = allocations(db)
    assert ("bill", "C1-202603-1", 4000) in got and ("credit", None, 20000 - 13120 - 4000) in got
    with db.engine.connect() as conn:
        assert service.check(conn) == []
        assert service.open_items(conn).height == 0


def test_refund_reverses_exactly_what_was_allocated(two_bills: Database) -> None:
    db = two_bills
    with db.session() as s:
        res = service.post_channel_payment(s, pay("C1", "T1", 20000), clock=CLOCK, source="x")
    with db.session() as s:
        service.reverse_payment(s, res.payment_id, reason="customer refund", clock=CLOCK)
    assert allocations(db) == []
    with db.engine.connect() as conn:
        assert ledger.balance(conn, "C1") == 13120
        assert service.open_items(conn)["open_amount"].sum() == 13120
        assert service.check(conn) == []
    with pytest.raises(Exception, match="already refunded"), db.session() as s:
        service.reverse_payment(s, res.payment_id, reason="again", clock=CLOCK)


def test_money_on_a_cancelled_bill_goes_back_to_credit(two_bills: Database) -> None:
    db = two_bills
    with db.session() as s:
        service.post_channel_payment(s, pay("C1", "T1", 8000), clock=CLOCK, source="x")
        entry = s.execute(text("SELECT entry_id FROM ledger_entries WHERE reference = "
                               "'C1-202601-1'")).scalar_one()
        ledger.reverse_entry(s, clock=CLOCK, entry_id=entry, reason="wrong read")
    # 8000 released from the cancelled bill, then applied to the open late fee and February bill
    assert allocations(db) == [("bill", "C1-202602-1", 5000),
                               ("credit", None, 8000 - 5000 - 120),
                               ("late_fee", "LF:C1-202601-1:2026-02-20", 120)]
    with db.engine.connect() as conn:
        assert service.check(conn) == []


def test_order_checks_refuse_wrong_amount_unknown_order_and_closed_order(two_bills: Database) -> None:
    db = two_bills
    with db.session() as s:
        order = service.create_order(s, account_id="C1", amount=13120, channel="alipay", clock=CLOCK)
        order_no = order.order_no
    cases = [(pay(None, "A1", 100, channel="alipay", order_no=order_no), "amount_mismatch"),
             (pay(None, "A2", 13120, channel="alipay", order_no="NOPE"), "unknown_order"),
             (pay("C2", "A3", 13120, channel="alipay", order_no=order_no), "account_mismatch"),
             (pay(None, "A4", 13120, channel="wechatpay", order_no=order_no), "wrong_channel")]
    for p, code in cases:
        with pytest.raises(service.PaymentRefused) as err, db.session() as s:
            service.post_channel_payment(s, p, clock=CLOCK, source="callback")
        assert err.value.code == code
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 0
    with db.session() as s:
        res = service.post_channel_payment(s, pay(None, "A5", 13120, channel="alipay",
                                                  order_no=order_no), clock=CLOCK, source="cb")
    assert res.balance_after == 0
    with pytest.raises(service.PaymentRefused) as err, db.session() as s:
        service.post_channel_payment(s, pay(None, "A6", 13120, channel="alipay",
                                            order_no=order_no), clock=CLOCK, source="cb")
    assert err.value.code == "order_already_paid"


def test_a_forged_notification_never_blocks_the_genuine_one(two_bills: Database) -> None:
    db = two_bills
    forged = inbox.receive(db, channel="counter", headers={}, body=b"forged", clock=CLOCK,
                           verify=lambda: Refusal("bad_signature", "signature does not verify", "T9"))
    genuine = inbox.receive(db, channel="counter", headers={}, body=b"genuine", clock=CLOCK,
                            verify=lambda: Verified(pay("C1", "T9", 500), "TRADE_SUCCESS"))
    again = inbox.receive(db, channel="counter", headers={}, body=b"genuine", clock=CLOCK,
                          verify=lambda: Verified(pay("C1", "T9", 500), "TRADE_SUCCESS"))
    assert (forged.verdict, forged.code) == ("refused", "bad_signature")
    assert (genuine.verdict, again.verdict) == ("posted", "duplicate")
    assert scalar(db.engine, "SELECT count(*) FROM payment_inbox") == 3
    assert scalar(db.engine, "SELECT count(*) FROM payments") == 1
    assert [m.refusal for m in inbox.worklist(db)] == ["bad_signature"]


def test_bulk_posting_matches_one_at_a_time(two_bills: Database) -> None:
    import polars as pl

    db = two_bills
    frame = pl.DataFrame({"channel": ["bank", "bank"], "transaction_id": ["B-1", "B-2"],
                          "account_id": ["C1", "C1"], "amount": [9000, 6000],
                          "paid_at": [datetime(2026, 3, 1), datetime(2026, 3, 2)]})
    with db.engine.begin() as conn:
        assert service.post_payments_frame(conn, frame, clock=CLOCK, source="bank_file") == 2
    with db.engine.begin() as conn:  # re-import: nothing new
        assert service.post_payments_frame(conn, frame, clock=CLOCK, source="bank_file") == 0
    assert allocations(db) == [("bill", "C1-202601-1", 8000), ("bill", "C1-202602-1", 5000),
                               ("credit", None, 15000 - 13120),
                               ("late_fee", "LF:C1-202601-1:2026-02-20", 120)]
    with db.engine.connect() as conn:
        assert service.check(conn) == []
