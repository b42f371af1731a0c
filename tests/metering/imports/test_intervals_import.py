"""Interval files into the Parquet store: exact watt-hours, duplicates, conflicts, re-imports,
Parquet input and chunked streaming; the store contract VEE reads (scan, duplicates)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sqlalchemy import text

from dianfei.db.engine import Database
from dianfei.metering import intervals
from tests.metering.imports.conftest import CLOCK, run, write

HEADER = "meter_id,ts,kwh\n"
T0 = datetime(2026, 2, 28, 16, tzinfo=UTC)  # 2026-03-01 00:00 in Asia/Shanghai


def stored(db: Database) -> list[tuple[str, datetime, int]]:
    df = intervals.scan(db).sort("meter_id", "ts").collect()
    return list(zip(df["meter_id"], df["ts"], df["wh"], strict=True))


def test_intervals_are_stored_exactly_with_duplicates_kept_for_vee(seeded: Database,
                                                                    tmp_path: Path) -> None:
    path = write(tmp_path, "iv.csv", HEADER + "\n".join([
        "M001,2026-03-01T00:00:00+08:00,0.125",   # 2 stored
        "M001,2026-03-01T00:15:00+08:00,-0.002",  # 3 negative: stored as received
        "M001,2026-03-01T00:00:00+08:00,0.125",   # 4 identical duplicate
        "M001,2026-03-01T00:00:00+08:00,0.3",     # 5 conflicting duplicate
        "M002,2026-03-01T00:07:00+08:00,1",       # 6 off the grid: stored with its real ts
        "M002,2026-03-01T00:30:00+08:00,0.0001",  # 7 four places: rejected
        "M002,2026-03-01T00:45:00,1",             # 8 no offset
        "M999,2026-03-01T00:45:00+08:00,1",       # 9 unknown meter
        '"M002","2026-03-01T01:00:00+08:00","2.500"',  # 10 quoted fields
    ]) + "\n")
    res = run(seeded, "intervals", path, timezone=None)
    assert (res.accepted, res.rejected, res.duplicates) == (4, 3, 2)
    assert stored(seeded) == [
        ("M001", T0, 125), ("M001", T0 + timedelta(minutes=15), -2),
        ("M002", T0 + timedelta(minutes=7), 1000), ("M002", T0 + timedelta(hours=1), 2500)]
    dups = intervals.duplicates(seeded)
    assert dups.select("meter_id", "ts", "wh", "first_wh").rows() == [
        ("M001", T0, 125, 125), ("M001", T0, 300, 125)]
    assert dups["batch_id"].to_list() == [res.batch_id] * 2
    scanned = intervals.scan(seeded).collect()
    assert scanned.schema == pl.Schema({"meter_id": pl.String, "ts": pl.Datetime("us", "UTC"),
                                        "minutes": pl.Int16, "wh": pl.Int64,
                                        "batch_id": pl.String})
    # the partitions: a month this small is one file of every group, catalogued
    assert intervals.meter_group("M001") != intervals.meter_group("M002")
    files = _catalogue(seeded)
    assert [(int(f[1]), int(f[3])) for f in files] == [(intervals.MIXED_GROUP, 4)]
    assert str(files[0][2]).startswith(f"month=2026-03/group=all/{res.batch_id}")
    assert (Path(seeded.settings.data_dir) / "intervals" / str(files[0][2])).is_file()
    assert intervals.scan(seeded, meter_ids=["M002"]).collect()["wh"].to_list() == [1000, 2500]


def _catalogue(db: Database) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(text("SELECT day, meter_group, path, rows FROM interval_files "
                                      "ORDER BY path")).fetchall())


def test_a_month_of_many_rows_is_a_file_per_meter_group(seeded: Database, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Above ``MIXED_MAX_ROWS`` rows a month is split by meter group (the wide day's layout);
    below it one file holds every group; readers find each meter's rows either way, and a
    re-import of the same rows finds them as duplicates in both layouts."""
    monkeypatch.setattr(intervals, "MIXED_MAX_ROWS", 3)
    body = HEADER + "".join(f"{m},2026-03-01T00:{q:02d}:00+08:00,0.{q + 10}\n"
                            for m in ("M001", "M002") for q in (0, 15))
    body += "M001,2026-04-01T00:00:00+08:00,0.5\nM002,2026-04-01T00:00:00+08:00,0.6\n"
    path = write(tmp_path, "iv.csv", body)
    res = run(seeded, "intervals", path)
    assert (res.accepted, res.rejected, res.duplicates) == (6, 0, 0)
    g1, g2 = intervals.meter_group("M001"), intervals.meter_group("M002")
    layout = sorted((str(f[2]).split("/")[0], int(f[1]), int(f[3])) for f in _catalogue(seeded))
    assert layout == sorted([("month=2026-03", g1, 2), ("month=2026-03", g2, 2),
                             ("month=2026-04", intervals.MIXED_GROUP, 2)])
    for meter, expected in (("M001", [100, 250, 500]), ("M002", [100, 250, 600])):
        got = intervals.scan(seeded, meter_ids=[meter]).sort("ts").collect()
        assert got["wh"].to_list() == expected
    again = run(seeded, "intervals", path)
    assert (again.accepted, again.rejected, again.duplicates) == (0, 0, 6)
    assert len(_catalogue(seeded)) == 3


def test_reimport_changes_no_figure_and_conflicts_are_rejected(seeded: Database,
                                                               tmp_path: Path) -> None:
    body = HEADER + ("M001,2026-03-01T00:00:00+08:00,0.1\nM001,2026-03-01T00:00:00+08:00,0.2\n"
                     "M002,2026-03-01T00:00:00+08:00,0.5\n")
    path = write(tmp_path, "iv.csv", body)
    first = run(seeded, "intervals", path)
    before, dups_before = stored(seeded), intervals.duplicates(seeded).height
    again = run(seeded, "intervals", path)
    assert (first.accepted, first.rejected, first.duplicates) == (2, 0, 1)
    assert (again.accepted, again.rejected, again.duplicates) == (0, 0, 3)
    assert stored(seeded) == before and intervals.duplicates(seeded).height == dups_before == 1
    # a later file with a different value for a stored interval: rejected, store unchanged
    other = write(tmp_path, "other.csv", HEADER + "M002,2026-02-28T16:00:00Z,0.6\n"
                  "M002,2026-03-01T00:15:00+08:00,0.7\n")
    res = run(seeded, "intervals", other)
    assert (res.accepted, res.rejected, res.duplicates) == (1, 1, 0)
    assert ("M002", T0, 500) in stored(seeded) and ("M002", T0, 600) not in stored(seeded)
    rejected = (tmp_path / "other.csv.rejected.csv").read_text(encoding="utf-8").splitlines()
    assert rejected[0] == "meter_id,ts,kwh,line,reason,detail"
    assert rejected[1].startswith("M002,2026-02-28T16:00:00Z,0.6,2,conflicts_with_stored,")


def test_parquet_input_typed_and_text(seeded: Database, tmp_path: Path) -> None:
    typed = pl.DataFrame({
        "meter_id": ["M001", "M001", "M002"],
        "ts": [T0, T0 + timedelta(minutes=15), T0],
        "kwh": ["1.5", "0.25", "x"],
    }, schema_overrides={"ts": pl.Datetime("us", "Asia/Shanghai")})
    typed.write_parquet(tmp_path / "iv.parquet")
    res = run(seeded, "intervals", tmp_path / "iv.parquet")
    assert (res.accepted, res.rejected, res.duplicates) == (2, 1, 0)
    assert stored(seeded) == [("M001", T0, 1500), ("M001", T0 + timedelta(minutes=15), 250)]
    # a zoneless timestamp column is the business zone's wall clock: the same instants again
    naive = typed.with_columns(pl.col("ts").dt.replace_time_zone(None))
    naive.write_parquet(tmp_path / "naive.parquet")
    res = run(seeded, "intervals", tmp_path / "naive.parquet")
    assert (res.accepted, res.rejected, res.duplicates) == (0, 1, 2)
    # without a zone to read it in, it is refused row by row, like offset-less text
    res = run(seeded, "intervals", tmp_path / "naive.parquet", timezone=None)
    assert (res.accepted, res.rejected, res.duplicates) == (0, 3, 0)
    assert "timestamp_without_offset" in (tmp_path / "naive.parquet.rejected.csv").read_text()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_large_file_streams_in_chunks(seeded: Database, tmp_path: Path, fmt: str) -> None:
    # given 3 meters × 96 quarter-hours × 300 days = 86,400... plus duplicates spread over chunks
    days = 300
    n = 96 * days
    ts = pl.datetime_range(T0, T0 + timedelta(minutes=15 * (n - 1)), "15m", eager=True,
                           time_zone="UTC")
    frame = pl.concat([pl.DataFrame({"meter_id": m, "ts": ts, "wh": pl.int_range(0, n, eager=True)})
                       for m in ("M001", "M002", "M003")])
    frame = frame.filter((pl.col("meter_id") != "M003") | (pl.col("ts") >= datetime(2026, 2, 1, tzinfo=UTC)))
    frame = pl.concat([frame, frame.head(1000)])  # the first 1,000 rows again at the end
    text_frame = frame.select(
        "meter_id", pl.col("ts").dt.convert_time_zone("Asia/Shanghai")
        .dt.strftime("%Y-%m-%dT%H:%M:%S%:z").alias("ts"),
        ((pl.col("wh") // 1000).cast(pl.String) + "."
         + (pl.col("wh") % 1000).cast(pl.String).str.pad_start(3, "0")).alias("kwh"))
    path = tmp_path / f"big.{fmt}"
    if fmt == "csv":
        text_frame.write_csv(path)
    else:
        text_frame.write_parquet(path, row_group_size=10_000)
    # when imported with small chunks (about 30 chunks)
    res = run(seeded, "intervals", path, chunk_bytes=100_000, chunk_rows=10_000)
    # then every row is accounted for and duplicates across chunks are found
    assert res.accepted == frame.height - 1000
    assert res.duplicates == 1000 and res.rejected == 0
    scanned = intervals.scan(seeded).collect()
    assert scanned.height == res.accepted
    assert scanned.select(pl.struct("meter_id", "ts").n_unique()).item() == res.accepted
    assert scanned["wh"].sum() == frame.head(frame.height - 1000)["wh"].sum()
    one_day = intervals.scan(seeded, day_from=date(2026, 3, 2), day_to=date(2026, 3, 2),
                             meter_ids=["M002"]).collect()
    assert one_day.height == 96 and one_day["ts"].min() == T0 + timedelta(days=1)
    assert intervals.duplicates(seeded).height == 1000


def test_a_failed_import_leaves_nothing_visible(seeded: Database, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "iv.csv", HEADER + "M001,2026-03-01T00:00:00+08:00,0.1\n")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(intervals, "catalogue", boom)
    with pytest.raises(OSError):
        run(seeded, "intervals", path)
    assert stored(seeded) == []
    assert not list((Path(seeded.settings.data_dir) / "intervals").rglob("*.parquet"))
    with seeded.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM import_batches WHERE kind = 'intervals'")
                            ).scalar() == "failed"
    _ = CLOCK
