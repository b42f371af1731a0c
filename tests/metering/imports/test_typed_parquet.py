"""Typed Parquet interval files, as AMI head-ends export them: a zoned timestamp and a numeric
kWh (decimal, or float64 holding at most 3 decimals). No text parsing, same reasons as text:
a zoneless timestamp, a 4th decimal or a float that is not a 3-place decimal is rejected, never
rounded."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import text

from dianfei.db.engine import Database
from dianfei.metering import intervals
from tests.metering.imports.conftest import run

T0 = datetime(2026, 2, 28, 16, tzinfo=UTC)  # 2026-03-01 00:00 in Asia/Shanghai
US = 1_000_000


def micros(instant: datetime) -> int:
    return int(instant.timestamp()) * US


def write_table(path: Path, meter_ids: list[str | None], instants: list[datetime],
                kwh: pa.Array, tz: str | None = "+08:00") -> Path:
    ts = pa.array([micros(t) for t in instants], pa.int64()).cast(pa.timestamp("us", tz=tz))
    pq.write_table(pa.table({"meter_id": pa.array(meter_ids, pa.string()), "ts": ts, "kwh": kwh}),
                   path)
    return path


def stored(db: Database) -> list[tuple[str, datetime, int]]:
    df = intervals.scan(db).sort("meter_id", "ts").collect()
    return list(zip(df["meter_id"], df["ts"], df["wh"], strict=True))


def rejected(path: Path) -> list[tuple[str, str]]:
    """(line, reason) of FILE.rejected.csv."""
    df = pl.read_csv(path.with_name(path.name + ".rejected.csv"), infer_schema=False)
    return list(zip(df["line"], df["reason"], strict=True))


def test_decimal_kwh_with_zoned_timestamps_is_stored_exactly(seeded: Database,
                                                            tmp_path: Path) -> None:
    # given a decimal128(12,4) column: trailing zeros are fine, a genuine 4th place is not
    kwh = pa.array([Decimal("1.2340"), Decimal("-0.0010"), Decimal("1.2345"), None,
                    Decimal("12345678.9000")], pa.decimal128(12, 4))
    path = write_table(tmp_path / "iv.parquet", ["M001", "M001", "M002", "M002", "M002"],
                       [T0, T0 + timedelta(minutes=15), T0, T0 + timedelta(minutes=15),
                        T0 + timedelta(minutes=30)], kwh)
    # when imported
    res = run(seeded, "intervals", path)
    # then exact watt-hours, and the bad rows rejected with their reasons
    assert (res.accepted, res.rejected, res.duplicates) == (3, 2, 0)
    assert stored(seeded) == [("M001", T0, 1234), ("M001", T0 + timedelta(minutes=15), -1),
                              ("M002", T0 + timedelta(minutes=30), 12_345_678_900)]
    assert rejected(path) == [("3", "too_many_decimals"), ("4", "missing_value")]


def test_any_zone_is_the_same_instant_and_a_zoneless_one_is_rejected(seeded: Database,
                                                                     tmp_path: Path) -> None:
    kwh = pa.array([Decimal("0.500")], pa.decimal128(12, 3))
    # +05:30 is a zone Polars does not know: the PyArrow reader takes over
    for i, tz in enumerate(("UTC", "Asia/Shanghai", "+05:30")):
        path = write_table(tmp_path / f"z{i}.parquet", ["M001"], [T0], kwh, tz=tz)
        res = run(seeded, "intervals", path)
        assert (res.accepted, res.rejected, res.duplicates) == ((1, 0, 0) if i == 0
                                                                  else (0, 0, 1))
    assert stored(seeded) == [("M001", T0, 500)]
    # a timestamp without a zone is ambiguous: rejected row by row, nothing stored
    naive = write_table(tmp_path / "naive.parquet", ["M002", "M002"],
                        [T0, T0 + timedelta(minutes=15)],
                        pa.array([Decimal("1"), Decimal("2")], pa.decimal128(12, 3)), tz=None)
    res = run(seeded, "intervals", naive, timezone=None)
    assert (res.accepted, res.rejected, res.duplicates) == (0, 2, 0)
    assert rejected(naive) == [("1", "timestamp_without_offset"),
                               ("2", "timestamp_without_offset")]
    assert stored(seeded) == [("M001", T0, 500)]
    # read in a zone (the default: the business zone), its wall clock is that zone's
    res = run(seeded, "intervals", naive, timezone="UTC")
    assert (res.accepted, res.rejected, res.duplicates) == (2, 0, 0)


def test_float_kwh_must_be_a_three_place_decimal(seeded: Database, tmp_path: Path) -> None:
    values = [0.1, 0.1 + 0.2, 3 * 0.001, 1234.567, 0.0001, 1.0005, math.nan, math.inf,
              123456789.1234]
    n = len(values)
    path = write_table(tmp_path / "f.parquet", ["M002"] * n,
                       [T0 + timedelta(minutes=15 * i) for i in range(n)],
                       pa.array(values, pa.float64()), tz="UTC")
    res = run(seeded, "intervals", path)
    assert (res.accepted, res.rejected, res.duplicates) == (4, 5, 0)
    assert [wh for _, _, wh in stored(seeded)] == [100, 300, 3, 1_234_567]
    assert rejected(path) == [("5", "too_many_decimals"), ("6", "too_many_decimals"),
                              ("7", "bad_number"), ("8", "bad_number"),
                              ("9", "too_many_decimals")]
    with seeded.engine.connect() as conn:
        reasons = conn.execute(text("SELECT reason, COUNT(*) FROM import_quarantine "
                                    "GROUP BY reason ORDER BY reason")).fetchall()
    assert [tuple(r) for r in reasons] == [("bad_number", 2), ("too_many_decimals", 3)]


def test_duplicates_meters_and_installation_in_a_typed_file(seeded: Database,
                                                            tmp_path: Path) -> None:
    # given identical and conflicting repeats, an off-grid instant, an empty and an unknown
    # meter id, padded ids, and M003 read before its installation (2026-02-01)
    rows = [
        ("M001", T0, "0.100"),                          # 1 stored
        (" M001 ", T0, "0.100"),                        # 2 identical duplicate (id trimmed)
        ("M001", T0, "0.200"),                          # 3 conflicting duplicate
        ("M002", T0 + timedelta(seconds=7), "1.000"),   # 4 off the grid: stored as received
        ("M002", T0 + timedelta(seconds=7), "1.000"),   # 5 duplicate of 4
        (None, T0, "1.000"),                            # 6 empty meter id
        ("M999", T0, "1.000"),                          # 7 unknown meter
        ("M003", datetime(2026, 1, 31, 15, tzinfo=UTC), "1.000"),  # 8 2026-01-31 local
        ("M003", datetime(2026, 1, 31, 16, tzinfo=UTC), "1.000"),  # 9 2026-02-01 local
    ]
    path = write_table(tmp_path / "d.parquet", [r[0] for r in rows], [r[1] for r in rows],
                       pa.array([Decimal(r[2]) for r in rows], pa.decimal128(12, 3)))
    res = run(seeded, "intervals", path)
    assert (res.accepted, res.rejected, res.duplicates) == (3, 3, 3)
    assert rejected(path) == [("6", "missing_value"), ("7", "unknown_meter"),
                              ("8", "before_installation")]
    assert stored(seeded) == [("M001", T0, 100), ("M002", T0 + timedelta(seconds=7), 1000),
                              ("M003", datetime(2026, 1, 31, 16, tzinfo=UTC), 1000)]
    dups = intervals.duplicates(seeded).sort("wh")
    assert dups.select("meter_id", "wh", "first_wh").rows() == [
        ("M001", 100, 100), ("M001", 200, 100), ("M002", 1000, 1000)]
    # and re-importing the file changes nothing
    again = run(seeded, "intervals", path)
    assert (again.accepted, again.rejected, again.duplicates) == (0, 3, 6)
    assert intervals.duplicates(seeded).height == 3
