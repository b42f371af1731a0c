"""``dianfei import payments``: legacy payments posted through the posting core as of when they
were paid — named bills settled, the rest by the allocation rule, overpayment as credit, never a
bill that was not yet issued — every row accounted for, re-import a no-op."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
from sqlalchemy import text

from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import service as payments_service
from dianfei.reporting.exports import bills_frame, payments_frame
from tests.history.conftest import BILLS_HEADER, PAYMENTS_HEADER, bills, counts, payments, write

BILLS = BILLS_HEADER + "\n" + "\n".join([
    "B1,H001,2025-01,2025-02-01,2025-02-16,100.00,200",
    "B2,H001,2025-02,2025-03-01,2025-03-16,80.50,150",
    "B3,H001,2025-03,2025-04-01,2025-04-16,60.00,100",
    "C1,H002,2025-01,2025-02-01,2025-02-16,50.00,90",
]) + "\n"


def paid(db: Database) -> dict[str, tuple[str, str, date | None]]:
    out = bills_frame(db, None)
    return {r["bill_id"]: (r["paid_amount"], r["status"], r["paid_in_full_on"])
            for r in out.iter_rows(named=True)}


def test_named_bill_rule_and_credit(customers: Database, tmp_path: Path) -> None:
    db = customers
    bills(db, write(tmp_path, "bills.csv", BILLS))
    # rows out of time order on purpose: posting follows paid_at, not the file
    path = write(tmp_path, "payments.csv", PAYMENTS_HEADER + "\n" + "\n".join([
        "P3,H001,2025-04-05 09:00,100.00,Counter,",      # B3 (60) then 40 credit
        "P2,H001,2025-03-10T10:00:00+08:00,30.00,alipay,B2",  # named: B2 first
        "P1,H001,2025-02-10,120.00,bank,",               # B1 100, then 20 credit → B2 on 03-01
        "Q1,H002,2025-01-15,70.00,wechatpay,C1",         # named before C1 was issued
    ]) + "\n")
    assert counts(payments(db, path)) == (4, 0, 0)
    state = paid(db)
    assert state["B1"] == ("100.00", "paid", date(2025, 2, 10))
    # 20.00 credit from P1 met B2 when B2 was issued (03-01), P2 paid 30.00 of it (30.50 open);
    # P3 (oldest first): B2's 30.50, then B3's 60.00, 9.50 credit
    assert state["B2"] == ("80.50", "paid", date(2025, 4, 5))
    assert state["B3"] == ("60.00", "paid", date(2025, 4, 5))
    assert state["C1"] == ("50.00", "paid", date(2025, 2, 1))  # paid_in_full_on ≥ issue
    with db.engine.connect() as conn:
        assert ledger.check(conn) == []
        assert payments_service.check(conn) == []
        assert ledger.balances(conn, ["H001", "H002"]) == {"H001": -950, "H002": -2000}
    rows = payments_frame(db, None).filter(pl.col("payment_id") == "P1")
    assert rows.select("paid_at", "amount", "bill_id", "allocated_to").rows() == [
        ("2025-02-10T00:00:00+08:00", "100.00", "B1", "bill"),
        ("2025-02-10T00:00:00+08:00", "20.00", None, "credit"),
        ("2025-03-01T00:00:00+08:00", "20.00", "B2", "bill"),
        ("2025-03-01T00:00:00+08:00", "-20.00", None, "credit")]
    # P2 named B2: all of it went there, although B1 was older (already paid) — and B3 not yet
    p2 = payments_frame(db, None).filter(pl.col("payment_id") == "P2")
    assert p2.select("amount", "bill_id", "allocated_to").rows() == [("30.00", "B2", "bill")]
    e = ledger.entries(db.engine).filter(pl.col("kind") == "payment").sort("reference")
    assert e["business_date"].to_list() == [date(2025, 2, 10), date(2025, 3, 10),
                                            date(2025, 4, 5), date(2025, 1, 15)]
    with db.engine.connect() as conn:
        got = conn.execute(text("SELECT channel, source FROM payments WHERE payment_id = 'P3'"))
        assert got.one() == ("counter", "import")


def test_rejections_and_reimport(customers: Database, tmp_path: Path) -> None:
    db = customers
    bills(db, write(tmp_path, "bills.csv", BILLS))
    path = write(tmp_path, "payments.csv", PAYMENTS_HEADER + ",operator\n" + "\n".join([
        "P1,H001,2025-02-10,120.00,bank,,张",
        "P1,H001,2025-02-10,120.00,bank,,again",      # same content: duplicate
        "P1,H001,2025-02-11,120.00,bank,,",           # other content: conflict
        "P4,H001,2025-02-10,1.001,bank,,",
        "P5,H001,2025-02-10,0,bank,,",
        "P6,H001,2025-02-10,-3,bank,,",
        "P7,H009,2025-02-10,3,bank,,",
        "P8,H001,2025-02-10,3,bank,NOPE,",
        "P9,H002,2025-02-10,3,bank,B1,",
        "P10,H001,yesterday,3,bank,,",
        "P11,H001,2025-02-10,3,,,",
    ]) + "\n")
    assert counts(payments(db, path)) == (1, 9, 1)
    rej = pl.read_csv(str(path) + ".rejected.csv", infer_schema=False)
    assert dict(zip(rej["line"].to_list(), rej["reason"].to_list(), strict=True)) == {
        "4": "conflicts_within_file", "5": "too_many_decimals", "6": "non_positive_amount",
        "7": "non_positive_amount", "8": "unknown_customer", "9": "unknown_bill",
        "10": "bill_of_other_customer", "11": "bad_timestamp", "12": "missing_value"}
    before = ledger.entries(db.engine)
    assert counts(payments(db, path)) == (0, 9, 2)
    assert ledger.entries(db.engine).equals(before)


def test_payments_before_their_bills_file(customers: Database, tmp_path: Path) -> None:
    """Payments imported before the bills: credit, which clears each bill at its issue time."""
    db = customers
    payments(db, write(tmp_path, "p.csv", PAYMENTS_HEADER + "\nQ1,H002,2025-01-15,70.00,bank,\n"))
    bills(db, write(tmp_path, "bills.csv", BILLS))
    assert paid(db)["C1"] == ("50.00", "paid", date(2025, 2, 1))
    with db.engine.connect() as conn:
        assert ledger.check(conn) == []


def test_named_bill_before_older_open_one(customers: Database, tmp_path: Path) -> None:
    """The payer's bill id wins over the rule: the newer bill is settled, the older stays open,
    and only what is left over goes by the rule."""
    db = customers
    bills(db, write(tmp_path, "bills.csv", BILLS))
    payments(db, write(tmp_path, "p.csv", PAYMENTS_HEADER + "\n"
                       "N1,H001,2025-03-20 12:00,90.50,counter,B2\n"))
    state = paid(db)
    assert state["B2"] == ("80.50", "paid", date(2025, 3, 20))
    assert state["B1"] == ("10.00", "partially_paid", None)
    with db.engine.connect() as conn:
        assert ledger.check(conn) == []


def test_parquet_with_typed_columns(customers: Database, tmp_path: Path) -> None:
    """Parquet exports: dates as dates, amounts as decimals, paid_at as a zoned or a local
    timestamp (local time is Asia/Shanghai, as in CSV)."""
    from datetime import datetime
    from decimal import Decimal

    db = customers
    pl.DataFrame({
        "bill_id": ["Q1"], "customer_id": ["H003"], "period": ["2025-01"],
        "issued_on": [date(2025, 2, 1)], "due_on": [date(2025, 2, 16)],
        "amount": [Decimal("45.60")], "kwh": [Decimal("80.00")],
    }).write_parquet(tmp_path / "bills.parquet")
    assert counts(bills(db, tmp_path / "bills.parquet")) == (1, 0, 0)
    zoned = pl.DataFrame({
        "payment_id": ["Z1"], "customer_id": ["H003"],
        "paid_at": pl.Series([datetime(2025, 2, 3, 2, 0)]).dt.replace_time_zone("UTC"),
        "amount": [Decimal("40.00")], "channel": ["bank"]})
    zoned.write_parquet(tmp_path / "z.parquet")
    local = pl.DataFrame({
        "payment_id": ["L1"], "customer_id": ["H003"],
        "paid_at": [datetime(2025, 2, 4, 23, 30)], "amount": [5.6], "channel": ["counter"],
        "bill_id": ["Q1"]})
    local.write_parquet(tmp_path / "l.parquet")
    assert counts(payments(db, tmp_path / "z.parquet")) == (1, 0, 0)
    assert counts(payments(db, tmp_path / "l.parquet")) == (1, 0, 0)
    rows = payments_frame(db, None).sort("paid_at")
    assert rows.select("payment_id", "paid_at", "amount").rows() == [
        ("Z1", "2025-02-03T10:00:00+08:00", "40.00"),
        ("L1", "2025-02-04T23:30:00+08:00", "5.60")]
    assert paid(db)["Q1"] == ("45.60", "paid", date(2025, 2, 4))
