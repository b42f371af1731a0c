"""A read held as implausible is reviewed by a person: released, it counts from then on (for a
prepaid balance too); rejected, it stays out. One decision, audited; wrong requests are refused
with a message and change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from sqlalchemy import text

from dianfei.audit.service import verify
from dianfei.core.clock import FixedClock
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.db.engine import Database
from dianfei.metering.service import reads_of_mode_between, store_reads
from dianfei.metering.vee import service as vee
from dianfei.metering.vee.plausibility import hold_implausible
from tests.collections.test_prepay import daily_reads, prepaid

CLOCK = FixedClock(datetime(2026, 3, 2, 10, tzinfo=UTC))
HUGE_AT = datetime(2026, 3, 1, 16, tzinfo=UTC)  # 2 March 00:00 in Beijing


def _held_prepaid_read(db: Database) -> None:
    """Prepaid P (meter MP) read 10 kWh a day for ten days, then 50,000 kWh: held."""
    prepaid(db, ["P"])
    daily_reads(db, "MP", {date(2026, 2, 20) + timedelta(days=i): 1000 + 10 * i for i in range(10)})
    huge = pl.DataFrame({"meter_id": ["MP"], "read_at": [HUGE_AT], "register": ["total"],
                         "value": [5_000_000], "source": ["ami"]},
                        schema={"meter_id": pl.String, "read_at": pl.Datetime("us", "UTC"),
                                "register": pl.String, "value": pl.Int64, "source": pl.String})
    with db.engine.begin() as conn:
        store_reads(conn, huge)
    assert hold_implausible(db, CLOCK, huge.select("meter_id", "read_at", "register")) == 1


def _counted(db: Database) -> list[int]:
    got = reads_of_mode_between(db.engine, "prepaid", HUGE_AT - timedelta(hours=1),
                                HUGE_AT + timedelta(hours=1))
    return got["value"].to_list()


def _reviews(db: Database) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(text(
            "SELECT decision, decided_by FROM vee_read_reviews ORDER BY meter_id"))]


def test_a_released_read_counts_a_rejected_one_never(db: Database) -> None:
    _held_prepaid_read(db)
    assert _counted(db) == []  # held: not used for the prepaid balance
    # wrong requests: refused, naming what is wrong; nothing stored
    with pytest.raises(ValidationError, match="decision must be one of release, reject"):
        vee.review_held_read(db, CLOCK, meter_id="MP", read_at=HUGE_AT, decision="approve",
                             by="li", reason="checked on site")
    with pytest.raises(ValidationError, match="a reason is required"):
        vee.review_held_read(db, CLOCK, meter_id="MP", read_at=HUGE_AT, decision="release",
                             by="li", reason=" ")
    with pytest.raises(NotFoundError, match="no held read of meter MP at 2026-03-01T17:00:00"):
        vee.review_held_read(db, CLOCK, meter_id="MP", read_at=HUGE_AT + timedelta(hours=1),
                             decision="release", by="li", reason="checked on site")
    assert _reviews(db) == []
    # released: the meter did register it (a meter test on site) — it counts from now on
    out = vee.review_held_read(db, CLOCK, meter_id="MP", read_at=HUGE_AT, decision="release",
                               by="li", reason="meter tested on site: the register is right")
    assert (out["decision"], out["recorded"]) == ("released", True)
    assert _counted(db) == [5_000_000]
    # the same decision again changes nothing; the other one is refused
    again = vee.review_held_read(db, CLOCK, meter_id="MP", read_at=HUGE_AT, decision="release",
                                 by="wang", reason="again")
    assert (again["recorded"], again["decided_by"]) == (False, "li")
    with pytest.raises(ConflictError, match="already released by li"):
        vee.review_held_read(db, CLOCK, meter_id="MP", read_at=HUGE_AT, decision="reject",
                             by="wang", reason="no")
    assert _reviews(db) == [("released", "li")]
    with db.engine.connect() as conn:
        actions = [(r[0], r[1]) for r in conn.execute(text(
            "SELECT action, subject FROM audit_records WHERE action LIKE 'read.%'"))]
    assert actions == [("read.released", "MP")]
    assert verify(db.engine).intact


def test_a_rejected_read_stays_out_through_the_cli(db: Database, db_env: dict[str, str]) -> None:
    _held_prepaid_read(db)
    proc = subprocess.run(
        [sys.executable, "-m", "dianfei", "vee", "review", "--meter", "MP", "--at",
         "2026-03-02T00:00:00+08:00", "--decision", "reject", "--reason", "gateway test value",
         "--user", "zhao", "--json"],
        env={**os.environ, **db_env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["meter_id"], out["decision"], out["decided_by"]) == ("MP", "rejected", "zhao")
    assert _counted(db) == []
    bad = subprocess.run(
        [sys.executable, "-m", "dianfei", "vee", "review", "--meter", "MP", "--at",
         "2026-03-02T00:00:00", "--decision", "release", "--reason", "x", "--json"],
        env={**os.environ, **db_env}, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--at needs a UTC offset" in bad.stderr
    assert _reviews(db) == [("rejected", "zhao")]


def test_a_reads_file_is_judged_like_a_live_reading(db: Database, db_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    """An impossible read in an imported file is stored but held (the import says so), a
    plausible one is not; re-importing the file holds nothing twice."""
    prepaid(db, ["P"])
    daily_reads(db, "MP", {date(2026, 2, 20) + timedelta(days=i): 1000 + 10 * i for i in range(10)})
    src = tmp_path / "reads.csv"
    src.write_text("meter_id,read_at,register,value,source\n"
                   "MP,2026-03-02T00:00:00+08:00,total,50000.00,manual\n", encoding="utf-8")
    ok = tmp_path / "ok.csv"
    ok.write_text("meter_id,read_at,register,value,source\n"
                  "MP,2026-03-03T00:00:00+08:00,total,1110.00,manual\n", encoding="utf-8")

    def imp(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dianfei", "import", "reads", str(path),
                               "--json"], env={**os.environ, **db_env}, capture_output=True,
                              text=True, timeout=120)

    first = imp(src)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"accepted": 1, "rejected": 0, "duplicates": 0, "held": 1}
    assert "1 register reads held as implausible" in first.stderr
    held = vee.findings(db, rule="implausible_read")
    assert held.select("meter_id", "ref").rows() == [("MP", "total")]
    assert _counted(db) == []
    assert json.loads(imp(src).stdout) == {"accepted": 0, "rejected": 0, "duplicates": 1}
    assert json.loads(imp(ok).stdout) == {"accepted": 1, "rejected": 0, "duplicates": 0}
    assert vee.findings(db, rule="implausible_read").height == 1
