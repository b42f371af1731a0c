"""Allocation rules: the scalar and columnar allocators agree, and every fen is accounted for."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.payments.allocation import OpenItem, allocate, allocate_frame

D0 = date(2026, 1, 15)


def item(ref: str, kind: str, days: int, fen: int) -> OpenItem:
    return OpenItem(reference=ref, item_kind=kind, bill_id=ref.split(":")[1] if ":" in ref else ref,
                    due_on=D0 + timedelta(days=days), open_amount=fen)


def test_oldest_first_pays_the_oldest_bill_before_its_late_fee() -> None:
    items = [item("B2", "bill", 30, 5000), item("LF:B1:2026-01-20", "late_fee", 5, 100),
             item("B1", "bill", 0, 8000)]
    parts, credit = allocate(8050, items)
    assert [(i.reference, fen) for i, fen in parts] == [("B1", 8000), ("LF:B1:2026-01-20", 50)]
    assert credit == 0


def test_fees_first_settles_every_late_fee_before_any_bill() -> None:
    items = [item("B1", "bill", 0, 8000), item("LF:B1:2026-01-20", "late_fee", 5, 100)]
    parts, credit = allocate(150, items, "fees_first")
    assert [(i.reference, fen) for i, fen in parts] == [("LF:B1:2026-01-20", 100), ("B1", 50)]
    assert credit == 0


def test_overpayment_is_credit_and_nothing_open_means_all_credit() -> None:
    assert allocate(10000, [item("B1", "bill", 0, 8000)])[1] == 2000
    assert allocate(500, []) == ([], 500)


items_st = st.lists(st.tuples(st.sampled_from(["bill", "late_fee"]), st.integers(0, 90),
                              st.integers(1, 50_000)), max_size=6)


@settings(max_examples=150, deadline=None)
@given(accounts=st.lists(st.tuples(items_st, st.lists(st.integers(1, 60_000), max_size=4)),
                         min_size=1, max_size=4),
       order=st.sampled_from(["oldest_first", "fees_first"]))
def test_columnar_allocation_equals_scalar_one_payment_at_a_time(
        accounts: list[tuple[list[tuple[str, int, int]], list[int]]], order: str) -> None:
    item_rows, source_rows, expected = [], [], []
    for a, (its, pays) in enumerate(accounts):
        acct = f"A{a}"
        objs = [item(f"{'LF:' if k == 'late_fee' else ''}B{a}x{j}{':d' if k == 'late_fee' else ''}",
                     k, d, fen) for j, (k, d, fen) in enumerate(its)]
        item_rows += [{"account_id": acct, "reference": o.reference, "item_kind": o.item_kind,
                       "bill_id": o.bill_id, "due_on": o.due_on, "open_amount": o.open_amount}
                      for o in objs]
        open_now = {o.reference: o.open_amount for o in objs}
        for s, fen in enumerate(pays):
            source_rows.append({"account_id": acct, "source_id": f"P{a}-{s}", "amount": fen, "seq": s})
            current = [OpenItem(o.reference, o.item_kind, o.bill_id, o.due_on, open_now[o.reference])
                       for o in objs]
            parts, credit = allocate(fen, current, order)
            for o, take in parts:
                open_now[o.reference] -= take
                expected.append((f"P{a}-{s}", o.reference, take))
            if credit:
                expected.append((f"P{a}-{s}", None, credit))
    items_df = pl.DataFrame(item_rows, schema={"account_id": pl.String, "reference": pl.String,
                                               "item_kind": pl.String, "bill_id": pl.String,
                                               "due_on": pl.Date, "open_amount": pl.Int64})
    sources_df = pl.DataFrame(source_rows, schema={"account_id": pl.String, "source_id": pl.String,
                                                   "amount": pl.Int64, "seq": pl.Int64})
    parts_df, left_df = allocate_frame(sources_df, items_df, order)
    got = [(r["source_id"], r["reference"], r["amount"]) for r in parts_df.iter_rows(named=True)]
    got += [(r["source_id"], None, r["amount"]) for r in left_df.iter_rows(named=True)]
    assert sorted(got, key=str) == sorted(expected, key=str)
    # every fen of every source is accounted for exactly once
    assert sum(a for _, _, a in got) == sum(r["amount"] for r in source_rows)
