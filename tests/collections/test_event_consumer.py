"""Collections follows payments through the event outbox: a payment whose transaction commits
after a later one (ids out of commit order, as PostgreSQL allows) is still seen, exactly once."""

from __future__ import annotations

import threading
from datetime import date, datetime

import pytest
from sqlalchemy import text

from dianfei.collections.service import events_json, run_day
from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.db.engine import Database
from dianfei.events import service as events
from dianfei.ledger import service as ledger
from dianfei.payments import service as payments
from dianfei.payments.channels.base import ChannelPayment
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.conftest import backend
from tests.factories import Person, load_people

POSTED = FixedClock(datetime(2026, 2, 1, 8, 0, tzinfo=BUSINESS_TZ))


def _pay(account: str, txn: str, fen: int) -> ChannelPayment:
    return ChannelPayment(channel="counter", transaction_id=txn, amount=fen,
                          paid_at=datetime(2026, 2, 1, 7, 0, tzinfo=BUSINESS_TZ), order_no=None,
                          account_id=account)


def _setup(db: Database) -> None:
    load_people(db, [Person("A"), Person("B")])
    with db.session() as s:
        for cid in ("A", "B"):
            ledger.post_entry(s, clock=POSTED, account_id=cid, customer_id=cid, kind="bill",
                              amount=10_000, reference=f"{cid}-202512-1", due_on=date(2026, 1, 18))


def _received(db: Database) -> list[tuple[str, str]]:
    return sorted((e["account"], e["balance_after"]) for e in events_json(db)
                  if e["type"] == "payment_received")


def _run(db: Database, day: date) -> None:
    run_day(db, day, clock=FixedClock(datetime(day.year, day.month, day.day, 9, 0,
                                               tzinfo=BUSINESS_TZ)),
            switch=FakeSwitch(), notifier=FakeNotifier())


@pytest.mark.skipif(backend() != "postgresql",
                    reason="SQLite serialises writers: transactions cannot commit out of order")
def test_a_payment_committed_after_a_later_one_is_not_skipped(db: Database) -> None:
    _setup(db)
    first_in = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def slow_payment() -> None:
        # the event as the posting core writes it, published by a transaction that commits
        # late. (A real posting can no longer commit after a later one: every posting takes the
        # audit chain's head row last and holds it to its commit, so postings queue. Events are
        # still the consumers' only feed, and any writer's transaction may commit late.)
        try:
            with db.engine.begin() as conn:
                events.publish(conn, [{
                    "type": "payment_posted", "key": "payment_posted:T-A", "account_id": "A",
                    "customer_id": "A", "occurred_at": POSTED.now(),
                    "business_date": date(2026, 2, 1), "amount": 10_000, "balance_after": 0,
                    "payload": {"payment_id": "counter-T-A"}}])
                first_in.set()  # its event row (the lower id) is written, not committed
                release.wait(30)
        except BaseException as exc:  # pragma: no cover - surfaced below
            errors.append(exc)
            first_in.set()

    t = threading.Thread(target=slow_payment)
    t.start()
    assert first_in.wait(30)
    with db.session() as s:  # a later id, committed first
        payments.post_channel_payment(s, _pay("B", "T-B", 4_000), clock=POSTED, source="test")
    with db.engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT account_id, event_id FROM events")).all())
    assert ids == {"B": ids["B"]}  # A's event is not visible yet
    _run(db, date(2026, 2, 1))
    assert _received(db) == [("B", "60.00")]

    release.set()
    t.join(30)
    assert not errors
    with db.engine.connect() as conn:
        a_id = conn.execute(text("SELECT event_id FROM events WHERE account_id = 'A'")).scalar_one()
    assert a_id < ids["B"]  # the late committer has the LOWER id: a high-water mark skips it
    _run(db, date(2026, 2, 2))
    # A paid the bill, but the fee the 1 February run accrued on it (1.40) is still owed
    assert _received(db) == [("A", "1.40"), ("B", "60.00")]
    _run(db, date(2026, 2, 3))  # a rerun handles nothing twice
    assert _received(db) == [("A", "1.40"), ("B", "60.00")]
    with db.engine.connect() as conn:
        assert events.pending_count(conn, "collections") == 0


def test_each_payment_event_is_handled_once_across_runs_and_reruns(db: Database) -> None:
    _setup(db)
    with db.session() as s:
        payments.post_channel_payment(s, _pay("A", "T1", 3_000), clock=POSTED, source="test")
        payments.post_channel_payment(s, _pay("A", "T1", 3_000), clock=POSTED, source="test")
    _run(db, date(2026, 2, 1))
    _run(db, date(2026, 2, 1))  # the same day again
    with db.session() as s:
        payments.post_channel_payment(s, _pay("A", "T2", 7_000), clock=POSTED, source="test")
    _run(db, date(2026, 2, 2))
    # 100.00 − 30.00 = 70.00; a day's late fee (1.40) accrued before the 70.00 was paid
    assert _received(db) == [("A", "1.40"), ("A", "70.00")]
    with db.engine.connect() as conn:
        assert events.pending_count(conn, "collections") == 0
        assert conn.execute(text("SELECT count(*) FROM events WHERE type = 'payment_posted'")
                            ).scalar_one() == 2
