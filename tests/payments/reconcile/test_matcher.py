"""The pure matcher: exact classes, and every line and payment in exactly one class."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.payments.reconcile import LEDGER_SCHEMA, discrepancies, match, totals
from dianfei.payments.statements import STATEMENT_SCHEMA

DAY = date(2024, 3, 5)
T = datetime(2024, 3, 5, 2, tzinfo=UTC)


def stmt(rows: list[tuple[str, int, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "channel": "alipay",
                "transaction_id": t,
                "order_no": "O" + t,
                "account_id": None,
                "amount": a,
                "kind": k,
                "paid_at": T,
                "fee": 0,
                "line": i + 2,
                "refund_id": "R" + t if k == "refund" else None,
            }
            for i, (t, a, k) in enumerate(rows)
        ],
        schema=STATEMENT_SCHEMA,
    )


def ledger(rows: list[tuple[str, int, date, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "payment_id": "P" + t,
                "transaction_id": t,
                "order_no": "O" + t,
                "account_id": "A",
                "amount": a,
                "business_date": d,
                "status": s,
                "source": "callback",
            }
            for t, a, d, s in rows
        ],
        schema=LEDGER_SCHEMA,
    )


def test_each_discrepancy_class_exactly() -> None:
    s = stmt(
        [
            ("T1", 100, "payment"),
            ("T2", 200, "payment"),
            ("T3", 300, "payment"),
            ("T1", 100, "payment"),
            ("T4", 50, "refund"),
            ("T5", 70, "refund"),
            ("T6", 10, "payment"),
        ]
    )
    led = ledger(
        [
            ("T1", 100, DAY, "posted"),
            ("T3", 301, DAY, "posted"),
            ("T4", 50, DAY, "refunded"),
            ("T5", 70, DAY, "posted"),
            ("T9", 900, DAY, "posted"),
            ("T6", 10, DAY - timedelta(days=1), "posted"),
            ("T8", 5, DAY + timedelta(days=1), "posted"),
        ]
    )
    m = match(s, led, DAY)
    assert m.matched["transaction_id"].to_list() == ["T1", "T6"]  # T6 booked the day before still matches
    assert m.missing_in_ledger.select("transaction_id", "amount", "line").rows() == [("T2", 200, 3)]
    assert m.amount_mismatch.select("transaction_id", "amount", "ledger_amount").rows() == [("T3", 300, 301)]
    assert m.duplicates.select("transaction_id", "line", "first_line").rows() == [("T1", 5, 2)]
    # T4 and T5 are payments the statement does not list as payments that day: short (短款)
    assert m.missing_in_statement["transaction_id"].to_list() == ["T4", "T5", "T9"]  # not T8: another day
    assert m.refunds.select("transaction_id", "ledger_status").rows() == [
        ("T4", "refunded"),
        ("T5", "posted"),
    ]
    work = discrepancies(m)
    assert work.select("kind", "ref").sort("kind", "ref").rows() == [
        ("amount_mismatch", "T3"),
        ("duplicate", "T1#5"),
        ("missing_in_ledger", "T2"),
        ("missing_in_statement", "T4"),
        ("missing_in_statement", "T5"),
        ("missing_in_statement", "T9"),
        ("refund_not_in_ledger", "T5#RT5"),
    ]
    assert totals(m)["matched"] == {"count": 2, "amount": 110}


def test_an_empty_statement_leaves_every_payment_of_the_day_missing_in_statement() -> None:
    m = match(stmt([]), ledger([("T1", 100, DAY, "posted")]), DAY)
    assert m.missing_in_statement["transaction_id"].to_list() == ["T1"] and m.matched.height == 0


ids = st.sampled_from([f"T{i}" for i in range(12)])


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(
        st.tuples(ids, st.integers(1, 5), st.sampled_from(["payment", "payment", "refund"])), max_size=25
    ),
    posted=st.dictionaries(ids, st.tuples(st.integers(1, 5), st.integers(-1, 1)), max_size=12),
)
def test_every_line_and_every_payment_lands_in_exactly_one_class(
    lines: list[tuple[str, int, str]], posted: dict[str, tuple[int, int]]
) -> None:
    s = stmt(lines)
    led = ledger([(t, a, DAY + timedelta(days=d), "posted") for t, (a, d) in posted.items()])
    m = match(s, led, DAY)
    statement_side = [m.matched, m.missing_in_ledger, m.amount_mismatch, m.duplicates, m.refunds]
    seen = sorted(x for f in statement_side for x in f["line"].to_list())
    assert seen == sorted(s["line"].to_list())
    primary_ids = set(s.filter(pl.col("kind") == "payment")["transaction_id"].to_list())
    expected = {t for t, (_, d) in posted.items() if d == 0 or t in primary_ids}
    ledger_side = [
        x
        for f in (m.matched, m.amount_mismatch, m.missing_in_statement)
        for x in f["transaction_id"].to_list()
    ]
    assert sorted(ledger_side) == sorted(expected)
    assert m.missing_in_ledger["transaction_id"].is_in(list(posted)).sum() == 0
