"""Database fixtures for VEE: two residential meters (MC1, MC2) and a helper that stores intervals
through the real import path (``metering.ingest``), as a file import would."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from tests.factories import Person, load_people
from tests.metering.vee.helpers import T0

NOW = FixedClock(datetime(2026, 4, 1, 2, 0, tzinfo=UTC))

Store = Callable[..., object]


def kwh_text(wh: int) -> str:
    sign = "-" if wh < 0 else ""
    return f"{sign}{abs(wh) // 1000}.{abs(wh) % 1000:03d}"


@pytest.fixture
def people_db(db: Database) -> Database:
    load_people(db, [Person("C1"), Person("C2")])
    return db


@pytest.fixture
def store_intervals(people_db: Database) -> Store:
    ingest = pytest.importorskip("dianfei.metering.ingest",
                                 reason="needs the interval store's import path (metering.ingest)")

    def store(meter_id: str, values: Sequence[int | None], *, minutes: int = 15,
              start: datetime = T0, extra: Sequence[tuple[str, datetime, int]] = ()) -> object:
        rows = [(meter_id, start + timedelta(minutes=minutes * k), kwh_text(v))
                for k, v in enumerate(values) if v is not None]
        rows += [(m, t, kwh_text(w)) for m, t, w in extra]
        frame = pl.DataFrame(rows, schema={"meter_id": pl.String, "ts": pl.Datetime("us", "UTC"),
                                           "kwh": pl.String}, orient="row")
        return ingest.ingest_intervals(people_db, frame, interval_minutes=minutes, origin="test",
                                       clock=NOW)

    return store
