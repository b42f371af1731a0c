"""The KPIs from the database's totals equal the KPIs from the bills one by one, on random data.

``dianfei kpi`` without a customer ``--by`` reads ``payments.service.bill_state_sums``: the
bills' state at D summed per period (and payment days), unpaid amounts by days past due — each
bill's state taken from its open item's kept clearing state (``open_items.cleared``,
``paid_in_full_at``: migration 0037) when it was last cleared by D, else folded from its
clearings. Hypothesis writes random bills and clearings (tests/reporting/test_bill_states.py's
generator: refunds, partial and over-payments, zero and cancelled bills, clearings before the
issue date and on both sides of the business-day boundary), gives a random part of the bills an
open item with its kept state (the rest have none, as rows written without the ledger), and
compares at a random D, on SQLite and PostgreSQL (db marker):

- the totals with the Polars reference ``reporting.kpi.bill_state`` summed the same way;
- the whole JSON of ``period_kpis`` (totals) with ``compute`` over the bills one by one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from tests.reporting.test_bill_states import DAY0, EXAMPLES, _write, bill

from dianfei.billing.service import bills_between
from dianfei.core.clock import Period
from dianfei.core.errors import ValidationError
from dianfei.db.bulk import write_frame
from dianfei.db.engine import Database
from dianfei.ledger.service import check, refresh_bill_states
from dianfei.payments.service import bill_clearings, bill_state_sums, collected_by_channel
from dianfei.reporting.kpi import (
    _histogram_median,
    _past_due_thresholds,
    bill_state,
    compute,
    load_inputs,
    period_kpis,
)

KEPT = "each bill's kept clearing state equals its clearings"
PERIOD = "each bill item keeps its bill's period"


def _open_items(db: Database, year: str, keep: list[bool]) -> list[str]:
    """Open items for the bills of ``year`` whose flag is set, with their bill's period and
    their kept state filled from their clearings (what the postings keep); returns their ids."""
    bills = bills_between(db.engine, f"{year}-01", f"{year}-12").sort("bill_id")
    chosen = [b for b, k in zip(bills.to_dicts(), keep, strict=False) if k]
    if not chosen:
        return []
    now = datetime(2026, 6, 1, tzinfo=UTC)
    with db.engine.begin() as conn:
        write_frame(conn, "open_items", pl.DataFrame(
            {"reference": [b["bill_id"] for b in chosen],
             "account_id": [b["account_id"] for b in chosen],
             "customer_id": [b["customer_id"] for b in chosen],
             "item_kind": ["bill"] * len(chosen),
             "bill_id": [b["bill_id"] for b in chosen],
             "due_on": [b["due_on"] for b in chosen],
             "amount": [b["amount"] for b in chosen],
             "open_amount": [b["amount"] for b in chosen],
             "updated_at": [now] * len(chosen),
             "period": [b["period"] for b in chosen]}))
        refresh_bill_states(conn, [b["bill_id"] for b in chosen])
    return [b["bill_id"] for b in chosen]


def _reference_sums(state: pl.DataFrame, period: str, as_of: date
                    ) -> tuple[pl.DataFrame, pl.DataFrame]:
    s = state.filter((pl.col("period") == period) & (pl.col("status") != "cancelled"))
    unpaid = pl.max_horizontal(pl.col("amount") - pl.col("paid"), pl.lit(0))
    s = s.with_columns(unpaid.alias("unpaid"))
    sums = s.select(
        pl.len().cast(pl.Int64).alias("n"), pl.col("amount").sum().alias("billed"),
        pl.col("paid").sum().alias("paid"), pl.col("unpaid").sum().alias("unpaid"),
        (~pl.col("estimated").fill_null(False)).cast(pl.Int64).sum().alias("actual"),
        pl.col("unpaid").filter(pl.col("due_on").is_not_null()).sum().alias("dated"),
        *[pl.col("unpaid").filter(pl.col("due_on") >= as_of - timedelta(days=t)).sum()
          .alias(f"le_{i}") for i, t in enumerate(_past_due_thresholds())])
    days = (s.filter((pl.col("amount") > 0) & pl.col("paid_in_full_on").is_not_null())
            .select((pl.col("paid_in_full_on") - pl.col("issued_on")).dt.total_days()
                    .alias("days"))
            .group_by("days").agg(pl.len().cast(pl.Int64).alias("n")).sort("days"))
    return sums, days


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(bills=st.lists(bill, min_size=1, max_size=8), as_of_day=st.integers(0, 70),
       keep=st.lists(st.booleans(), min_size=8, max_size=8), trend=st.sampled_from([0, 3]),
       by=st.sampled_from([None, "channel"]))
def test_the_totals_and_the_kpis_from_them_equal_the_bills_one_by_one(
        db: Database, bills: list[tuple], as_of_day: int, keep: list[bool], trend: int,
        by: str | None) -> None:
    year = _write(db, bills)
    _open_items(db, year, keep)
    with db.engine.connect() as conn:  # the kept states equal what the clearings derive (the
        # raw rows break other invariants: no ledger entries)
        assert {KEPT, PERIOD}.isdisjoint(v.invariant for v in check(conn))
    as_of = DAY0 + timedelta(days=as_of_day)
    first, last = f"{year}-01", f"{year}-03"
    ref = bill_state(bills_between(db.engine, first, last),
                     bill_clearings(db.engine, first, last), as_of)
    for month in ("01", "02", "03"):
        want_sums, want_days = _reference_sums(ref, f"{year}-{month}", as_of)
        sums, days = bill_state_sums(db.engine, f"{year}-{month}", as_of,
                                     _past_due_thresholds(), by_days=True)
        assert (sums.to_dicts(), days.to_dicts()) == (want_sums.to_dicts(), want_days.to_dicts())
        sums, days = bill_state_sums(db.engine, f"{year}-{month}", as_of, [], by_days=False)
        assert sums.to_dicts() == want_sums.select(sums.columns).to_dicts()
        assert days.height == 0
        sums, days = bill_state_sums(db.engine, f"{year}-{month}", as_of, [], by_days=False,
                                     unpaid_only=True)
        assert sums.columns == ["n", "billed", "unpaid"]
        assert sums.to_dicts() == want_sums.select(sums.columns).to_dicts()
        assert days.height == 0
    # the KPIs: the example's bills moved to the periods 2026-01..03 (their issue dates' time;
    # accounts renamed apart from other examples'), beside the earlier examples' bills there —
    # both computations read the same rows
    with db.engine.begin() as conn:  # (the items' periods with their bills')
        conn.execute(text("UPDATE bills SET period = '2026' || substr(period, 5), "
                          "account_id = :y || account_id WHERE period LIKE :like"),
                     {"y": year, "like": f"{year}-%"})
        conn.execute(text("UPDATE open_items SET period = '2026' || substr(period, 5) "
                          "WHERE period LIKE :like"), {"like": f"{year}-%"})
    period = Period(2026, 3) if as_of >= date(2026, 3, 1) else Period(2026, 2)
    live = (bills_between(db.engine, str(period), str(period))
            .filter((pl.col("status") != "cancelled") & (pl.col("issued_on") <= as_of)))
    if live.height == 0:
        with pytest.raises(ValidationError, match="nothing to measure"):
            period_kpis(db, period, as_of, by, trend)
        return
    want = compute(load_inputs(db, period, as_of, trend), as_of, by, trend)
    assert period_kpis(db, period, as_of, by, trend) == want


def test_a_bill_cleared_after_d_is_folded_from_its_clearings_up_to_d(db: Database) -> None:
    # paid 4,000 on 2 Feb and 6,000 on 10 Feb: as of 5 Feb the kept state (paid in full on
    # 10 Feb) is too late, the clearings by 5 Feb say 4,000 paid
    year = _write(db, [("03", 0, 10_000, "issued",
                        [(1, 0, 4_000, "bill", "bank"), (9, 0, 6_000, "bill", "alipay")])])
    assert _open_items(db, year, [True]) == [f"{year}B0"]
    p = f"{year}-03"

    def at(day: int) -> tuple[int, int, list[dict]]:
        sums, days = bill_state_sums(db.engine, p, DAY0 + timedelta(days=day), [0],
                                     by_days=True)
        return sums["paid"][0], sums["unpaid"][0], days.to_dicts()

    assert at(4) == (4_000, 6_000, [])
    assert at(20) == (10_000, 0, [{"days": 9, "n": 1}])


def test_the_window_reads_join_by_index_only_in_their_own_transaction(db: Database) -> None:
    # PostgreSQL: the sums and the channel split turn hash and merge joins off (SET LOCAL) so
    # that a period's bills reach their items and clearings by index, not by scanning every
    # period's; the pooled connections keep the planner's defaults afterwards
    year = _write(db, [("03", 0, 10_000, "issued", [(1, 0, 4_000, "bill", "bank")])])
    _open_items(db, year, [True])
    p, d = f"{year}-03", DAY0 + timedelta(days=20)
    assert bill_state_sums(db.engine, p, d, [], by_days=False, unpaid_only=True)[0].row(
        0, named=True) == {"n": 1, "billed": 10_000, "unpaid": 6_000}
    assert collected_by_channel(db.engine, p, d).to_dicts() == [
        {"channel": "bank", "collected": 4_000, "payments": 1}]
    if db.engine.dialect.name != "postgresql":
        return
    with db.engine.connect() as conn:  # the pool's last returned connection (LIFO)
        assert conn.execute(text("SHOW enable_hashjoin")).scalar_one() == "on"
        assert conn.execute(text("SHOW enable_mergejoin")).scalar_one() == "on"


def test_ledger_check_finds_a_kept_state_that_differs_from_the_clearings(db: Database) -> None:
    year = _write(db, [("03", 0, 10_000, "issued", [(1, 0, 10_000, "bill", "bank")])])
    _open_items(db, year, [True])
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE open_items SET cleared = 9000 WHERE reference = :r"),
                     {"r": f"{year}B0"})
    with db.engine.connect() as conn:
        broken = {v.invariant: v for v in check(conn)}
    assert (broken[KEPT].count, broken[KEPT].example) == (1, f"{year}B0")


@pytest.mark.parametrize(("values", "counts", "median"), [
    ([], [], None), ([3], [1], 3.0), ([3], [2], 3.0), ([1, 4], [1, 1], 2.5),
    ([1, 4, 9], [2, 1, 1], 2.5), ([1, 4, 9], [1, 1, 3], 9.0), ([0, 7], [3, 3], 3.5)])
def test_the_median_of_a_histogram_is_the_median_of_its_values(
        values: list[int], counts: list[int], median: float | None) -> None:
    assert _histogram_median(values, counts) == median
    flat = [v for v, c in zip(values, counts, strict=True) for _ in range(c)]
    assert median == (pl.Series(flat, dtype=pl.Int64).median() if flat else None)
