"""The year to date kept on bills (bills.ytd_kwh, migration 0045) always equals the year summed.

Annual tiers rate a bill on the energy of the account's live bills of the calendar year before
its period. The bill run takes it from the previous period's bill (its ``ytd_kwh + kwh``) instead
of summing the year; whatever changes an earlier bill of the year afterwards (a cancellation, a
rebill, a bill issued for an earlier period) must make the run sum again. Property: after any
sequence of bill runs, cancellations and rebills, every live bill that keeps a year to date keeps
the year's sum, and the run's reader gives what a sum over the year gives, for every account."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from tests.factories import Person, Reads, load_people, month_end

from dianfei.billing import repository as repo
from dianfei.billing.service import cancel_bill, rebill, run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.ledger.service import check

ACCOUNTS = ("Y1", "Y2", "Y3")
_years = itertools.count(2001)
#: the registers' running values across examples (each example bills a year of its own)
_register: dict[str, int] = {}

OP = st.tuples(st.sampled_from(["run", "run", "cancel", "rebill"]),
               st.integers(0, len(ACCOUNTS) - 1), st.integers(0, 11))


def issue_clock(period: Period) -> FixedClock:
    d = period.end_date
    return FixedClock(datetime(d.year, d.month, 3, 9, 0, tzinfo=BUSINESS_TZ))


def live_bills(db: Database) -> pl.DataFrame:
    with db.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT bill_id, account_id, period, kwh, ytd_kwh FROM bills "
            "WHERE status = 'issued' ORDER BY account_id, period")).all()
    return pl.DataFrame([tuple(r) for r in rows], orient="row", schema={
        "bill_id": pl.String, "account_id": pl.String, "period": pl.String, "kwh": pl.Int64,
        "ytd_kwh": pl.Int64})


def assert_kept_is_the_sum(db: Database, upcoming: Period) -> None:
    bills = live_bills(db)
    for row in bills.filter(pl.col("ytd_kwh").is_not_null()).iter_rows(named=True):
        year = row["period"][:4]
        summed = bills.filter((pl.col("account_id") == row["account_id"])
                              & (pl.col("period") >= f"{year}-01")
                              & (pl.col("period") < row["period"]))["kwh"].sum()
        assert row["ytd_kwh"] == summed, row
    previous = repo.previous_period(db.engine, upcoming)
    kept = repo.year_to_date_kwh(db.engine, upcoming, pl.Series(ACCOUNTS), previous.ytd)
    year = repo.year_to_date_kwh(db.engine, upcoming)
    as_dict = dict(zip(kept["account_id"], kept["ytd_kwh"], strict=True))
    assert as_dict == dict(zip(year["account_id"], year["ytd_kwh"], strict=True))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(usage=st.lists(st.integers(0, 900_00), min_size=36, max_size=36),
       ops=st.lists(OP, min_size=4, max_size=14))
def test_the_year_to_date_kept_is_the_year_summed(db: Database, usage: list[int],
                                                   ops: list[tuple[str, int, int]]) -> None:
    if not _register:
        load_people(db, [Person(a, opened_on=date(1999, 1, 1)) for a in ACCOUNTS])
        for a in ACCOUNTS:
            _register[a] = 0
        reads = Reads()
        for a in ACCOUNTS:
            reads.add(a, month_end(Period(2000, 12)), 0)
        reads.store(db)
    year = next(_years)
    months = [Period(year, m) for m in range(1, 13)]
    reads = Reads()
    for m, period in enumerate(months):
        for i, a in enumerate(ACCOUNTS):
            _register[a] += usage[(m * len(ACCOUNTS) + i) % len(usage)]
            reads.add(a, month_end(period), _register[a])
    reads.store(db)
    billed = 0
    for op, who, which in ops:
        account = ACCOUNTS[who]
        if op == "run" and billed < len(months):
            run_bill_run(db, months[billed], issue_clock(months[billed]),
                         accounts=list(ACCOUNTS))
            billed += 1
        elif op in ("cancel", "rebill") and billed:
            period = months[which % billed]
            live = live_bills(db).filter((pl.col("account_id") == account)
                                         & (pl.col("period") == str(period)))
            if live.height == 0:
                continue
            bill_id = live["bill_id"][0]
            clock = issue_clock(months[billed - 1])
            if op == "rebill":
                rebill(db, clock, bill_id, "meter reader mistyped the reading")
            else:
                with db.session() as s:
                    cancel_bill(s, clock, bill_id, "billed to the wrong account")
        upcoming = months[billed] if billed < len(months) else Period(year + 1, 1)
        assert_kept_is_the_sum(db, upcoming)
    with db.engine.connect() as conn:
        assert check(conn) == []


def test_a_bill_imported_for_an_earlier_period_makes_the_next_run_sum_the_year(
        db: Database, tmp_path: Path) -> None:
    from dianfei.billing.service import import_bills

    # given C1 billed January and March (February excepted: no read), on a year to date kept
    load_people(db, [Person("C1")])
    jan, feb, mar, apr = (Period(2026, m) for m in (1, 2, 3, 4))
    Reads().add("C1", month_end(Period(2025, 12)), 0).add("C1", month_end(jan), 100_00) \
        .add("C1", month_end(mar), 300_00).add("C1", month_end(apr), 400_00).store(db)
    for p in (jan, feb, mar):
        run_bill_run(db, p, issue_clock(p))
    assert live_bills(db).select("period", "ytd_kwh").rows() == [("2026-01", 0),
                                                                 ("2026-03", 100_00)]
    # when the legacy system's February bill (50 kWh) is imported
    path = tmp_path / "bills.csv"
    path.write_text("bill_id,customer_id,period,issued_on,due_on,amount,kwh\n"
                    "L-FEB,C1,2026-02,2026-03-03,2026-03-18,26.90,50\n", encoding="utf-8")
    assert import_bills(db, path, clock=issue_clock(mar)).accepted == 1
    # then March no longer claims a year to date (it was rated without February's 50 kWh),
    # the imported bill keeps none, and April is rated on the year summed: 100 + 50 + 200
    assert live_bills(db).select("period", "ytd_kwh").rows() == [
        ("2026-01", 0), ("2026-02", None), ("2026-03", None)]
    run_bill_run(db, apr, issue_clock(apr))
    assert live_bills(db).filter(pl.col("period") == "2026-04")["ytd_kwh"].to_list() == [350_00]
    assert_kept_is_the_sum(db, Period(2026, 5))
