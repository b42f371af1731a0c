"""Each bill's state at D worked out by the database equals the Polars reference, on random data.

``payments.service.bill_states`` (window functions in SQL: one row per bill) is what the KPIs read;
``reporting.kpi.bill_state`` (Polars over every clearing) is the reference it replaced there and
what the exports still use. Hypothesis writes random bills and clearings straight into the tables
— refunds that open a paid bill again, partial payments, overpayments, zero-amount and cancelled
bills, clearings before the issue date, several clearings at the same instant, instants on both
sides of the business-day boundary (16:00 UTC), late-fee rows that are not clearings of bills —
and compares the two for every bill at a random D, on SQLite and PostgreSQL (db marker).
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, date, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dianfei.billing.service import bills_between
from dianfei.db.bulk import write_frame
from dianfei.db.engine import Database
from dianfei.payments.service import bill_clearings, bill_states, collected_by_channel
from dianfei.reporting.kpi import bill_state, business_day

EXAMPLES = int(os.environ.get("DIANFEI_KPI_EXAMPLES", "25"))
#: months of a year each example has for itself (the tables are append-only: nothing is deleted)
MONTHS = ("01", "02", "03")
DAY0 = date(2026, 2, 1)
#: instants of a day, UTC: 15:59:59.999999 is the last of one business day, 16:00 the first of
#: the next (Asia/Shanghai is UTC+8)
TIMES = (timedelta(hours=1), timedelta(hours=15, minutes=59, seconds=59, microseconds=999_999),
         timedelta(hours=16), timedelta(hours=23, minutes=30))
CHANNELS = ("counter", "alipay", "bank")
_ids = itertools.count(1)
_years = itertools.count(2101)

clearing = st.tuples(
    st.integers(0, 60),                        # day after DAY0
    st.integers(0, len(TIMES) - 1),            # instant of that day
    st.one_of(st.integers(1, 12_000), st.integers(-8_000, -1), st.just(0)),  # fen (negative: refund)
    st.sampled_from(("bill", "bill", "bill", "late_fee")),
    st.sampled_from(CHANNELS))
bill = st.tuples(
    st.sampled_from(MONTHS),
    st.integers(0, 40),                        # issue day after DAY0
    st.one_of(st.just(0), st.integers(1, 10_000)),
    st.sampled_from(("issued", "issued", "issued", "cancelled")),
    st.lists(clearing, max_size=5))


def _write(db: Database, bills: list[tuple]) -> str:
    """Write the bills and their clearings under a year of their own; returns the year."""
    year = str(next(_years))
    rows, pays, allocs = [], [], []
    for i, (month, issue, amount, status, clears) in enumerate(bills):
        bill_id, account, period = f"{year}B{i}", f"A{i}", f"{year}-{month}"
        issued = DAY0 + timedelta(days=issue)
        rows.append({"bill_id": bill_id, "account_id": account, "customer_id": f"C{i % 3}",
                     "period": period, "issued_on": issued, "due_on": issued + timedelta(days=15),
                     "amount": amount, "kwh": 100, "status": status, "estimated": i % 4 == 1,
                     "read_from_at": datetime(2026, 1, 1, tzinfo=UTC),
                     "read_to_at": datetime(2026, 1, 31, 16, tzinfo=UTC),
                     "version": 1, "tariff_id": "t", "tariff_version": "v1", "multiplier": 1})
        for day, t, fen, to, channel in clears:
            at = datetime.combine(DAY0 + timedelta(days=day), datetime.min.time(),
                                  tzinfo=UTC) + TIMES[t]
            # payments are shared now and then: a payment's money spread over bills
            pid = f"{year}P{next(_ids) % 7}-{i % 2}"
            if pid not in {p["payment_id"] for p in pays}:
                pays.append({"payment_id": pid, "channel": channel, "transaction_id": pid,
                             "account_id": account, "customer_id": f"C{i % 3}", "amount": 1,
                             "paid_at": at, "business_date": at.date(), "posted_at": at,
                             "source": "import", "status": "posted"})
            allocs.append({"payment_id": pid, "account_id": account, "allocated_to": to,
                           "bill_id": bill_id, "item_reference": bill_id, "amount": fen,
                           "allocated_at": at})
    with db.engine.begin() as conn:
        for table, frame in (("bills", pl.DataFrame(rows)), ("payments", pl.DataFrame(pays)),
                             ("payment_allocations", pl.DataFrame(allocs))):
            if frame.height:
                write_frame(conn, table, frame)
    return year


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bills=st.lists(bill, min_size=1, max_size=8), as_of_day=st.integers(0, 70),
       window=st.sampled_from([("01", "03"), ("02", "02")]))
def test_the_database_state_equals_the_polars_reference(db: Database, bills: list[tuple],
                                                        as_of_day: int,
                                                        window: tuple[str, str]) -> None:
    year = _write(db, bills)
    first, last = (f"{year}-{m}" for m in window)
    as_of = DAY0 + timedelta(days=as_of_day)
    # the reference: every clearing read and folded in Polars
    ref = bill_state(bills_between(db.engine, first, last),
                     bill_clearings(db.engine, first, last), as_of)
    got = bill_states(db.engine, first, last, as_of)
    columns = got.columns
    assert set(columns) <= set(ref.columns)
    want = ref.select(columns).sort("bill_id")
    got = got.sort("bill_id")
    assert got.schema == want.schema
    assert got.to_dicts() == want.to_dicts()
    # the channel split of one period: the database's GROUP BY, and the clearings it read
    period = last
    live = bills_between(db.engine, period, period).filter(pl.col("status") != "cancelled")
    by_hand = (bill_clearings(db.engine, period, period)
               .join(live.select("bill_id"), on="bill_id", how="semi")
               .filter(business_day("allocated_at") <= as_of)
               .group_by("channel").agg(pl.col("amount").sum().alias("collected"),
                                        pl.col("payment_id").n_unique().cast(pl.Int64)
                                        .alias("payments")).sort("channel"))
    assert collected_by_channel(db.engine, period, as_of).sort("channel").to_dicts() == \
        by_hand.to_dicts()
    cut = bill_clearings(db.engine, period, period, as_of)
    assert cut.sort("bill_id", "allocated_at", "payment_id", "amount").to_dicts() == (
        bill_clearings(db.engine, period, period)
        .join(live.select("bill_id"), on="bill_id", how="semi")
        .filter(business_day("allocated_at") <= as_of)
        .sort("bill_id", "allocated_at", "payment_id", "amount").to_dicts())


def test_a_refund_opens_a_paid_bill_and_the_day_it_is_paid_again_counts(db: Database) -> None:
    # paid in full on 2 Feb, refunded 3,000 on 5 Feb, paid again on 9 Feb (and a late fee row)
    year = _write(db, [("01", 0, 10_000, "issued",
                 [(1, 0, 10_000, "bill", "bank"), (4, 0, -3_000, "bill", "bank"),
                  (8, 0, 3_000, "bill", "alipay"), (9, 0, 500, "late_fee", "bank")])])
    p = f"{year}-01"
    at = {d: bill_states(db.engine, p, p, date(2026, 2, d)).row(0, named=True)
          for d in (1, 2, 6, 9)}
    assert (at[1]["paid"], at[1]["paid_in_full_on"]) == (0, None)
    assert (at[2]["paid"], at[2]["paid_in_full_on"]) == (10_000, date(2026, 2, 2))
    assert (at[6]["paid"], at[6]["paid_in_full_on"]) == (7_000, None)
    assert (at[9]["paid"], at[9]["paid_in_full_on"]) == (10_000, date(2026, 2, 9))


def test_money_before_the_issue_date_counts_on_issue_and_zero_bills_are_settled(
        db: Database) -> None:
    year = _write(db, [("01", 5, 4_000, "issued", [(1, 0, 4_000, "bill", "bank")]),
                       ("01", 5, 0, "issued", []),
                       ("01", 5, 4_000, "cancelled", [(6, 0, 4_000, "bill", "bank")])])
    p = f"{year}-01"
    got = {r["bill_id"][4:]: r
           for r in bill_states(db.engine, p, p, date(2026, 2, 20)).to_dicts()}
    assert got["B0"]["paid_in_full_on"] == date(2026, 2, 6)   # the issue date, not 2 Feb
    assert got["B1"]["paid_in_full_on"] == date(2026, 2, 6)   # zero bill: on issue
    assert (got["B2"]["paid"], got["B2"]["paid_in_full_on"]) == (4_000, None)  # cancelled
    # and a bill not issued yet at D is not there
    assert bill_states(db.engine, p, p, date(2026, 2, 5)).height == 0


def test_the_last_microsecond_of_a_business_day_is_that_day(db: Database) -> None:
    # 15:59:59.999999 UTC is 23:59:59.999999 in Shanghai: still 2 Feb (SQLite's date() alone
    # rounds it up to 3 Feb); 16:00 UTC is 3 Feb
    year = _write(db, [("01", 0, 1_000, "issued", [(1, 1, 1_000, "bill", "bank")]),
                       ("01", 0, 1_000, "issued", [(1, 2, 1_000, "bill", "bank")]),
                       ("01", 0, 1_000, "issued", [(1, 0, 400, "bill", "bank"),
                                                   (1, 1, 600, "bill", "bank")])])
    p = f"{year}-01"
    got = [r["paid_in_full_on"] for r in
           bill_states(db.engine, p, p, date(2026, 2, 3)).sort("bill_id").to_dicts()]
    assert got == [date(2026, 2, 2), date(2026, 2, 3), date(2026, 2, 2)]
    assert bill_states(db.engine, p, p, date(2026, 2, 2)).sort("bill_id")["paid"].to_list() == \
        [1_000, 0, 1_000]
