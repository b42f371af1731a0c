"""Per-meter gateways, broadcast time sync and clock drift, against two simulated concentrators
over real TCP (each a separate bus with its own meters)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from dianfei.core.clock import FixedClock
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.db.engine import Database
from dianfei.metering.clocks import drift, sync_time
from dianfei.metering.dlt645 import frame as f
from dianfei.metering.dlt645.client import Dlt645Config
from dianfei.metering.dlt645.simulator import MeterSimulator, SimMeter
from dianfei.metering.gateways import Gateway, add_gateway, assign_gateway, gateways
from dianfei.metering.poll import poll
from dianfei.metering.service import remote_switch
from tests.metering.live.conftest import address, load_meters

#: 2026-11-02 10:30:45 Beijing time
NOW = FixedClock(datetime(2026, 11, 2, 2, 30, 45, tzinfo=UTC))
#: the broadcast time sync for that instant, worked out by hand from DL/T 645-2007: preamble,
#: 68, address 99×6, 68, control 08, length 06, ss mm hh DD MM YY (45 30 10 02 11 26) + 33H each,
#: checksum (sum from the first 68, mod 256), 16
SYNC_FRAME = "FE FE FE FE 68 99 99 99 99 99 99 68 08 06 78 63 43 35 44 59 64 16"


def wait_for(check: object, what: str) -> None:
    """A broadcast has no reply: wait (bounded) until the simulator has handled it."""
    for _ in range(200):
        if callable(check) and check():
            return
        time.sleep(0.01)
    raise AssertionError(f"simulator never {what}")


@pytest.fixture
def sims() -> Iterator[tuple[MeterSimulator, MeterSimulator]]:
    # bus A: meters 1 and 3 (factory password); bus B: meter 2, password 02123456
    a = MeterSimulator([SimMeter(address(1), total=Decimal("100.00")),
                        SimMeter(address(3), total=Decimal("300.00"))], now=NOW)
    b = MeterSimulator([SimMeter(address(2), total=Decimal("200.00"), password="02123456")], now=NOW)
    with a, b:
        yield a, b


def routed(db: Database, a: MeterSimulator, b: MeterSimulator) -> Dlt645Config:
    """MC001 via gateway GA (bus A), MC002 via GB (bus B, its own password and operator code),
    MC003 via the configured default gateway (bus A). Returns the configured settings."""
    load_meters(db, 3)
    add_gateway(db, NOW, Gateway("GA", a.host, a.port))
    add_gateway(db, NOW, Gateway("GB", b.host, b.port, password="02123456", operator="00000042"))
    assign_gateway(db, "MC001", "GA")
    assign_gateway(db, "MC002", "GB")
    return Dlt645Config(host=a.host, port=a.port, timeout_s=0.3, retries=1)


def test_sync_frame_is_byte_exact() -> None:
    request = f.broadcast_time_request(datetime(2026, 11, 2, 10, 30, 45))
    assert f.encode_frame(request).hex(" ").upper() == SYNC_FRAME
    assert f.decode_frame(bytes.fromhex(SYNC_FRAME)) == request
    # the meter's clock: 04000101 YYMMDDWW (a Monday) and 04000102 hhmmss, low byte first
    assert f.encode_meter_date(datetime(2026, 11, 2)) == bytes.fromhex("01 02 11 26")
    assert f.meter_clock(bytes.fromhex("01 02 11 26"), bytes.fromhex("45 30 10")) == \
        datetime(2026, 11, 2, 10, 30, 45)
    assert f.encode_di(f.DI_DATE) == bytes.fromhex("01 01 00 04")


def test_each_meter_is_switched_through_its_own_gateway(db: Database, sims) -> None:  # type: ignore[no-untyped-def]
    a, b = sims
    cfg = routed(db, a, b)
    rs = remote_switch(db, config=cfg, clock=NOW)
    assert [rs.trip(m).ok for m in ("MC001", "MC002", "MC003")] == [True, True, True]
    # MC002 sits on bus B and took GB's password and operator code, not the configured ones
    assert b.meters[address(2)].relay == "tripped"
    assert b.meters[address(2)].commands[0][:2] == ("trip", "00000042")
    assert [m.relay for m in a.meters.values()] == ["tripped", "tripped"]
    assert b.frames_received == 1  # and nothing else went to bus B


def test_a_meter_routed_to_a_missing_gateway_is_reported(db: Database, sims) -> None:  # type: ignore[no-untyped-def]
    a, b = sims
    cfg = routed(db, a, b)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE meters SET gateway_id = 'GONE' WHERE meter_id = 'MC003'"))
    got = remote_switch(db, config=cfg, clock=NOW).trip("MC003")
    assert (got.ok, got.retryable, got.detail) == (
        False, False, "meter MC003 names gateway GONE, which is not on file")
    # without a configured gateway, a meter with its own still works; one without is refused
    rs = remote_switch(db, config=Dlt645Config(timeout_s=0.3), clock=NOW)
    assert rs.trip("MC002").ok is True
    assert assign_gateway(db, "MC003", "default").gateway_id is None
    assert rs.trip("MC003").detail.startswith("no DL/T 645 gateway configured")


def test_gateways_are_checked_and_stored_once(db: Database) -> None:
    gw = Gateway("GA", "10.0.0.5", 8899, password="02123456")
    assert add_gateway(db, NOW, gw) == add_gateway(db, NOW, gw)  # a retry is stored once
    assert list(gateways(db)) == ["GA"]
    assert gw.to_json()["password_set"] is True and "02123456" not in json.dumps(gw.to_json())
    with pytest.raises(ConflictError, match="gateway GA is on file with other settings"):
        add_gateway(db, NOW, Gateway("GA", "10.0.0.6", 8899))
    for bad, why in ((Gateway("default", "h", 1), "reserved"), (Gateway("G2", "h", 70000), "port 70000"),
                     (Gateway("G3", "h", 1, protocol="modbus"), "protocol 'modbus'"),
                     (Gateway("G4", "h", 1, password="123"), "8 hex digits")):
        with pytest.raises(ValidationError, match=why):
            add_gateway(db, NOW, bad)
    with pytest.raises(NotFoundError, match="gateway NOPE is not on file"):
        assign_gateway(db, "MC001", "NOPE")
    with db.engine.connect() as conn:
        actions = conn.execute(text("SELECT action, subject FROM audit_records "
                                    "WHERE action LIKE 'meters.%' ORDER BY seq")).all()
    assert [tuple(a) for a in actions] == [("meters.gateway_added", "GA")]  # once, refusals none


def test_poll_reads_every_gateway_and_checks_clocks(db: Database, sims) -> None:  # type: ignore[no-untyped-def]
    a, b = sims
    cfg = routed(db, a, b)
    b.meters[address(2)].clock_offset = timedelta(seconds=-95)
    result = poll(db, cfg, clock=NOW, concurrency=2, check_clock=True)
    assert (result.meters, result.succeeded, result.failed, result.accepted) == (3, 3, 0, 3)
    assert result.clock_checks == 3
    assert drift(db, 60).select("meter_id", "gateway", "drift_s").rows() == [("MC002", "GB", -95)]
    assert drift(db, 100).height == 0
    with db.engine.connect() as conn:
        origin = conn.execute(text("SELECT origin FROM import_batches")).scalar()
    assert origin == "dlt645 (2 gateways)"


def test_time_sync_per_gateway_and_the_drift_it_leaves(db: Database, sims) -> None:  # type: ignore[no-untyped-def]
    a, b = sims
    cfg = routed(db, a, b)
    a.meters[address(1)].clock_offset = timedelta(seconds=90)   # a broadcast can fix this
    a.meters[address(3)].clock_offset = timedelta(minutes=10)   # beyond what a meter takes
    b.meters[address(2)].clock_offset = timedelta(seconds=-30)
    # only gateway GA: bus B hears nothing
    [one] = sync_time(db, cfg, NOW, gateway_id="GA")
    assert (one.gateway, one.ok, one.frame) == ("GA", True, SYNC_FRAME)
    wait_for(lambda: len(a.meters[address(3)].time_syncs) == 1, "heard the sync")
    assert a.meters[address(1)].time_syncs == [(datetime(2026, 11, 2, 10, 30, 45), True)]
    assert a.meters[address(3)].time_syncs == [(datetime(2026, 11, 2, 10, 30, 45), False)]
    assert b.meters[address(2)].time_syncs == [] and b.frames_received == 0
    # every gateway: the configured default (bus A) and GA, GB
    every = sync_time(db, cfg, NOW)
    assert [(r.gateway, r.ok) for r in every] == [("default", True), ("GA", True), ("GB", True)]
    wait_for(lambda: len(b.meters[address(2)].time_syncs) == 1, "heard the sync on bus B")
    poll(db, cfg, clock=NOW, check_clock=True)
    assert drift(db, 60).select("meter_id", "drift_s").rows() == [("MC003", 600)]
    with db.engine.connect() as conn:
        actions = conn.execute(text("SELECT count(*) FROM audit_records WHERE action = 'meters.timesync'")
                               ).scalar()
    assert actions == 2


def test_time_sync_refused_near_midnight_and_unreachable_gateway_reported(db: Database, sims) -> None:  # type: ignore[no-untyped-def]
    a, b = sims
    cfg = routed(db, a, b)
    late = FixedClock(datetime(2026, 11, 2, 15, 57, 0, tzinfo=UTC))  # 23:57 Beijing time
    with pytest.raises(ValidationError, match="within 5 minutes of midnight"):
        sync_time(db, cfg, late, gateway_id="GA")
    add_gateway(db, NOW, Gateway("DOWN", "127.0.0.1", 1))
    [down] = sync_time(db, cfg, NOW, gateway_id="DOWN")
    assert (down.ok, down.retryable) == (False, True)
    assert down.error is not None and down.error.startswith("gateway 127.0.0.1:1 unreachable")
    with pytest.raises(NotFoundError, match="gateway NOPE is not on file"):
        sync_time(db, cfg, NOW, gateway_id="NOPE")


def test_timesync_and_drift_commands(db: Database, db_env: dict[str, str], sims) -> None:  # type: ignore[no-untyped-def]
    a, b = sims
    routed(db, a, b)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DIANFEI_DLT645_")}, **db_env,
           "DIANFEI_NOW": "2026-11-02T10:30:45+08:00", "DIANFEI_DLT645_TIMEOUT": "0.5"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dianfei", "meters", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    proc = run("timesync", "--gateway", "GB", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"gateways": [{
        "gateway": "GB", "host": b.host, "port": b.port, "sent_time": "2026-11-02T10:30:45",
        "frame": SYNC_FRAME, "ok": True, "error": None, "retryable": False}], "sent": 1, "failed": 0}
    a.meters[address(1)].clock_offset = timedelta(seconds=-75)
    proc = run("poll", "--meter", "MC001", "--check-clock", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["clock_checks"] == 1
    proc = run("drift", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"tolerance_s": 60, "meters": [{
        "meter_id": "MC001", "gateway": "GA", "drift_s": -75,
        "received_at": "2026-11-02T10:30:45+08:00", "meter_time": "2026-11-02T10:29:30+08:00"}]}
    proc = run("gateway", "list", "--json")
    assert [g["gateway"] for g in json.loads(proc.stdout)] == ["GA", "GB"]
    proc = run("timesync", "--gateway", "NOPE")
    assert proc.returncode == 2
    assert proc.stderr == "error: gateway NOPE is not on file (dianfei meters gateway list)\n"


def test_collect_run_needs_a_gateway_somewhere(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from dianfei.metering.control import checked_remote_switch

    for key in [k for k in os.environ if k.startswith("DIANFEI_DLT645_")]:
        monkeypatch.delenv(key)
    with pytest.raises(ValidationError, match="meter control is not configured"):
        checked_remote_switch(db, clock=NOW)
    add_gateway(db, NOW, Gateway("GA", "127.0.0.1", 8899))
    assert checked_remote_switch(db, clock=NOW) is not None  # its meters are reachable
