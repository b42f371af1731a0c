"""Imported history beside native bills: one live bill per account and period holds across both,
payments allocate over both, and the bill run carries on after an import."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import polars as pl

from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.reporting.exports import bills_frame, payments_frame
from tests.factories import Person, Reads, load_people, month_end
from tests.history.conftest import BILLS_HEADER, PAYMENTS_HEADER, bills, counts, payments, write

DEC, JAN, FEB = Period(2025, 12), Period(2026, 1), Period(2026, 2)


def issue_clock(period: Period) -> FixedClock:
    d = period.end_date
    return FixedClock(datetime(d.year, d.month, 3, 9, 0, tzinfo=BUSINESS_TZ))


def test_history_beside_native_bills(db: Database, tmp_path: Path) -> None:
    # given a native January bill (150 kWh → 80.70)
    load_people(db, [Person("C1")])
    Reads().add("C1", month_end(DEC), 1000_00).add("C1", month_end(JAN), 1150_00).store(db)
    run_bill_run(db, JAN, issue_clock(JAN))
    # when the legacy system's December bill, and a January one, are imported
    path = write(tmp_path, "bills.csv", BILLS_HEADER + "\n"
                 "OLD-2025-12,C1,2025-12,2026-01-03,2026-01-18,55.00,100\n"
                 "OLD-2026-01,C1,2026-01,2026-02-03,2026-02-18,80.70,150\n")
    assert counts(bills(db, path)) == (1, 1, 0)
    rej = pl.read_csv(str(path) + ".rejected.csv", infer_schema=False)
    assert rej["reason"].to_list() == ["period_already_billed"]
    assert "C1-202601-1" in rej["detail"][0]
    # and payments: one naming the native bill, one by the rule (oldest due first)
    pays = write(tmp_path, "payments.csv", PAYMENTS_HEADER + "\n"
                 "LP1,C1,2026-02-05 10:00,80.70,counter,C1-202601-1\n"
                 "LP2,C1,2026-01-10 10:00,20.00,bank,\n")
    assert counts(payments(db, pays)) == (2, 0, 0)
    state = {r["bill_id"]: (r["paid_amount"], r["status"])
             for r in bills_frame(db, None).iter_rows(named=True)}
    assert state == {"OLD-2025-12": ("20.00", "partially_paid"), "C1-202601-1": ("80.70", "paid")}
    lp2 = payments_frame(db, None).filter(pl.col("payment_id") == "LP2")
    assert lp2.select("bill_id", "amount").rows() == [("OLD-2025-12", "20.00")]
    # then the February bill run bills on from the reads, as before the import
    Reads().add("C1", month_end(FEB), 1250_00).store(db)
    res = run_bill_run(db, FEB, issue_clock(FEB))
    assert (res.billed, res.exceptions) == (1, 0)
    with db.engine.connect() as conn:
        assert ledger.check(conn) == []
    aged = ledger.aging(db.engine, date(2026, 1, 31))
    assert aged.filter(pl.col("account_id") == "C1")["0-30"].item() == 3500
