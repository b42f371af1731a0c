"""Imports a scheduler can trust: rejected rows give a documented exit code (with a tolerance),
local times are read in a zone, a binary file is named as such, and a register read below the
previous one is flagged when it is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.metering import intervals
from tests.metering.imports.conftest import CUSTOMERS, METERS, run, write

HEADER = "meter_id,ts,kwh\n"
READS = "meter_id,read_at,register,value,source\n"


def dianfei(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dianfei", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)


def stored_ts(db: Database) -> list[datetime]:
    return sorted(intervals.scan(db).collect()["ts"].to_list())


def test_local_times_are_read_in_the_business_zone_by_default(seeded: Database,
                                                             tmp_path: Path) -> None:
    path = write(tmp_path, "iv.csv", HEADER + "M001,2026-03-01T00:00:00,0.5\n"
                 "M001,2026-03-01 00:15,0.5\nM001,2026-03-01T00:00:00+08:00,0.5\n")
    res = run(seeded, "intervals", path)
    # the third row is the first one with its offset written out: a duplicate
    assert (res.accepted, res.rejected, res.duplicates) == (2, 0, 1)
    assert stored_ts(seeded) == [datetime(2026, 2, 28, 16, 0, tzinfo=UTC),
                                 datetime(2026, 2, 28, 16, 15, tzinfo=UTC)]


def test_a_daylight_saving_zone_rejects_the_hour_that_is_not_one_instant(
        seeded: Database, tmp_path: Path) -> None:
    path = write(tmp_path, "iv.csv", HEADER + "\n".join([
        "M001,2026-10-25T01:30:00,0.1",   # 2 CEST (+02:00): 23:30 UTC
        "M001,2026-10-25T02:30:00,0.1",   # 3 twice that night: ambiguous
        "M001,2026-03-29T02:30:00,0.1",   # 4 skipped that night: no such time
        "M001,2026-10-25T02:30:00+01:00,0.1",  # 5 with its offset: fine
    ]) + "\n")
    res = run(seeded, "intervals", path, timezone="Europe/Berlin", interval_minutes=30)
    assert (res.accepted, res.rejected, res.duplicates) == (2, 2, 0)
    assert stored_ts(seeded) == [datetime(2026, 10, 24, 23, 30, tzinfo=UTC),
                                 datetime(2026, 10, 25, 1, 30, tzinfo=UTC)]
    rejected = (tmp_path / "iv.csv.rejected.csv").read_text(encoding="utf-8")
    assert rejected.count("ambiguous_local_time") == 2
    with pytest.raises(ValidationError, match="unknown time zone"):
        run(seeded, "intervals", path, timezone="Mars/Olympus")


@pytest.mark.parametrize(("head", "what"), [
    (b"PK\x03\x04\x14\x00\x06\x00", "Excel workbook"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "old Excel"),
    (b"\x1f\x8b\x08\x00", "gzip"),
    (b"\x00\x01\x02\x03" * 40, "NUL bytes"),
    (b"\xff\xfem\x00e\x00", "UTF-16"),
])
def test_a_binary_file_is_named_as_such(seeded: Database, tmp_path: Path, head: bytes,
                                        what: str) -> None:
    path = tmp_path / "reads.csv"
    path.write_bytes(head + b"rest of the file")
    with pytest.raises(ValidationError, match=f"a binary file, not CSV text.*{what}"):
        run(seeded, "reads", path)
    # and a text file named .parquet
    fake = write(tmp_path, "iv.parquet", HEADER + "M001,2026-03-01T00:00:00+08:00,1\n")
    with pytest.raises(ValidationError, match="not a Parquet file"):
        run(seeded, "intervals", fake)


def test_a_register_read_below_the_previous_one_is_flagged_at_import(
        seeded: Database, tmp_path: Path) -> None:
    first = write(tmp_path, "r1.csv", READS + "M001,2026-03-01T00:00:00+08:00,total,1000.00,ami\n"
                  "M002,2026-03-01T00:00:00+08:00,total,999990.00,ami\n")
    assert run(seeded, "reads", first).read_backwards == ()
    later = write(tmp_path, "r2.csv", READS + "\n".join([
        "M001,2026-04-01T00:00:00+08:00,total,990.00,ami",   # 2 backwards: flagged, stored
        "M002,2026-04-01T00:00:00+08:00,total,5.00,ami",     # 3 a rollover (6 digits): fine
        "M001,2026-04-01T00:00:00+08:00,peak,1.00,ami",      # 4 first read of its register
    ]) + "\n")
    res = run(seeded, "reads", later)
    assert (res.accepted, res.rejected, res.duplicates) == (3, 0, 0)
    assert res.read_backwards == ((2, "M001 total read 990.00 after 1000.00"),)
    # and, like a live reading, it is held for a person (plausibility: the register's range)
    assert res.to_json() == {"accepted": 3, "rejected": 0, "duplicates": 0, "read_backwards": 1,
                             "held": 1}
    # importing the same file again flags nothing new (nothing is stored again)
    again = run(seeded, "reads", later)
    assert again.duplicates == 3 and again.read_backwards == ()


def test_rejected_rows_exit_3_unless_tolerated(db_env: dict[str, str], tmp_path: Path) -> None:
    cust, met = write(tmp_path, "c.csv", CUSTOMERS), write(tmp_path, "m.csv", METERS)
    assert dianfei(db_env, "import", "customers", str(cust)).returncode == 0
    assert dianfei(db_env, "import", "meters", str(met)).returncode == 0
    rows = "".join(f"M001,2026-03-01T{h:02d}:00:00+08:00,1\n" for h in range(9))
    path = write(tmp_path, "iv.csv", HEADER + rows + "M404,2026-03-01T00:00:00+08:00,1\n")
    proc = dianfei(db_env, "import", "intervals", str(path), "--interval-minutes", "60", "--json")
    # the accepted rows are stored and counted; the exit code tells the scheduler
    assert proc.returncode == 3, proc.stderr
    assert json.loads(proc.stdout) == {"accepted": 9, "rejected": 1, "duplicates": 0}
    assert "1 of 10 rows rejected" in proc.stderr and "iv.csv.rejected.csv" in proc.stderr
    for tolerance, code in (("1", 0), ("10%", 0), ("9.9%", 3), ("0", 3)):
        proc = dianfei(db_env, "import", "intervals", str(path), "--interval-minutes", "60",
                       "--json", "--max-rejected", tolerance)
        assert proc.returncode == code, (tolerance, proc.stderr)
        assert json.loads(proc.stdout) == {"accepted": 0, "rejected": 1, "duplicates": 9}
    bad = dianfei(db_env, "import", "intervals", str(path), "--max-rejected", "lots")
    assert bad.returncode == 2 and "--max-rejected" in bad.stderr and bad.stdout == ""


def test_timezone_option_on_the_command_line(db_env: dict[str, str], tmp_path: Path) -> None:
    cust, met = write(tmp_path, "c.csv", CUSTOMERS), write(tmp_path, "m.csv", METERS)
    dianfei(db_env, "import", "customers", str(cust))
    dianfei(db_env, "import", "meters", str(met))
    path = write(tmp_path, "iv.csv", HEADER + "M001,2026-03-01T00:00:00,1\n")
    proc = dianfei(db_env, "import", "intervals", str(path), "--timezone", "UTC", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["accepted"] == 1
    out = dianfei(db_env, "vee", "findings", "--json")
    assert out.returncode == 0
    frame = pl.DataFrame(json.loads(out.stdout) or [], schema={"rule": pl.String})
    assert frame.height == 0
