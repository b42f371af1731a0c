"""Hand-made interval frames for the VEE tests: a meter's readings as a list of slot values."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import polars as pl

#: 2026-03-02 00:00 Asia/Shanghai (a Monday), the start of every test series
T0 = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
SCHEMA = {"meter_id": pl.String, "ts": pl.Datetime("us", "UTC"), "minutes": pl.Int16, "wh": pl.Int64}


def series(meter_id: str, values: Sequence[int | None], *, minutes: int = 15,
           start: datetime = T0) -> list[tuple[str, datetime, int, int]]:
    """One row per slot; ``None`` leaves the slot missing."""
    return [(meter_id, start + timedelta(minutes=minutes * k), minutes, v)
            for k, v in enumerate(values) if v is not None]


def frame(*rows: Iterable[tuple[str, datetime, int, int]]) -> pl.LazyFrame:
    flat = [r for part in rows for r in part]
    return pl.LazyFrame(flat, schema=SCHEMA, orient="row")


def slot(k: int, minutes: int = 15, start: datetime = T0) -> datetime:
    return start + timedelta(minutes=minutes * k)
