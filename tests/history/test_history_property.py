"""Property: whatever history a legacy file brings (rows in any order, payments before, between
and after bills, larger or smaller than them, naming a bill or not), importing it leaves every
ledger invariant intact, the exports add up, and each bill is paid exactly as a small reference
model of the rules says (time order; named bill first; oldest due first; credit meets each bill
at its issue)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dianfei.core.clock import BUSINESS_TZ
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.metering.imports import import_file
from dianfei.payments import service as payments_service
from dianfei.reporting.exports import bills_frame, payments_frame
from tests.history.conftest import (
    BILLS_HEADER,
    CLOCK,
    PAYMENTS_HEADER,
    bills,
    counts,
    payments,
    write,
)

_serial = itertools.count(1)
START = date(2024, 1, 1)

BILL = st.tuples(st.integers(0, 60_000), st.integers(0, 30))  # fen, due days after issue
PAYMENT = st.tuples(st.integers(0, 400), st.integers(0, 23), st.integers(1, 80_000),
                    st.one_of(st.none(), st.integers(0, 5)))  # day, hour, fen, named bill


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def model(bill_rows: list[tuple[str, date, date, int]],
          pay_rows: list[tuple[str, datetime, int, str | None]]) -> tuple[dict[str, int], int]:
    """What each bill is paid and the credit left, by the rules in docs/history-import.md."""
    issue_at = {b: datetime.combine(d, datetime.min.time(), BUSINESS_TZ) for b, d, _, _ in bill_rows}
    due = {b: (d, b) for b, _, d, _ in bill_rows}
    open_: dict[str, int] = {}
    paid = {b: 0 for b, _, _, _ in bill_rows}
    credit = 0
    pending = {b: a for b, _, _, a in bill_rows}
    events = sorted([(issue_at[b], 0, b, None) for b in pending]
                    + [(at, 1, pid, (fen, named)) for pid, at, fen, named in pay_rows],
                    key=lambda e: (e[0], e[1], e[2]))

    def admit(b: str) -> None:
        nonlocal credit
        open_[b] = pending.pop(b)
        credit = spend(credit, sorted(open_, key=lambda k: due[k]))

    def spend(money: int, order: list[str]) -> int:
        for b in order:
            take = min(money, open_[b])
            open_[b] -= take
            paid[b] += take
            money -= take
        return money

    for _, kind, key, what in events:
        if kind == 0:
            if key in pending:
                admit(key)
            continue
        fen, named = what
        if named is not None and named in pending:
            admit(named)
        first = [named] if named is not None else []
        rest = sorted((b for b in open_ if b != named), key=lambda k: due[k])
        credit += spend(fen, first + rest)
    return paid, credit


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(bill_specs=st.lists(BILL, min_size=1, max_size=5),
       pay_specs=st.lists(PAYMENT, max_size=7), data=st.data())
def test_imported_history_keeps_the_ledger_sound(db: Database, tmp_path: Path,
                                                 bill_specs: list[tuple[int, int]],
                                                 pay_specs: list[tuple[int, int, int, int | None]],
                                                 data: st.DataObject) -> None:
    n = next(_serial)
    cust = f"X{n:05d}"
    import_file(db, "customers", write(tmp_path, f"c{n}.csv", (
        "customer_id,name,customer_class,region,address,phone,tariff_id,low_income,protected,"
        f"payment_mode,opened_on\n{cust},某,residential,R,,,cn-zj-residential,0,0,postpaid,"
        "2020-01-01\n")), clock=CLOCK)
    bill_rows = []
    for i, (fen, due_days) in enumerate(bill_specs):
        month = START.replace(year=START.year + i // 12, month=i % 12 + 1)
        issued = month + timedelta(days=31)
        bill_rows.append((f"{cust}-B{i}", issued, issued + timedelta(days=due_days), fen))
    pay_rows = []
    for j, (day, hour, fen, named) in enumerate(pay_specs):
        at = datetime.combine(START + timedelta(days=day), datetime.min.time(),
                              BUSINESS_TZ) + timedelta(hours=hour)
        ref = bill_rows[named % len(bill_rows)][0] if named is not None else None
        pay_rows.append((f"{cust}-P{j}", at, fen, ref))
    bill_lines = [f"{b},{cust},{d.year}-{d.month:02d},{d},{due},{yuan(a)},1"
                  for b, d, due, a in bill_rows]
    # periods must differ: each bill is for its own month (issued the month after)
    bill_lines = [line.replace(f",{d.year}-{d.month:02d},", f",{p},")
                  for line, (_, d, _, _), p in zip(
                      bill_lines, bill_rows,
                      [f"{2024 + i // 12}-{i % 12 + 1:02d}" for i in range(len(bill_rows))],
                      strict=True)]
    pay_lines = [f"{p},{cust},{at.astimezone(UTC).isoformat()},{yuan(fen)},bank,{ref or ''}"
                 for p, at, fen, ref in pay_rows]
    bill_lines = data.draw(st.permutations(bill_lines))
    pay_lines = data.draw(st.permutations(pay_lines))
    b = write(tmp_path, f"b{n}.csv", "\n".join([BILLS_HEADER, *bill_lines]) + "\n")
    p = write(tmp_path, f"p{n}.csv", "\n".join([PAYMENTS_HEADER, *pay_lines]) + "\n")
    assert counts(bills(db, b)) == (len(bill_rows), 0, 0)
    assert counts(payments(db, p)) == (len(pay_rows), 0, 0)

    with db.engine.connect() as conn:
        assert ledger.check(conn) == []
        assert payments_service.check(conn) == []
        balance = ledger.balances(conn, [cust])[cust]
    expected, credit = model(bill_rows, pay_rows)
    exported = bills_frame(db, None).filter(pl.col("customer_id") == cust)
    got = {r["bill_id"]: r["paid_amount"] for r in exported.iter_rows(named=True)}
    assert got == {b: yuan(v) for b, v in expected.items()}
    billed = sum(a for _, _, _, a in bill_rows)
    received = sum(fen for _, _, fen, _ in pay_rows)
    assert balance == billed - received
    assert -min(balance, 0) == credit or balance > 0
    # export payments: allocations of each payment add up to it
    allocs = payments_frame(db, None).filter(pl.col("customer_id") == cust)
    sums = allocs.group_by("payment_id").agg(
        pl.col("amount").str.replace(".", "", literal=True).cast(pl.Int64).sum())
    assert dict(sums.rows()) == {pid: fen for pid, _, fen, _ in pay_rows}
