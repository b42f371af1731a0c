"""Aging: open debits bucketed by days past the due date, credits applied oldest first."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.ledger.service import AGING_BUCKETS, aging_frame

SCHEMA = {"entry_id": pl.Int64, "account_id": pl.String, "kind": pl.String, "amount": pl.Int64,
          "business_date": pl.Date, "due_on": pl.Date, "reverses_entry_id": pl.Int64}


def frame(rows: list[tuple[int, str, str, int, date, date | None, int | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def test_buckets_by_days_past_due_never_by_issue_date() -> None:
    as_of = date(2026, 6, 30)
    got = aging_frame(frame([
        (1, "A", "bill", 1000, date(2026, 1, 3), date(2026, 1, 18), None),   # 163 days: >90
        (2, "A", "bill", 2000, date(2026, 4, 3), date(2026, 4, 18), None),   # 73 days: 61-90
        (3, "A", "bill", 3000, date(2026, 5, 3), date(2026, 5, 18), None),   # 43 days: 31-60
        (4, "A", "bill", 4000, date(2026, 6, 3), date(2026, 6, 18), None),   # 12 days: 0-30
        (5, "A", "bill", 5000, date(2026, 6, 29), date(2026, 7, 14), None),  # not yet due
        (6, "A", "payment", -1500, date(2026, 6, 1), None, None),            # oldest first
    ]), as_of).row(0, named=True)
    # the payment of 15.00 clears bill 1 (10.00) and 5.00 of bill 2, oldest due date first
    assert got == {"account_id": "A", "balance": 13500, "current": 5000, "0-30": 4000,
                   "31-60": 3000, "61-90": 1500, ">90": 0}


def test_reversed_debits_do_not_age_and_day_30_is_in_0_30() -> None:
    got = aging_frame(frame([
        (1, "A", "bill", 1000, date(2026, 1, 1), date(2026, 1, 1), None),
        (2, "A", "reversal", -1000, date(2026, 1, 5), None, 1),
        (3, "A", "bill", 700, date(2026, 1, 1), date(2026, 1, 1), None),
    ]), date(2026, 1, 31)).row(0, named=True)
    assert (got["balance"], got["0-30"], got["31-60"]) == (700, 700, 0)


entries = st.lists(
    st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(["bill", "late_fee", "payment"]),
              st.integers(1, 10**7), st.integers(0, 400)),
    min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(entries, st.integers(0, 500))
def test_open_debits_sum_to_the_positive_balance(rows: list[tuple[str, str, int, int]],
                                                 as_of_days: int) -> None:
    start = date(2025, 1, 1)
    data = []
    for i, (acct, kind, amount, day) in enumerate(rows, start=1):
        signed = -amount if kind == "payment" else amount
        d = start + timedelta(days=day)
        data.append((i, acct, kind, signed, d, d + timedelta(days=15) if signed > 0 else None,
                     None))
    as_of = start + timedelta(days=as_of_days)
    got = aging_frame(frame(data), as_of)
    for r in got.iter_rows(named=True):
        opened = sum(r[b] for b in AGING_BUCKETS)
        assert opened == max(r["balance"], 0)
        assert all(r[b] >= 0 for b in AGING_BUCKETS)
    posted = {a for (_, a, _, _, d, _, _) in data if d <= as_of}
    assert set(got["account_id"].to_list()) == posted
