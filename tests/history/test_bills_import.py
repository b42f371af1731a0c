"""``dianfei import bills``: legacy bills become bills and ledger debits as of their issue dates,
every row accounted for, re-import a no-op."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
from sqlalchemy import text

from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.reporting.exports import bills_frame
from tests.history.conftest import BILLS_HEADER, CUSTOMERS, bills, counts, write

BILLS = BILLS_HEADER + ",legacy_note\n" + "\n".join([
    "B-2025-01-H001,H001,2025-01,2025-02-01,2025-02-16,100.00,200,x",
    "B-2025-02-H001,H001,2025-02,2025-03-01,2025-03-16,80.5,150.5,",
    "B-2025-01-H002,H002,2025-01,2025-02-01,2025-02-16,0,0,zero bill",
    "B-BAD-DUE,H003,2025-01,2025-02-01,2025-01-31,1.00,1,",
    "B-NOBODY,H999,2025-01,2025-02-01,2025-02-16,1.00,1,",
    "B-MORE,H002,2025-01,2025-02-02,2025-02-16,1.00,1,",
    "B-2025-01-H001,H001,2025-01,2025-02-01,2025-02-16,100,200.00,same again",
    "B-2025-01-H001,H001,2025-01,2025-02-01,2025-02-16,100.01,200,",
    "B-DECIMALS,H003,2025-02,2025-03-01,2025-03-16,1.234,1,",
    "B-NEG,H003,2025-03,2025-04-01,2025-04-16,-5.00,1,",
    "B-PERIOD,H003,2025-13,2025-04-01,2025-04-16,5.00,1,",
    "B-DATE,H003,2025-04,2025-04-31,2025-05-16,5.00,1,",
]) + "\n"


def reasons(path: Path) -> dict[str, str]:
    rej = pl.read_csv(str(path) + ".rejected.csv", infer_schema=False)
    return dict(zip(rej["bill_id"].to_list(), rej["reason"].to_list(), strict=True))


def test_every_row_accepted_rejected_or_duplicate(customers: Database, tmp_path: Path) -> None:
    db = customers
    path = write(tmp_path, "bills.csv", BILLS)
    assert counts(bills(db, path)) == (3, 8, 1)
    assert reasons(path) == {
        "B-BAD-DUE": "due_before_issue", "B-NOBODY": "unknown_customer",
        "B-MORE": "period_already_billed", "B-2025-01-H001": "conflicts_within_file",
        "B-DECIMALS": "too_many_decimals", "B-NEG": "negative_value",
        "B-PERIOD": "bad_period", "B-DATE": "bad_date"}
    with db.engine.connect() as conn:
        quarantined = conn.execute(text("SELECT count(*) FROM import_quarantine")).scalar_one()
        assert quarantined == 8
        assert ledger.check(conn) == []
    # the same file again changes nothing: every accepted row is now a duplicate
    before = ledger.entries(db.engine)
    assert counts(bills(db, path)) == (0, 8, 4)
    assert ledger.entries(db.engine).equals(before)


def test_debits_posted_as_of_issue_date(customers: Database, tmp_path: Path) -> None:
    db = customers
    bills(db, write(tmp_path, "bills.csv", BILLS))
    e = ledger.entries(db.engine).sort("reference")
    assert e["kind"].to_list() == ["bill"] * 3
    assert e["business_date"].to_list() == [date(2025, 2, 1), date(2025, 2, 1), date(2025, 3, 1)]
    # 00:00 of the issue date in Asia/Shanghai, not the import's clock
    shanghai = e["posted_at"].dt.convert_time_zone("Asia/Shanghai")
    assert shanghai.dt.strftime("%Y-%m-%d %H:%M").to_list() == [
        "2025-02-01 00:00", "2025-02-01 00:00", "2025-03-01 00:00"]
    assert e["amount"].to_list() == [10000, 0, 8050]
    # aging as of a past date sees only what was issued by then
    aged = ledger.aging(db.engine, date(2025, 2, 20))
    assert dict(zip(aged["account_id"], aged["balance"], strict=True)) == {"H001": 10000,
                                                                            "H002": 0}


def test_export_shows_imported_bills_like_native(customers: Database, tmp_path: Path) -> None:
    db = customers
    bills(db, write(tmp_path, "bills.csv", BILLS))
    out = bills_frame(db, None).sort("bill_id")
    assert out.select("bill_id", "period", "amount", "kwh", "paid_amount", "status").rows() == [
        ("B-2025-01-H001", "2025-01", "100.00", "200.00", "0.00", "open"),
        ("B-2025-01-H002", "2025-01", "0.00", "0.00", "0.00", "paid"),
        ("B-2025-02-H001", "2025-02", "80.50", "150.50", "0.00", "open")]
    # a zero bill is settled on issue
    assert out.filter(pl.col("bill_id") == "B-2025-01-H002")["paid_in_full_on"].item() == date(
        2025, 2, 1)


def test_period_billed_natively_or_stored_is_refused(customers: Database,
                                                     tmp_path: Path) -> None:
    db = customers
    bills(db, write(tmp_path, "a.csv", BILLS_HEADER + "\nA1,H003,2025-05,2025-06-01,"
                    "2025-06-16,10,10\n"))
    path = write(tmp_path, "b.csv", BILLS_HEADER + "\nA2,H003,2025-05,2025-06-01,2025-06-16,"
                 "10,10\nA1,H003,2025-05,2025-06-01,2025-06-16,11,10\n")
    assert counts(bills(db, path)) == (0, 2, 0)
    assert reasons(path) == {"A2": "period_already_billed", "A1": "conflicts_with_stored"}


def test_cli_gbk_and_json(db_env: dict[str, str], tmp_path: Path) -> None:
    def dianfei(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dianfei", *args],
                              env={**os.environ, **db_env}, capture_output=True, text=True,
                              timeout=120)

    cust = write(tmp_path, "customers.csv", CUSTOMERS, encoding="gbk")
    assert dianfei("import", "customers", str(cust), "--encoding", "gbk").returncode == 0
    path = write(tmp_path, "bills.csv", BILLS_HEADER + ",备注\nG1,H001,2025-01,2025-02-01,"
                 "2025-02-16,12.30,20,电费\n", encoding="gbk")
    proc = dianfei("import", "bills", str(path), "--encoding", "gbk", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"accepted": 1, "rejected": 0, "duplicates": 0}
    proc = dianfei("import", "bills", str(path), "--encoding", "gbk", "--json")
    assert json.loads(proc.stdout) == {"accepted": 0, "rejected": 0, "duplicates": 1}
    proc = dianfei("import", "bills", str(path), "--json")  # GBK read as UTF-8: a clear error
    assert proc.returncode == 2 and "--encoding gbk" in proc.stderr
    assert "Traceback" not in proc.stderr
    pays = write(tmp_path, "payments.csv", "payment_id,customer_id,paid_at,amount,channel,"
                 "bill_id,收费员\nGP1,H001,2025-02-05 10:00,20,营业厅,G1,王\n", encoding="gbk")
    proc = dianfei("import", "payments", str(pays), "--encoding", "gbk", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"accepted": 1, "rejected": 0, "duplicates": 0}
    proc = dianfei("import", "invoices", str(path))
    assert proc.returncode == 2 and "bills, payments" in proc.stderr
    assert dianfei("ledger", "check").returncode == 0
