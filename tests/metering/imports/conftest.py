"""Helpers for the import tests: canonical files written as an operator would receive them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.metering.imports import import_file
from dianfei.metering.ingest import IngestResult

CLOCK = FixedClock(datetime(2026, 4, 1, 9, 0, tzinfo=UTC))

CUSTOMERS = "\n".join([
    "customer_id,name,customer_class,region,address,phone,tariff_id,low_income,protected,"
    "payment_mode,opened_on",
    'C001,王小明,residential,城关镇,"城关镇人民路1号,3单元",13800138000,'
    "cn-zj-residential,0,0,postpaid,2020-01-01",
    "C002,李四,residential,城关镇,城关镇人民路2号,,cn-zj-residential,1,0,prepaid,2021-06-15",
    "C003,东风农场,agricultural,新塘乡,新塘乡东风村,13900000001,"
    "cn-agricultural-irrigation,0,1,postpaid,2019-03-01",
]) + "\n"
METERS = """meter_id,customer_id,multiplier,digits,installed_on
M001,C001,1,6,2020-01-01
M002,C002,1,6,2021-06-15
M003,C003,40,6,2026-02-01
"""


def write(dir_: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = dir_ / name
    path.write_bytes(text.encode(encoding))
    return path


def run(db: Database, kind: str, path: Path, **kw: object) -> IngestResult:
    return import_file(db, kind, path, clock=CLOCK, **kw)  # type: ignore[arg-type]


@pytest.fixture
def seeded(db: Database, tmp_path: Path) -> Database:
    """Three customers with one meter each (M003 installed only on 2026-02-01)."""
    res = run(db, "customers", write(tmp_path, "customers.csv", CUSTOMERS))
    assert (res.accepted, res.rejected, res.duplicates) == (3, 0, 0)
    res = run(db, "meters", write(tmp_path, "meters.csv", METERS))
    assert (res.accepted, res.rejected, res.duplicates) == (3, 0, 0)
    return db
