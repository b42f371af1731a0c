"""One posting core, every payment path: a differential test on a real database.

Hypothesis draws a scenario for a few accounts — bills posted in bulk (``ledger.post_frame``, as the
bill run does) or one by one (``ledger.post_entry``), late fees (either way, ``LF:{bill}:{day}``),
groups of payments, cancelled bills and waived fees (``ledger.reverse_entry``), rebills, refunds
(``payments.reverse_payment``) and an allocation order — and runs it on a fresh database for each
payment path in turn:

- ``one_by_one``: ``post_channel_payment``, one session per payment (counter, one-by-one callbacks);
- ``batch``: ``fastpath.post_batch``, every payment of a step in one batch (callbacks in groups),
  each paying a payment order made with ``create_order``;
- ``frame``: ``post_payments_frame``, every payment of a step in one frame (bank and agent files,
  statements, the demo).

Everything but the payments is posted the same way on every database, and the payments carry the
same channel and transaction ids (so the same payment ids) with strictly increasing ``paid_at`` (the
frame path posts in the order the customers paid). The ledger, the open items, the net clearings per
(payment, target), the payments and the events must then be identical, and both invariant checks
(``ledger.service.check``, ``payments.service.check``) empty, on every database.

The databases live for the whole test (creating one costs seconds on PostgreSQL): each example
gets its own accounts, and the comparison reads only those.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, insert, select, text, update

from dianfei.billing.models import Bill, BillLine
from dianfei.core.clock import BUSINESS_TZ, FixedClock, business_date
from dianfei.core.crypto import PiiCipher
from dianfei.core.settings import load_settings
from dianfei.customers.service import load_population
from dianfei.db.engine import Database, open_database
from dianfei.ledger import service as ledger
from dianfei.ledger.models import LedgerEntry
from dianfei.payments import fastpath, service
from dianfei.payments.channels.base import ChannelPayment, Verified
from tests.conftest import fresh_database_env

START = datetime(2026, 1, 5, 9, 0, tzinfo=BUSINESS_TZ)
CHANNEL = "alipay"
_examples = itertools.count(1)
#: examples per run (a longer hunt: DIANFEI_POSTING_EXAMPLES=500)
EXAMPLES = int(os.environ.get("DIANFEI_POSTING_EXAMPLES", "20"))


# -- the scenario, as data (the same on every database) -------------------------------------------


@dataclass(frozen=True)
class BillRow:
    account_id: str
    bill_id: str
    period: str
    version: int
    amount: int
    due_on: date


@dataclass(frozen=True)
class Bills:
    bulk: bool
    rows: tuple[BillRow, ...]


@dataclass(frozen=True)
class Fee:
    bulk: bool
    account_id: str
    reference: str
    amount: int
    day: date


@dataclass(frozen=True)
class Pay:
    account_id: str
    txn: str
    amount: int
    paid_at: datetime


@dataclass(frozen=True)
class Pays:
    payments: tuple[Pay, ...]


@dataclass(frozen=True)
class Cancel:
    kind: str  # bill (cancelled) | late_fee (waived)
    reference: str


@dataclass(frozen=True)
class Refund:
    txn: str


Step = Bills | Fee | Pays | Cancel | Refund


@dataclass
class Scenario:
    accounts: tuple[str, ...]
    order: str
    steps: list[Step] = field(default_factory=list)


def _period(n: int) -> str:
    return f"{2025 + (n - 1) // 12}-{(n - 1) % 12 + 1:02d}"


def compile_scenario(prefix: str, n_accounts: int, order: str,
                     raw: list[tuple[Any, ...]]) -> Scenario:
    """Turn drawn abstract steps into concrete ones: picks become existing bills, fees and
    payments; steps with nothing to act on are dropped."""
    accounts = tuple(f"{prefix}{chr(ord('A') + i)}" for i in range(n_accounts))
    sc = Scenario(accounts, order)
    periods: dict[str, int] = {a: 0 for a in accounts}
    live_bill: dict[tuple[str, str], BillRow] = {}       # (account, period) → live bill
    cancelled_periods: dict[str, list[str]] = {a: [] for a in accounts}
    versions: dict[tuple[str, str], int] = {}
    debits: dict[str, tuple[str, str]] = {}              # live debit reference → (kind, account)
    fees: set[str] = set()
    live_pays: list[str] = []
    n_txn = 0
    clock_paid = START - timedelta(days=1)
    for step in raw:
        kind = step[0]
        if kind == "bills":
            _, bulk, wanted = step
            rows: list[BillRow] = []
            seen: set[str] = set()
            for acct_i, amount, due_days, rebill in wanted:
                a = accounts[acct_i % n_accounts]
                if a in seen:
                    continue
                seen.add(a)
                free = [p for p in cancelled_periods[a] if (a, p) not in live_bill]
                if rebill and free:
                    period = free[0]
                else:
                    periods[a] += 1
                    period = _period(periods[a])
                versions[(a, period)] = version = versions.get((a, period), 0) + 1
                row = BillRow(a, f"{a}-{period.replace('-', '')}-{version}", period, version,
                              amount, date(2026, 1, 18) + timedelta(days=due_days))
                live_bill[(a, period)] = row
                debits[row.bill_id] = ("bill", a)
                rows.append(row)
            sc.steps.append(Bills(bulk, tuple(rows)))
        elif kind == "fee":
            _, bulk, pick, days, amount = step
            bills = sorted(live_bill.values(), key=lambda b: b.bill_id)
            if not bills:
                continue
            bill = bills[pick % len(bills)]
            day = bill.due_on + timedelta(days=days)
            ref = f"LF:{bill.bill_id}:{day.isoformat()}"
            if ref in fees:
                continue
            fees.add(ref)
            debits[ref] = ("late_fee", bill.account_id)
            sc.steps.append(Fee(bulk, bill.account_id, ref, amount, day))
        elif kind == "pays":
            group = []
            for acct_i, amount in step[1]:
                n_txn += 1
                clock_paid += timedelta(minutes=7)
                txn = f"{prefix}-T{n_txn:03d}"
                group.append(Pay(accounts[acct_i % n_accounts], txn, amount, clock_paid))
                live_pays.append(txn)
            sc.steps.append(Pays(tuple(group)))
        elif kind == "cancel":
            if not debits:
                continue
            refs = sorted(debits)
            ref = refs[step[1] % len(refs)]
            dkind, a = debits.pop(ref)
            sc.steps.append(Cancel(dkind, ref))
            if dkind == "bill":
                row = next(b for b in live_bill.values() if b.bill_id == ref)
                del live_bill[(a, row.period)]
                _, _, rebill_amount, bulk = step
                if rebill_amount:  # billing.rebill: the same period again, a new version
                    versions[(a, row.period)] = version = versions[(a, row.period)] + 1
                    new = BillRow(a, f"{a}-{row.period.replace('-', '')}-{version}", row.period,
                                  version, rebill_amount, row.due_on)
                    live_bill[(a, row.period)] = new
                    debits[new.bill_id] = ("bill", a)
                    sc.steps.append(Bills(bulk, (new,)))
                else:
                    cancelled_periods[a].append(row.period)
        else:  # refund
            if not live_pays:
                continue
            sc.steps.append(Refund(live_pays.pop(step[1] % len(live_pays))))
    return sc


bills_step = st.tuples(
    st.just("bills"), st.booleans(),
    st.lists(st.tuples(st.integers(0, 2), st.integers(1, 15_000), st.integers(0, 90),
                       st.booleans()), min_size=1, max_size=3))
fee_step = st.tuples(st.just("fee"), st.booleans(), st.integers(0, 20), st.integers(1, 40),
                     st.integers(1, 600))
pays_step = st.tuples(st.just("pays"), st.lists(
    st.tuples(st.integers(0, 2), st.integers(1, 20_000)), min_size=1, max_size=4))
cancel_step = st.tuples(st.just("cancel"), st.integers(0, 20),
                        st.one_of(st.just(0), st.integers(1, 15_000)), st.booleans())
refund_step = st.tuples(st.just("refund"), st.integers(0, 20))
raw_steps = st.lists(st.one_of(bills_step, bills_step, fee_step, pays_step, pays_step, cancel_step,
                               refund_step), min_size=6, max_size=14)


# -- running a scenario on a database ---------------------------------------------------------------


def add_accounts(db: Database, ids: tuple[str, ...], tag: str) -> None:
    customers = pl.DataFrame([{
        "customer_id": a, "name": f"用户{a}", "customer_class": "residential", "region_id": tag,
        "station_id": tag, "collector_id": tag, "address": "测试路1号", "phone": "13800138000",
        "id_number": None, "tariff_id": "cn-zj-residential", "low_income": False,
        "protected": False, "payment_mode": "postpaid", "opened_on": date(2020, 1, 1),
        "capacity_kva": None, "demand_basis": None} for a in ids],
        schema_overrides={"id_number": pl.String, "capacity_kva": pl.Int64,
                          "demand_basis": pl.String})
    meters = pl.DataFrame([{"meter_id": f"M{a}", "customer_id": a, "multiplier": 1, "digits": 6,
                            "installed_on": date(2020, 1, 1), "registers": "total"} for a in ids])
    with db.engine.begin() as conn:
        load_population(
            conn, PiiCipher(b"k" * 32),
            regions=pl.DataFrame({"region_id": [tag], "name": ["城关镇"]}),
            stations=pl.DataFrame({"station_id": [tag], "region_id": [tag], "name": ["供电所"]}),
            collectors=pl.DataFrame({"collector_id": [tag], "name": ["张三"], "station_id": [tag]}),
            customers=customers, meters=meters)


def _bill_rows(rows: tuple[BillRow, ...], issued_on: date) -> tuple[list[dict[str, Any]],
                                                                   list[dict[str, Any]]]:
    bills = [{"bill_id": b.bill_id, "account_id": b.account_id, "customer_id": b.account_id,
              "period": b.period, "version": b.version, "issued_on": issued_on,
              "due_on": b.due_on, "amount": b.amount, "kwh": b.amount * 2,
              "tariff_id": "cn-zj-residential", "tariff_version": "2024-01-01",
              "estimated": False, "multiplier": 1, "status": "issued"} for b in rows]
    lines = [{"bill_id": b.bill_id, "line_no": 1, "code": "energy", "description": "电量电费",
              "quantity": b.amount * 2, "unit": "kWh", "unit_price": 5000, "amount": b.amount}
             for b in rows]
    return bills, lines


def post_bills(db: Database, step: Bills, clock: FixedClock, order: str) -> None:
    now = clock.now()
    bills, lines = _bill_rows(step.rows, business_date(now))
    if step.bulk:  # as the bill run does: bills, lines and their debits in one transaction
        with db.engine.begin() as conn:
            conn.execute(insert(Bill), bills)
            conn.execute(insert(BillLine), lines)
            ledger.post_frame(conn, pl.DataFrame({
                "account_id": [b.account_id for b in step.rows],
                "customer_id": [b.account_id for b in step.rows],
                "kind": ["bill"] * len(step.rows),
                "amount": [b.amount for b in step.rows],
                "posted_at": [now.astimezone(UTC).replace(tzinfo=None)] * len(step.rows),
                "business_date": [business_date(now)] * len(step.rows),
                "due_on": [b.due_on for b in step.rows],
                "reference": [b.bill_id for b in step.rows]}), order=order)
        return
    for b, bill, line in zip(step.rows, bills, lines, strict=True):
        with db.session() as s:
            s.execute(insert(Bill), [bill])
            s.execute(insert(BillLine), [line])
            ledger.post_entry(s, clock=clock, account_id=b.account_id, customer_id=b.account_id,
                              kind="bill", amount=b.amount, reference=b.bill_id, due_on=b.due_on,
                              order=order)


def post_fee(db: Database, step: Fee, clock: FixedClock, order: str) -> None:
    now = clock.now()
    if step.bulk:  # as collections accrues them
        with db.engine.begin() as conn:
            ledger.post_frame(conn, pl.DataFrame({
                "account_id": [step.account_id], "customer_id": [step.account_id],
                "kind": ["late_fee"], "amount": [step.amount],
                "posted_at": [now.astimezone(UTC).replace(tzinfo=None)],
                "business_date": [business_date(now)], "due_on": [step.day],
                "reference": [step.reference]}), order=order)
        return
    with db.session() as s:
        ledger.post_entry(s, clock=clock, account_id=step.account_id, customer_id=step.account_id,
                          kind="late_fee", amount=step.amount, reference=step.reference,
                          due_on=step.day, order=order)


def cancel(db: Database, step: Cancel, clock: FixedClock, order: str) -> None:
    with db.session() as s:
        entry_id = s.execute(select(LedgerEntry.entry_id).where(
            LedgerEntry.kind == step.kind, LedgerEntry.reference == step.reference)).scalar_one()
        ledger.reverse_entry(s, clock=clock, entry_id=entry_id,
                             reason="meter misread" if step.kind == "bill" else "fee waived",
                             order=order)
        if step.kind == "bill":  # as billing.cancel_bill does
            s.execute(update(Bill).where(Bill.bill_id == step.reference).values(
                status="cancelled", cancelled_at=clock.now(), cancel_reason="meter misread"))


def refund(db: Database, step: Refund, clock: FixedClock, order: str) -> None:
    with db.session() as s:
        service.reverse_payment(s, service.payment_id_for(CHANNEL, step.txn),
                                reason="customer refund", clock=clock, order=order)


def _channel_payment(p: Pay, order_no: str | None = None) -> ChannelPayment:
    return ChannelPayment(channel=CHANNEL, transaction_id=p.txn, amount=p.amount,
                          paid_at=p.paid_at, order_no=order_no,
                          account_id=None if order_no else p.account_id)


def pay_one_by_one(db: Database, step: Pays, clock: FixedClock, order: str) -> None:
    for p in step.payments:
        with db.session() as s:
            res = service.post_channel_payment(s, _channel_payment(p), clock=clock,
                                               source="counter", order=order)
        assert res.created


def pay_batch(db: Database, step: Pays, clock: FixedClock, order: str) -> None:
    with db.session() as s:
        nos = [service.create_order(s, account_id=p.account_id, amount=p.amount, channel=CHANNEL,
                                    clock=clock).order_no for p in step.payments]
    batch = [fastpath.Incoming(CHANNEL, {"Content-Type": "application/x-www-form-urlencoded"},
                               f"trade_no={p.txn}".encode(),
                               Verified(_channel_payment(p, no), "TRADE_SUCCESS"), clock.now())
             for p, no in zip(step.payments, nos, strict=True)]
    with db.engine.connect() as conn, conn.begin():
        got = fastpath.post_batch(conn, batch, clock=clock, cipher=db.pii_cipher, source="callback",
                                  order=order)
    assert [r.verdict for r in got] == ["posted"] * len(batch), got


def pay_frame(db: Database, step: Pays, clock: FixedClock, order: str) -> None:
    frame = pl.DataFrame({
        "channel": [CHANNEL] * len(step.payments),
        "transaction_id": [p.txn for p in step.payments],
        "account_id": [p.account_id for p in step.payments],
        "amount": [p.amount for p in step.payments],
        "paid_at": [p.paid_at.astimezone(UTC).replace(tzinfo=None) for p in step.payments]})
    with db.engine.begin() as conn:
        n = service.post_payments_frame(conn, frame, clock=clock, source="bank_file", order=order)
    assert n == len(step.payments)


PayPath = Callable[[Database, Pays, FixedClock, str], None]
PATHS: dict[str, PayPath] = {"one_by_one": pay_one_by_one, "batch": pay_batch,
                             "frame": pay_frame}


def run(db: Database, sc: Scenario, pay: PayPath, tag: str) -> None:
    add_accounts(db, sc.accounts, tag)
    for i, step in enumerate(sc.steps):
        clock = FixedClock(START + timedelta(hours=i))
        if isinstance(step, Bills):
            post_bills(db, step, clock, sc.order)
        elif isinstance(step, Fee):
            post_fee(db, step, clock, sc.order)
        elif isinstance(step, Pays):
            pay(db, step, clock, sc.order)
        elif isinstance(step, Cancel):
            cancel(db, step, clock, sc.order)
        else:
            refund(db, step, clock, sc.order)


# -- what must be identical ---------------------------------------------------------------------


def snapshot(db: Database, accounts: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]]:
    """The posting state of these accounts, with nothing that depends on the path (entry ids are
    replaced by what the entry is, payload and order numbers are left out)."""
    def rows(sql: str) -> list[tuple[Any, ...]]:
        q = text(sql).bindparams(bindparam("a", expanding=True))
        return [tuple(r) for r in conn.execute(q, {"a": list(accounts)})]

    with db.engine.connect() as conn:
        return {
            "ledger": rows(
                "SELECT e.kind, e.account_id, e.amount, CASE WHEN o.entry_id IS NULL "
                "THEN e.reference ELSE 'reversal of ' || o.kind || ' ' || o.reference END, "
                "e.due_on, e.business_date, e.reason FROM ledger_entries e "
                "LEFT JOIN ledger_entries o ON o.entry_id = e.reverses_entry_id "
                "WHERE e.account_id IN :a ORDER BY e.entry_id"),
            "open_items": rows(
                "SELECT reference, account_id, item_kind, bill_id, due_on, amount, open_amount "
                "FROM open_items WHERE account_id IN :a ORDER BY reference"),
            "net_clearings": rows(
                "SELECT payment_id, allocated_to, item_reference, bill_id, "
                "CAST(SUM(amount) AS BIGINT) FROM payment_allocations WHERE account_id IN :a "
                "GROUP BY payment_id, allocated_to, item_reference, bill_id "
                "HAVING SUM(amount) <> 0 ORDER BY payment_id, allocated_to, item_reference"),
            # every clearing row, in the order written: the same plan on every path
            "clearings": rows(
                "SELECT payment_id, allocated_to, item_reference, amount, allocated_at "
                "FROM payment_allocations WHERE account_id IN :a ORDER BY id"),
            "payments": rows(
                "SELECT payment_id, transaction_id, account_id, amount, status FROM payments "
                "WHERE account_id IN :a ORDER BY payment_id"),
            "events": rows(
                "SELECT type, key, account_id, amount, balance_after FROM events "
                "WHERE account_id IN :a ORDER BY event_id"),
        }


def checks(db: Database) -> dict[str, int]:
    """Every broken invariant of both checks, with how many records break it."""
    with db.engine.connect() as conn:
        return ({v.invariant: v.count for v in ledger.check(conn)}
                | {name: n for name, n, _ in service.check(conn)})


@pytest.fixture
def path_dbs(db: Database, tmp_path: Path) -> Iterator[dict[str, Database]]:
    """A database per payment path: the ``db`` fixture's and two more of the same backend."""
    with fresh_database_env(tmp_path) as env_b, fresh_database_env(tmp_path) as env_c:
        batch, frame = open_database(load_settings(env_b)), open_database(load_settings(env_c))
        try:
            yield {"one_by_one": db, "batch": batch, "frame": frame}
        finally:
            batch.engine.dispose()
            frame.engine.dispose()


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(raw=raw_steps, n_accounts=st.integers(1, 3),
       order=st.sampled_from(("oldest_first", "fees_first")))
def test_every_payment_path_posts_the_same_books(
        path_dbs: dict[str, Database], raw: list[tuple[Any, ...]], n_accounts: int,
        order: str) -> None:
    n = next(_examples)
    sc = compile_scenario(f"X{n:03d}", n_accounts, order, raw)
    got = {}
    for name, pay in PATHS.items():
        # the databases outlive an example: a failing one must not fail the next ones (shrinking)
        before = checks(path_dbs[name])
        run(path_dbs[name], sc, pay, f"R{n:03d}")
        got[name] = snapshot(path_dbs[name], sc.accounts)
        assert checks(path_dbs[name]) == before, name
    for part in got["one_by_one"]:
        assert got["batch"][part] == got["one_by_one"][part], part
        assert got["frame"][part] == got["one_by_one"][part], part
    # the books are sound on their own too: open items add up to the ledger per account
    for acct in sc.accounts:
        items = sum(r[6] for r in got["frame"]["open_items"] if r[1] == acct)
        assert items == sum(r[2] for r in got["frame"]["ledger"] if r[1] == acct)


# -- found while writing the differential test ---------------------------------------------------


def test_a_zero_bill_posted_one_by_one_has_its_open_item_as_in_bulk(db: Database) -> None:
    # given: two accounts, each with a bill of 0.00 (nothing used, no fixed charge)
    add_accounts(db, ("Z1", "Z2"), "RZ")
    clock = FixedClock(START)
    row1 = BillRow("Z1", "Z1-202501-1", "2025-01", 1, 0, date(2025, 2, 18))
    row2 = BillRow("Z2", "Z2-202501-1", "2025-01", 1, 0, date(2025, 2, 18))
    # when: one is posted by the bill run's bulk path, the other by post_entry
    post_bills(db, Bills(True, (row1,)), clock, "oldest_first")
    post_bills(db, Bills(False, (row2,)), clock, "oldest_first")
    # then: both debits have their (zero) open item, and the ledger check holds
    got = snapshot(db, ("Z1", "Z2"))["open_items"]
    assert [(r[0], r[6]) for r in got] == [("Z1-202501-1", 0), ("Z2-202501-1", 0)]
    assert checks(db) == {}


@pytest.mark.parametrize("kind", ["bill", "late_fee"])
def test_a_debit_that_credit_clears_in_full_keeps_its_open_item(db: Database, kind: str) -> None:
    # given: a bill of 5.00 (the bill run) and a payment of 6.00: the bill is paid, 1.00 is credit
    add_accounts(db, ("Y1",), "RY")
    clock = FixedClock(START)
    post_bills(db, Bills(True, (BillRow("Y1", "Y1-202501-1", "2025-01", 1, 500,
                                        date(2025, 2, 18)),)), clock, "oldest_first")
    pay_one_by_one(db, Pays((Pay("Y1", "Y-T1", 600, START - timedelta(hours=1)),)), clock,
                   "oldest_first")
    # when: a debit of exactly 1.00 is posted one by one (post_entry)
    if kind == "bill":
        ref = "Y1-202502-1"
        post_bills(db, Bills(False, (BillRow("Y1", ref, "2025-02", 1, 100, date(2025, 3, 18)),)),
                   clock, "oldest_first")
    else:
        ref = "LF:Y1-202501-1:2025-03-01"
        post_fee(db, Fee(False, "Y1", ref, 100, date(2025, 3, 1)), clock, "oldest_first")
    # then: the credit clears it, and its open item is on file with nothing open
    items = {r[0]: (r[2], r[5], r[6]) for r in snapshot(db, ("Y1",))["open_items"]}
    assert items.get(ref) == (kind, 100, 0)
    assert checks(db) == {}
