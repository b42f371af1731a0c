"""The rating's facts counted in the database (``ops_repository.rating_facts``): one row per
account with the months paid without a late fee, the broken plans and promises and the
suspensions for arrears — a prepayment cut-off left out, the day's own late fees and stops
counted from the next day on — checked against counts made by hand from the events."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
from polars.testing import assert_frame_equal

from dianfei.collections import incentives
from dianfei.collections import ops_repository as repo
from dianfei.collections.context import event_frame, write_events
from dianfei.customers.service import open_account_facts
from dianfei.db.engine import Database
from tests.factories import Person, load_people

DAY = date(2026, 3, 20)
#: the rules' window on DAY (a year back)
SINCE = incentives.window_start(DAY, incentives.rules().window_months)


def _events(db: Database, rows: list[tuple[str, str, date, str | None]]) -> None:
    """(account, type, business date, detail) as collection events."""
    with db.engine.begin() as conn:
        write_events(conn, event_frame([{
            "key": f"t{i}", "account_id": a, "customer_id": a, "type": t,
            "at": datetime(d.year, d.month, d.day, 9, tzinfo=UTC), "business_date": d,
            "detail": detail} for i, (a, t, d, detail) in enumerate(rows)]))


def _facts(db: Database, accounts: list[str] | None = None) -> pl.DataFrame:
    return repo.rating_facts(db.engine, SINCE, DAY, paid=incentives.PAID, fee=incentives.FEE,
                             broken=incentives.BROKEN, stopped=incentives.STOPPED,
                             later=incentives.LATER_IN_THE_DAY, accounts=accounts
                             ).sort("account_id")


def test_months_paid_without_a_fee_broken_promises_and_stops_for_arrears(db: Database) -> None:
    load_people(db, [Person("A"), Person("B"), Person("C"), Person("D")])
    prepay_cut = '{"reason": "prepay", "case_id": 7}'
    _events(db, [
        # A: January paid twice (one month), February paid with a fee (not on time), March
        # paid and its fee accrued today (counts from tomorrow: on time today), a payment
        # before the window (not counted)
        ("A", "payment_received", date(2026, 1, 5), None),
        ("A", "payment_received", date(2026, 1, 25), None),
        ("A", "payment_received", date(2026, 2, 3), None),
        ("A", "late_fee_accrued", date(2026, 2, 28), None),
        ("A", "payment_received", date(2026, 3, 2), None),
        ("A", "late_fee_accrued", DAY, None),
        ("A", "payment_received", SINCE - timedelta(days=1), None),
        # B: two broken promises and a broken plan, a suspension for arrears, a prepayment
        # cut-off (how prepayment works: not a stop), a suspension today (from tomorrow on)
        ("B", "promise_broken", date(2025, 6, 1), None),
        ("B", "promise_broken", date(2025, 7, 1), None),
        ("B", "plan_broken", date(2025, 8, 1), None),
        ("B", "suspended", date(2025, 9, 1), '{"reason": "arrears"}'),
        ("B", "suspended", date(2025, 10, 1), prepay_cut),
        ("B", "suspended", DAY, '{"reason": "arrears"}'),
        # C: only events that are not facts
        ("C", "notice_sent", date(2026, 1, 5), None),
    ])
    got = _facts(db)
    want = pl.DataFrame({"account_id": ["A", "B"], "on_time": [2, 0], "broken": [0, 3],
                         "suspensions": [0, 1]})
    assert_frame_equal(got, want)
    assert_frame_equal(_facts(db, ["B", "C", "D"]), want.filter(pl.col("account_id") == "B"))
    assert _facts(db, []).height == 0

    # the rating's facts of every open account: the counts joined, zeros where none
    facts = incentives.facts_of(db, DAY, incentives.rules()).sort("account_id")
    assert facts.columns == ["account_id", "customer_id", "customer_class", "low_income",
                             "on_time", "late", "broken", "suspensions"]
    assert facts.select("account_id", "on_time", "broken", "suspensions").rows() == [
        ("A", 2, 0, 0), ("B", 0, 3, 1), ("C", 0, 0, 0), ("D", 0, 0, 0)]


def test_account_facts_without_names_are_the_same_facts(db: Database) -> None:
    load_people(db, [Person("A", low_income=True), Person("B", customer_class="commercial",
                                                           tariff_id="cn-zj-commercial"),
                     Person("C")])
    full = open_account_facts(db.engine).sort("account_id")
    bare = open_account_facts(db.engine, names=False).sort("account_id")
    assert "name" in full.columns and "name" not in bare.columns
    assert_frame_equal(bare, full.drop("name"))
    some = open_account_facts(db.engine, ["C", "A", "X"], names=False).sort("account_id")
    assert_frame_equal(some, full.drop("name").filter(pl.col("account_id").is_in(["A", "C"])))
    assert open_account_facts(db.engine, [], names=False).height == 0
