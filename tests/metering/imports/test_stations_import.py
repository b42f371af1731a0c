"""``dianfei import stations``: the supply stations' metered supply per month. Every row is
accepted, rejected with its reason (quarantine and FILE.rejected.csv) or a duplicate; importing
again changes nothing; a stored month is never overwritten."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from dianfei.core.clock import BUSINESS_TZ, FixedClock
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.metering import service as metering
from tests.factories import Person, load_people

pytestmark = pytest.mark.db
CLOCK = FixedClock(datetime(2026, 3, 10, 9, tzinfo=BUSINESS_TZ))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rejected(path: Path) -> dict[int, str]:
    with metering.rejected_path(path).open(encoding="utf-8-sig") as fh:
        return {int(r["line"]): r["reason"] for r in csv.DictReader(fh)}


def stored(db: Database) -> pl.DataFrame:
    return metering.station_supply(db.engine, "2000-01")


def test_good_bad_and_duplicate_rows_each_accounted_for(db: Database, tmp_path: Path) -> None:
    load_people(db, [Person("C01")])  # brings station S1
    path = write(tmp_path / "stations.csv", "\n".join([
        "station_id,period,kwh,note",
        "S1,2026-01,123456.78,ok",          # 2
        "S1,2026/2,1000,ok",                # 3  2026-02
        "S1,2026-13,1,bad month",           # 4
        "S1,2026-03,-5,negative",           # 5
        "S1,2026-04,1.234,three places",    # 6
        "S1,2026-05,0,zero",                # 7
        "S9,2026-01,100,unknown station",   # 8
        ",2026-01,100,no station",          # 9
        "S1,2026-01,123456.78,again",       # 10 duplicate of line 2
        "S1,2026-02,999,other",             # 11 conflicts with line 3
        "S1,2026-06,abc,not a number",      # 12
    ]) + "\n")
    res = metering.import_stations(db, path, clock=CLOCK)
    assert (res.accepted, res.rejected, res.duplicates) == (2, 8, 1)
    reasons = rejected(path)
    assert reasons[4] == "bad_period" and reasons[5] == "negative_value"
    assert reasons[6] == "too_many_decimals" and reasons[7] == "value_out_of_range"
    assert reasons[8] == "unknown_station" and reasons[9] == "missing_value"
    assert reasons[11] == "conflicts_within_file" and reasons[12] == "bad_number"
    assert set(reasons) == {4, 5, 6, 7, 8, 9, 11, 12}
    assert stored(db).rows() == [("S1", "2026-01", 12345678), ("S1", "2026-02", 100000)]
    # the same file again: nothing new, nothing changed
    again = metering.import_stations(db, path, clock=CLOCK)
    assert (again.accepted, again.rejected, again.duplicates) == (0, 8, 3)
    assert stored(db).rows() == [("S1", "2026-01", 12345678), ("S1", "2026-02", 100000)]
    # another figure for a stored month is refused, never overwritten
    other = write(tmp_path / "fix.csv", "station_id,period,kwh\nS1,2026-01,1.00\nS1,2026-07,5\n")
    res = metering.import_stations(db, other, clock=CLOCK)
    assert (res.accepted, res.rejected, res.duplicates) == (1, 1, 0)
    assert rejected(other) == {2: "conflicts_with_stored"}
    assert stored(db)["kwh"].to_list() == [12345678, 100000, 500]


def test_a_file_without_the_columns_is_refused_by_name(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "station,month,kwh\nS1,2026-01,5\n")
    with pytest.raises(ValidationError, match=r"missing column\(s\) station_id, period"):
        metering.import_stations(db, path, clock=CLOCK)
    assert stored(db).height == 0
