"""A read the bill run estimated from intervals never reaches smart prepayment's balance (which
can cut a customer off): only what the meter really showed does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from sqlalchemy import text

from dianfei.db.engine import Database
from dianfei.metering.service import reads_of_mode_between, store_reads
from tests.factories import Person, load_people

pytestmark = pytest.mark.db


def test_estimated_reads_are_left_out_of_the_prepaid_reads(db: Database) -> None:
    load_people(db, [Person("P1")])
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE customers SET payment_mode = 'prepaid'"))
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    reads = pl.DataFrame({
        "meter_id": ["MP1", "MP1"], "read_at": [t0 + timedelta(hours=1), t0 + timedelta(hours=2)],
        "register": ["total", "total"], "value": [100_00, 250_00],
        "source": ["ami", "estimated"]}, schema_overrides={"read_at": pl.Datetime("us", "UTC")})
    with db.engine.begin() as conn:
        store_reads(conn, reads)
    got = reads_of_mode_between(db.engine, "prepaid", t0, t0 + timedelta(days=1))
    assert got["value"].to_list() == [100_00]
