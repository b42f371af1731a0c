"""From the second month on, the bill run reads the register reads of the meters whose last bill
stopped at the period's start from the previous period's start on, and the usual 40-day window
only for the others (a new meter, one excepted last period). Property: the same bills and the
same exceptions as reading the window for every meter."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.conftest import fresh_database_env
from tests.factories import Person, Reads, load_people, month_end

from dianfei.billing import repository as repo
from dianfei.billing import service
from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.core.settings import load_settings
from dianfei.db.engine import Database, open_database

JAN, FEB, MAR = Period(2026, 1), Period(2026, 2), Period(2026, 3)
OPEN = month_end(Period(2025, 12))
TOU = ("total", "peak", "flat", "valley")


def issue_clock(period: Period) -> FixedClock:
    d = period.end_date
    return FixedClock(datetime(d.year, d.month, 3, 9, 0, tzinfo=BUSINESS_TZ))


def at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=BUSINESS_TZ).astimezone(UTC)


def county(db: Database) -> None:
    load_people(db, [
        Person("C1"),
        Person("C2", tariff_id="cn-general-industrial", customer_class="industrial",
               registers=",".join(TOU)),
        Person("C3"), Person("C4"), Person("C5"), Person("C6")])
    r = Reads()
    # C1: monthly frozen reads
    for p, v in ((Period(2025, 12), 0), (JAN, 100_00), (FEB, 250_00), (MAR, 300_00)):
        r.add("C1", month_end(p), v)
    # C2: time of use; January's valley read came on the 20th and none at the month's end, so
    # January closes valley there and February opens it there (not at the 1st)
    for reg, jan, feb, mar in (("total", 1000_00, 1700_00, 1800_00), ("peak", 300_00, 500_00, 530_00),
                               ("flat", 500_00, 800_00, 850_00)):
        r.add("C2", OPEN, 0, reg).add("C2", month_end(JAN), jan, reg) \
            .add("C2", month_end(FEB), feb, reg).add("C2", month_end(MAR), mar, reg)
    r.add("C2", OPEN, 0, "valley").add("C2", at(2026, 1, 20), 200_00, "valley") \
        .add("C2", month_end(FEB), 400_00, "valley").add("C2", month_end(MAR), 420_00, "valley")
    # C3: no read at January's end (excepted), read again at February's
    r.add("C3", OPEN, 10_00).add("C3", month_end(FEB), 90_00).add("C3", month_end(MAR), 95_00)
    # C4: reads during February too; the last of the period closes it
    r.add("C4", OPEN, 0).add("C4", month_end(JAN), 50_00).add("C4", at(2026, 2, 10), 60_00) \
        .add("C4", at(2026, 2, 20), 70_00).add("C4", month_end(FEB), 80_00) \
        .add("C4", month_end(MAR), 90_00)
    # C5: its last read before February is older than the 40-day window (10 December)
    r.add("C5", at(2025, 12, 10), 5_00).add("C5", month_end(FEB), 45_00) \
        .add("C5", month_end(MAR), 55_00)
    # C6: February's read goes backwards (excepted): March opens where January's bill stopped,
    # at February's start — before March's previous-period start, so read by meter
    r.add("C6", OPEN, 1000_00).add("C6", month_end(JAN), 1100_00) \
        .add("C6", month_end(FEB), 1050_00).add("C6", month_end(MAR), 1300_00)
    r.store(db)
    for p in (JAN, FEB, MAR):
        run_bill_run(db, p, issue_clock(p))


def outcome(db: Database) -> tuple[list[Any], list[Any]]:
    with db.engine.connect() as conn:
        bills = [tuple(r) for r in conn.execute(text(
            "SELECT account_id, period, kwh, amount, read_from, read_to, read_from_at, "
            "read_to_at, ytd_kwh FROM bills ORDER BY account_id, period"))]
        excepted = [tuple(r) for r in conn.execute(text(
            "SELECT account_id, period, reason FROM bill_exceptions "
            "ORDER BY account_id, period"))]
    return bills, excepted


def test_reading_from_the_previous_period_bills_as_the_window_does(
        db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the bill run as it is: record where each run's read starts
    starts: list[datetime] = []
    real = repo.reads_between

    def spy(engine: Any, lo: datetime, hi: datetime) -> Any:
        starts.append(lo)
        return real(engine, lo, hi)

    monkeypatch.setattr(repo, "reads_between", spy)
    county(db)
    narrow = outcome(db)
    # each run reads everyone's from the previous period's start (in January the five meters
    # with no bill yet are few: their window is read by meter)
    assert [s.astimezone(BUSINESS_TZ).date() for s in starts] == [
        date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1)]
    # when the same county is billed reading the window for every meter
    monkeypatch.setattr(service, "_FEW_METERS", -1)
    with fresh_database_env(tmp_path, migrated=True) as env:
        other = open_database(load_settings(env))
        try:
            county(other)
            window = outcome(other)
        finally:
            other.close()
    # then the bills and the exceptions are the same, row for row
    assert narrow == window
    bills, excepted = narrow
    assert {(b[0], b[1]) for b in bills} == {
        ("C1", "2026-01"), ("C1", "2026-02"), ("C1", "2026-03"), ("C2", "2026-01"),
        ("C2", "2026-02"), ("C2", "2026-03"), ("C3", "2026-02"), ("C3", "2026-03"),
        ("C4", "2026-01"), ("C4", "2026-02"), ("C4", "2026-03"), ("C5", "2026-02"),
        ("C5", "2026-03"), ("C6", "2026-01"), ("C6", "2026-03")}
    assert excepted == [("C3", "2026-01", "no_read"), ("C5", "2026-01", "no_read"),
                        ("C6", "2026-02", "read_backwards")]
    kwh = {(b[0], b[1]): b[2] for b in bills}
    # C3 and C5 open on their last read before the period; C2's valley on the 20th; C6 at
    # January's closing read 1100, not at February's faulty 1050
    assert (kwh[("C3", "2026-02")], kwh[("C5", "2026-02")], kwh[("C2", "2026-02")],
            kwh[("C6", "2026-03")]) == (80_00, 40_00, 700_00, 200_00)
