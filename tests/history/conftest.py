"""Helpers for the history-import tests: customers imported as an operator would, then bills and
payments files written as a legacy system exports them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dianfei.billing.service import import_bills
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.metering.imports import import_file
from dianfei.metering.service import IngestResult
from dianfei.payments.service import import_payments

#: the import runs long after the history it brings in
CLOCK = FixedClock(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))

CUSTOMERS = """customer_id,name,customer_class,region,address,phone,tariff_id,low_income,\
protected,payment_mode,opened_on
H001,张三,residential,城关镇,城关镇人民路1号,,cn-zj-residential,0,0,postpaid,2020-01-01
H002,李四,residential,城关镇,城关镇人民路2号,,cn-zj-residential,0,0,postpaid,2020-01-01
H003,王五,commercial,新塘乡,新塘乡东风村,,cn-zj-residential,0,0,postpaid,2020-01-01
"""

BILLS_HEADER = "bill_id,customer_id,period,issued_on,due_on,amount,kwh"
PAYMENTS_HEADER = "payment_id,customer_id,paid_at,amount,channel,bill_id"


def write(dir_: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = dir_ / name
    path.write_bytes(text.encode(encoding))
    return path


def counts(res: IngestResult) -> tuple[int, int, int]:
    return res.accepted, res.rejected, res.duplicates


def bills(db: Database, path: Path, **kw: object) -> IngestResult:
    return import_bills(db, path, clock=CLOCK, **kw)  # type: ignore[arg-type]


def payments(db: Database, path: Path, **kw: object) -> IngestResult:
    return import_payments(db, path, clock=CLOCK, **kw)  # type: ignore[arg-type]


@pytest.fixture
def customers(db: Database, tmp_path: Path) -> Database:
    """Three customers without meters or reads (a history import needs none)."""
    res = import_file(db, "customers", write(tmp_path, "customers.csv", CUSTOMERS), clock=CLOCK)
    assert counts(res) == (3, 0, 0)
    return db
