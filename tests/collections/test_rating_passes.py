"""The daily rating carries forward what did not change: after every day of collections, the
stored ratings equal rating every account afresh — with payments in the evening, in the morning
before the run, late, partial, never, and one reported by a bank file days after it was made,
and with a one-month window so that facts leave it while the test runs; each month's first
carries forward too, with the accounts opened and the low-income marks changed since."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlalchemy import text

from dianfei.collections import incentives
from dianfei.collections import ops_repository as repo
from dianfei.collections.service import amount_due, run_day
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from tests.collections.fakes import FakeNotifier, FakeSwitch
from tests.collections.test_operations import at, bill, pay_all
from tests.factories import Person, load_people

COLS = ["account_id", "grade", "points", "on_time", "late", "broken", "suspensions",
        "repeat_defaulter"]


def _fresh(db: Database, day: date) -> pl.DataFrame:
    r = incentives.rules()
    return incentives.rate_frame(incentives.facts_of(db, day, r), r).select(COLS).sort("account_id")


def _stored(db: Database) -> pl.DataFrame:
    return repo.ratings(db.engine).select(COLS).sort("account_id")


def _pay(db: Database, cid: str, when_day: date, hh: int, tx: str, share: float = 1.0) -> None:
    if share == 1.0:
        pay_all(db, cid, at(when_day, hh), tx)
        return
    from datetime import UTC

    from dianfei.payments.service import post_payments_frame

    with db.engine.connect() as conn:
        owed = amount_due(conn, cid)
    frame = pl.DataFrame({"channel": ["bank"], "transaction_id": [tx], "account_id": [cid],
                          "amount": [int(owed * share)],
                          "paid_at": [at(when_day, hh).astimezone(UTC)]},
                         schema={"channel": pl.String, "transaction_id": pl.String,
                                 "account_id": pl.String, "amount": pl.Int64,
                                 "paid_at": pl.Datetime("us", "UTC")})
    with db.engine.begin() as conn:
        post_payments_frame(conn, frame, clock=FixedClock(at(when_day, hh)), source="test")


def _open_like(db: Database, new: str, like: str) -> None:
    """A customer and account opened today, copied from ``like``'s rows (meters not needed)."""
    from sqlalchemy import inspect

    with db.engine.begin() as conn:
        for table, key in (("customers", "customer_id"), ("accounts", "account_id")):
            cols = [c["name"] for c in inspect(conn).get_columns(table)]
            keys = {"customer_id", "account_id"}
            picked = ", ".join(":new" if c in keys else c for c in cols)
            conn.execute(text(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {picked} "
                              f"FROM {table} WHERE {key} = :like"), {"new": new, "like": like})


def test_every_day_the_carried_forward_ratings_equal_a_full_pass(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # one late bill in the window makes a repeat defaulter, so one is there to be marked low-income
    short = dataclasses.replace(incentives.rules(), window_months=1, min_late=1)
    monkeypatch.setattr(incentives, "rules", lambda path=None: short)
    people = ["A", "B", "C", "D", "E", "F", "G"]
    load_people(db, [Person(p) for p in people])
    dues = [date(2026, 1, 18), date(2026, 2, 18), date(2026, 3, 18)]
    notifier, switch = FakeNotifier(), FakeSwitch()
    full_days, carried = 0, 0
    day = date(2026, 1, 2)
    while day <= date(2026, 4, 6):
        for due in dues:
            if day == due - timedelta(days=15):
                for p in people:
                    bill(db, p, due)
            if day == due - timedelta(days=1):
                _pay(db, "E", day, 8, f"E-{due:%m}")  # in the morning, before the run
        run_day(db, day, clock=FixedClock(at(day)), switch=switch, notifier=notifier)
        assert_frame_equal(_stored(db), _fresh(db, day), check_row_order=False)
        with db.engine.connect() as conn:
            full = conn.execute(text("SELECT full_pass FROM credit_rating_passes WHERE day = :d"),
                                {"d": day}).scalar_one()
        full_days, carried = full_days + bool(full), carried + (not full)
        for due in dues:
            if day == due - timedelta(days=2):
                _pay(db, "A", day, 20, f"A-{due:%m}")  # on time, in the evening
            if day == due + timedelta(days=6):
                _pay(db, "B", day, 19, f"B-{due:%m}")  # late
            if day == due + timedelta(days=9):
                # C paid at the bank 5 days ago; the bank's file arrives today
                _pay(db, "C", day - timedelta(days=5), 11, f"C-{due:%m}")
            if day == due + timedelta(days=3):
                _pay(db, "F", day, 15, f"F-{due:%m}", share=0.5)  # half
        if day == date(2026, 1, 10):
            # G pays once, early in the month: that month leaves the window on its own
            _pay(db, "G", day, 12, "G-01")
        if day == date(2026, 2, 28):
            # what raises no collection event, seen by the next day's run (the 1st): an account
            # opened, and a household marked low-income (never a repeat defaulter)
            _open_like(db, "H", "A")
            defaulters = _stored(db).filter(pl.col("repeat_defaulter"))["account_id"].to_list()
            assert defaulters, "the test needs a repeat defaulter to mark low-income"
            marked = defaulters[0]
            with db.engine.begin() as conn:
                conn.execute(text("UPDATE customers SET low_income = :t WHERE customer_id = :c"),
                             {"t": True, "c": marked})
        day += timedelta(days=1)
    # D never paid, so its late bills count; C's late-reported payments count in their months
    final = _stored(db).filter(pl.col("account_id").is_in(["C", "D"]))
    assert final.filter(pl.col("account_id") == "D")["late"].item() >= 1
    assert carried > 60 and full_days == 1  # the first day only: each month's first carries
    assert _stored(db).filter(pl.col("account_id") == "H").height == 1
    assert not _stored(db).filter(pl.col("account_id") == marked)["repeat_defaulter"].item()
