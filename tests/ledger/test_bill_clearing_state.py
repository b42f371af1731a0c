"""Each bill's open item keeps its clearing state (migration 0037: ``cleared``,
``last_cleared_at``, ``paid_in_full_at``) in the posting's own transaction, on every path —
equal to what its clearings derive even when a payment dated earlier is posted later, after a
refund, and when the bill run applies credit — and its bill's period (migration 0041:
``period``, by which the KPIs find a period's items); ``dianfei kpi`` reads them (db marker:
SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import text
from tests.factories import Person, Reads, load_people, month_end
from tests.ledger.test_credit_paths import JAN, OPEN, issue_clock, pay, sound

from dianfei.billing.service import run_bill_run
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import service as payments

BILL = "C1-202601-1"  # 100 kWh: 53.80 yuan


def kept(db: Database) -> tuple[int, datetime | None, datetime | None]:
    with db.engine.connect() as conn:
        row = conn.execute(text(
            "SELECT cleared, last_cleared_at, paid_in_full_at FROM open_items "
            "WHERE reference = :r"), {"r": BILL}).one()

    def utc(v: object) -> datetime | None:
        if v is None:
            return None
        at = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
        return at.replace(tzinfo=UTC)

    return int(row[0]), utc(row[1]), utc(row[2])


def at(day: date) -> datetime:  # pay() pays at 10:00 Shanghai time
    return datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)


def sums_at(db: Database, day: date) -> tuple[int, list[dict]]:
    s, days = payments.bill_state_sums(db.engine, "2026-01", day, [0], by_days=True)
    return int(s["paid"][0]), days.to_dicts()


def test_the_kept_state_follows_the_clearings_in_their_own_order(db: Database) -> None:
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 0).add("C1", month_end(JAN), 100_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))  # issued 3 Feb
    assert kept(db) == (0, None, None)
    # 30.00 paid on 10 Feb, then the rest (23.80) paid on 5 Feb but posted afterwards: in the
    # clearings' order the bill reached its amount on 10 Feb, not with the later posting
    pay(db, "C1", "T1", 3000, date(2026, 2, 10))
    assert kept(db) == (3000, at(date(2026, 2, 10)), None)
    pay(db, "C1", "T2", 2380, date(2026, 2, 5))
    assert kept(db) == (5380, at(date(2026, 2, 10)), at(date(2026, 2, 10)))
    sound(db)  # ledger check: the kept state equals the clearings
    assert sums_at(db, date(2026, 2, 28)) == (5380, [{"days": 7, "n": 1}])
    assert sums_at(db, date(2026, 2, 7)) == (2380, [])  # the clearings up to D
    # a refund of the first payment opens the bill again: 23.80 cleared, not paid in full
    with db.session() as s:
        payments.reverse_payment(s, payments.payment_id_for("counter", "T1"),
                                 reason="paid twice", clock=issue_clock(JAN))
    assert kept(db)[0] == 2380
    sound(db)
    assert sums_at(db, date(2026, 2, 28)) == (2380, [])


def test_credit_the_bill_run_applies_is_kept_too(db: Database) -> None:
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 0).add("C1", month_end(JAN), 100_00).store(db)
    pay(db, "C1", "T1", 10_000, date(2026, 1, 20))  # credit before the bill
    run_bill_run(db, JAN, issue_clock(JAN))
    cleared, last, full = kept(db)
    assert cleared == 5380 and last is not None and full == last
    sound(db)
    # paid from credit on issue: 0 payment days
    assert sums_at(db, date(2026, 2, 28)) == (5380, [{"days": 0, "n": 1}])


def period_of(db: Database, reference: str) -> str | None:
    with db.engine.connect() as conn:
        return conn.execute(text("SELECT period FROM open_items WHERE reference = :r"),
                            {"r": reference}).scalar_one()


PERIOD = "each bill item keeps its bill's period"


def test_a_bill_item_keeps_its_period_and_the_sums_never_depend_on_it(db: Database) -> None:
    load_people(db, [Person("C1")])
    Reads().add("C1", OPEN, 0).add("C1", month_end(JAN), 100_00).store(db)
    pay(db, "C1", "T0", 1000, date(2026, 1, 20))  # credit before the bill: a credit item
    run_bill_run(db, JAN, issue_clock(JAN))
    assert period_of(db, BILL) == "2026-01"
    pay(db, "C1", "T1", 3000, date(2026, 2, 10))  # an existing item keeps its period
    assert period_of(db, BILL) == "2026-01"
    with db.engine.connect() as conn:
        credit = conn.execute(text(
            "SELECT count(*) FROM open_items WHERE item_kind = 'credit' AND period IS NULL")
        ).scalar_one()
    assert credit == 1
    sound(db)
    want = sums_at(db, date(2026, 2, 28))
    assert want == (4000, [])
    # a wrong or a missing period is caught by ``ledger check``, and the KPIs' sums, which
    # read an item's kept state only when it is found under the bill's period, are unchanged
    # (the bill's clearings are folded instead)
    for wrong in ("2025-12", None):
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE open_items SET period = :p WHERE reference = :r"),
                         {"p": wrong, "r": BILL})
        with db.engine.connect() as conn:
            assert [(v.invariant, v.example) for v in ledger.check(conn)
                    if v.invariant == PERIOD] == [(PERIOD, BILL)]
        assert sums_at(db, date(2026, 2, 28)) == want
    # the next posting on an item without its period gives it one
    pay(db, "C1", "T2", 1380, date(2026, 2, 12))
    assert period_of(db, BILL) == "2026-01"
    sound(db)


def test_a_bulk_posting_without_the_periods_looks_them_up(db: Database, monkeypatch) -> None:
    # ``post_frame`` callers pass each bill's period; one that does not still gets it right
    post_frame = ledger.post_frame

    def without_periods(conn, entries, **kw):  # type: ignore[no-untyped-def]
        assert "period" in entries.columns
        return post_frame(conn, entries.drop("period"), **kw)

    monkeypatch.setattr(ledger, "post_frame", without_periods)
    load_people(db, [Person("C1"), Person("C2")])
    Reads().add("C1", OPEN, 0).add("C1", month_end(JAN), 100_00) \
        .add("C2", OPEN, 0).add("C2", month_end(JAN), 200_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    assert period_of(db, BILL) == "2026-01"
    assert period_of(db, "C2-202601-1") == "2026-01"
    sound(db)
