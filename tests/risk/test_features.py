"""As-of features: what a bill looked like on the as-of date, and nothing dated on or after it."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.risk.features import EXCLUDED, FEATURES, History, bill_states, features, targets


def _history(clearings: list[tuple[str, str, date, int]], notices: list[tuple[str, date]] = ()
             ) -> History:
    bills = pl.DataFrame({
        "bill_id": ["A-1", "A-2", "A-3", "B-1", "B-2"],
        "account_id": ["A", "A", "A", "B", "B"],
        "issued_on": [date(2026, 1, 3), date(2026, 2, 3), date(2026, 3, 3), date(2026, 1, 3),
                      date(2026, 2, 3)],
        "due_on": [date(2026, 1, 18), date(2026, 2, 18), date(2026, 3, 18), date(2026, 1, 18),
                   date(2026, 2, 18)],
        "amount": [10_000, 12_000, 8_000, 5_000, 5_000],
        "kwh": [20_000, 24_000, 16_000, 9_000, 9_500],
    })
    accounts = pl.DataFrame({"account_id": ["A", "B", "C"],
                             "customer_class": ["residential", "commercial", "residential"],
                             "region_id": ["R01", "R02", "R01"], "opened_on": [date(2020, 1, 1)] * 3,
                             "low_income": [True, False, False], "protected": [False, False, True]})
    clear = pl.DataFrame(clearings, schema={"bill_id": pl.String, "account_id": pl.String,
                                            "paid_on": pl.Date, "amount": pl.Int64}, orient="row")
    return History(bills=bills, clearings=clear.with_columns(pl.lit("alipay").alias("channel")),
                   accounts=accounts,
                   notices=pl.DataFrame(list(notices), schema={"account_id": pl.String,
                                                               "sent_on": pl.Date}, orient="row")
                   ).checked()


CLEARINGS = [
    ("A-1", "A", date(2026, 1, 10), 10_000),   # on time
    ("A-2", "A", date(2026, 2, 18), 5_000),    # part by the due date …
    ("A-2", "A", date(2026, 3, 1), 7_000),     # … the rest 11 days late
    ("B-1", "B", date(2026, 1, 30), 5_000),    # 12 days late
]


def test_a_bill_as_it_stood_on_the_as_of_date() -> None:
    h = _history(CLEARINGS)
    s = {r["bill_id"]: r for r in bill_states(h, date(2026, 2, 25)).to_dicts()}
    # A-2 was due on 02-18 and only half paid on 02-25: late by 7 days so far, a partial payment
    assert s["A-2"]["late"] and s["A-2"]["partial"] and s["A-2"]["days_late"] == 7.0
    assert s["A-2"]["unpaid_now"] == 7_000 and s["A-2"]["paid_full_on"] is None
    assert not s["A-1"]["late"] and s["A-1"]["days_late"] == 0.0
    assert s["B-1"]["late"] and s["B-1"]["days_late"] == 12.0
    assert "A-3" not in s  # issued after the as-of date
    # a week later the rest was paid: 11 days late in all
    s = {r["bill_id"]: r for r in bill_states(h, date(2026, 3, 5)).to_dicts()}
    assert s["A-2"]["days_late"] == 11.0 and s["A-2"]["unpaid_now"] == 0


def test_account_features() -> None:
    h = _history(CLEARINGS, [("A", date(2026, 2, 20)), ("A", date(2026, 3, 20))])
    f = {r["account_id"]: r for r in features(h, date(2026, 3, 5)).to_dicts()}
    a, b, c = f["A"], f["B"], f["C"]
    assert a["n_bills"] == 3 and a["n_due"] == 2 and a["late_count"] == 1
    assert a["late_share"] == 0.5 and a["partial_count"] == 1 and a["days_late_max"] == 11.0
    assert a["notices_total"] == 1  # the notice of 03-20 is after the as-of date
    assert b["late_count"] == 2 and b["overdue_amount"] == 50.0  # B-2 unpaid, 15 days past due
    assert b["days_since_late"] == (date(2026, 3, 5) - date(2026, 2, 18)).days
    # a customer without bills is known, with nothing to go on
    assert c["n_bills"] == 0 and c["late_count"] == 0 and c["days_late_mean"] is None
    assert not set(EXCLUDED) & set(FEATURES)


def test_targets_judge_the_next_bill() -> None:
    h = _history(CLEARINGS)
    t = {r["account_id"]: r for r in targets(h, date(2026, 2, 3), date(2026, 2, 4)).to_dicts()}
    assert t["A"]["late"] and not t["A"]["late30"]  # paid in full 11 days late
    assert t["B"]["late"] and t["B"]["late30"]      # never paid
    # judged on what was known on 02-25, A-2 is late, and its +30-day outcome not yet known
    t = {r["account_id"]: r for r in targets(h, date(2026, 2, 3), date(2026, 2, 4),
                                            known_before=date(2026, 2, 25)).to_dicts()}
    assert t["A"]["late_known"] and not t["A"]["late30_known"]


@settings(max_examples=25, deadline=None)
@given(st.permutations(range(4)), st.integers(0, 60), st.integers(1, 20_000))
def test_row_order_and_later_facts_never_change_features(order: list[int], shift: int,
                                                          amount: int) -> None:
    """Dates out of order in the files change nothing; neither does a payment dated on or
    after the as-of date, whatever its amount."""
    as_of = date(2026, 2, 25)
    base = features(_history(CLEARINGS), as_of)
    later = [*[CLEARINGS[i] for i in order], ("B-2", "B", as_of + timedelta(days=shift), amount)]
    assert features(_history(later), as_of).equals(base)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "bb", "c", ""]), st.integers(-10**6, 10**6)),
                max_size=40))
def test_running_total_is_the_window_cum_sum_on_sorted_rows(rows: list[tuple[str, int]]) -> None:
    """The running sum per key of a frame sorted by key equals ``cum_sum().over(key)`` (the
    window it replaces): first row, single-row keys, negative amounts (refunds) and all."""
    from dianfei.risk.features import _running_total

    frame = pl.DataFrame({"k": [r[0] for r in rows], "amount": [r[1] for r in rows]},
                         schema={"k": pl.String, "amount": pl.Int64}).sort("k", maintain_order=True)
    got = frame.select(_running_total("amount", "k").alias("x"))["x"]
    want = frame.select(pl.col("amount").cum_sum().over("k").alias("x"))["x"]
    assert got.to_list() == want.to_list()


def test_the_channel_is_the_one_used_most_the_first_by_name_among_equals() -> None:
    h = _history([*CLEARINGS, ("A-3", "A", date(2026, 3, 10), 8_000)])
    channels = ["wechatpay", "bank", "bank", "counter", "wechatpay"]  # A: 2 × bank, 2 × wechatpay
    h = History(bills=h.bills, accounts=h.accounts, notices=h.notices,
                clearings=h.clearings.with_columns(pl.Series("channel", channels)))
    f = features(h, date(2026, 4, 1)).select("account_id", "channel", "n_channels")
    assert f.rows() == [("A", "bank", 2.0), ("B", "counter", 1.0), ("C", None, 0.0)]
    # payments with no channel recorded: known to have paid, no channel, none counted
    blind = History(bills=h.bills, accounts=h.accounts, notices=h.notices,
                    clearings=h.clearings.with_columns(pl.lit(None, pl.String).alias("channel")))
    f = features(blind, date(2026, 4, 1)).select("account_id", "channel", "n_channels",
                                                  "days_since_payment")
    assert f.rows() == [("A", None, 0.0, 22.0), ("B", None, 0.0, 61.0), ("C", None, 0.0, None)]
