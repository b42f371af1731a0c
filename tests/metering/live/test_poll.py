"""Polling many meters over DL/T 645 into the import path: every meter read or reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

from sqlalchemy import text

from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.metering.dlt645.client import Dlt645Config
from dianfei.metering.dlt645.simulator import Faults, MeterSimulator
from dianfei.metering.poll import PollFailure, poll
from tests.metering.live.conftest import load_meters

CLOCK = FixedClock(datetime(2026, 3, 1, 1, 0, 7, tzinfo=UTC))


def cfg(sim: MeterSimulator) -> Dlt645Config:
    return Dlt645Config(host=sim.host, port=sim.port, timeout_s=0.3, retries=1)


def stored(db: Database) -> list[tuple[str, str, int]]:
    with db.engine.connect() as conn:
        return [(r[0], r[1], int(r[2])) for r in conn.execute(text(
            "SELECT meter_id, register, value FROM register_reads ORDER BY meter_id, register"))]


def test_poll_reads_every_meter_and_reports_the_silent_one(db: Database, sim: MeterSimulator) -> None:
    # given five meters on the gateway, MC001 a time-of-use meter, MC004 not answering
    load_meters(db, 5)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE meters SET registers = 'total,sharp,peak,flat,valley,kvarh' "
                          "WHERE meter_id = 'MC001'"))
    sim.meters["000000000004"].faults = Faults(silent=-1)
    # when they are polled two at a time
    result = poll(db, cfg(sim), clock=CLOCK, concurrency=2)
    # then four are read and stored through the import path, the fifth is reported with its reason
    assert (result.meters, result.succeeded, result.failed) == (5, 4, 1)
    assert (result.reads, result.accepted, result.rejected, result.duplicates) == (8, 8, 0, 0)
    assert result.failures == [PollFailure(
        "MC004", "000000000004",
        f"no reply from meter 000000000004 via 127.0.0.1:{sim.port} within 0.3 s", True)]
    assert stored(db) == [
        ("MC001", "flat", 40000), ("MC001", "peak", 30000), ("MC001", "sharp", 10000),
        ("MC001", "total", 100025), ("MC001", "valley", 20025),
        ("MC002", "total", 200025), ("MC003", "total", 300025), ("MC005", "total", 500025)]
    assert sim.max_connections <= 2
    with db.engine.connect() as conn:
        read_at = conn.execute(text("SELECT DISTINCT read_at FROM register_reads")).scalars().all()
    assert [str(x)[:19] for x in read_at] == ["2026-03-01 01:00:07"]
    # and polling again at the same instant stores nothing twice
    again = poll(db, cfg(sim), clock=CLOCK, concurrency=8)
    assert (again.accepted, again.duplicates, again.failed) == (0, 8, 1)
    assert len(stored(db)) == 8


def test_poll_a_list_reports_unknown_and_unaddressed_meters(db: Database, sim: MeterSimulator) -> None:
    load_meters(db, 2)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE meters SET comm_address = NULL WHERE meter_id = 'MC002'"))
    result = poll(db, cfg(sim), clock=CLOCK, meter_ids=["MC001", "MC002", "GHOST"])
    assert (result.meters, result.succeeded, result.accepted) == (3, 1, 1)
    assert [(f.meter_id, f.reason, f.retryable) for f in result.failures] == [
        ("GHOST", "meter GHOST not found", False),
        ("MC002", "no communication address (comm_address)", False)]
    assert sim.meters["000000000002"].reads == 0


def test_meter_refusing_its_tou_registers_is_read_and_reported(db: Database, sim: MeterSimulator) -> None:
    load_meters(db, 1, registers="total,peak,valley")
    sim.meters["000000000001"].tou = None  # the meter is single-rate after all
    result = poll(db, cfg(sim), clock=CLOCK)
    assert (result.succeeded, result.accepted) == (1, 1)
    assert result.unavailable == [("MC001", "peak", "error reply: no requested data (无请求数据)"),
                                  ("MC001", "valley", "error reply: no requested data (无请求数据)")]


def test_poll_command(db: Database, db_env: dict[str, str], sim: MeterSimulator) -> None:
    load_meters(db, 3)
    sim.meters["000000000003"].faults = Faults(error_reply=5)
    proc = subprocess.run(
        [sys.executable, "-m", "dianfei", "meters", "poll", "--host", sim.host, "--port", str(sim.port),
         "--concurrency", "2", "--timeout", "0.5", "--json"],
        env={**os.environ, **db_env, "DIANFEI_NOW": "2026-03-01T09:00:00+08:00"},
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {k: out[k] for k in ("meters", "succeeded", "failed", "accepted", "duplicates")} == \
        {"meters": 3, "succeeded": 2, "failed": 1, "accepted": 2, "duplicates": 0}
    refused = "meter 000000000003 refused (error reply 0xD1): other error (其他错误)"
    assert out["failures"] == [{"meter_id": "MC003", "address": "000000000003", "retryable": False,
                                "reason": refused}]


def test_a_polled_read_no_meter_could_register_is_held(db: Database, sim: MeterSimulator) -> None:
    """The simulator's MC001 shows 1,000.25 kWh; an hour before, 100.00 was stored: 900 kWh in
    an hour is held for a person (VEE finding implausible_read), MC002 is not."""
    import polars as pl

    from dianfei.metering.service import store_reads
    from dianfei.metering.vee import service as vee

    load_meters(db, 2)
    before = datetime(2026, 3, 1, 0, 0, 7, tzinfo=UTC)
    with db.engine.begin() as conn:
        store_reads(conn, pl.DataFrame(
            {"meter_id": ["MC001", "MC002"], "read_at": [before, before], "register": "total",
             "value": [10_000, 199_900], "source": "ami"},
            schema={"meter_id": pl.String, "read_at": pl.Datetime("us", "UTC"),
                    "register": pl.String, "value": pl.Int64, "source": pl.String}))
    result = poll(db, cfg(sim), clock=CLOCK, meter_ids=["MC001", "MC002"])
    assert result.accepted == 2
    held = vee.findings(db, rule="implausible_read")
    assert held.select("meter_id", "ts").rows() == [("MC001", CLOCK.now())]
    assert "implies 900.25 kWh in 1.00 h, more than the meter can register" in held["detail"][0]
