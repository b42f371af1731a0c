"""The remote switch collections uses to suspend and reconnect supply, against the simulator."""

from __future__ import annotations

from datetime import UTC, datetime

from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.metering.dlt645.client import Dlt645Config
from dianfei.metering.dlt645.simulator import Faults, MeterSimulator
from dianfei.metering.service import CommandResult, remote_switch
from tests.metering.live.conftest import load_meters

NOW = FixedClock(datetime(2026, 11, 2, 2, 0, tzinfo=UTC))


def switch(db: Database, sim: MeterSimulator, **kw: object):  # type: ignore[no-untyped-def]
    sim.now = NOW
    cfg = Dlt645Config(host=sim.host, port=sim.port, timeout_s=0.3, retries=1, **kw)  # type: ignore[arg-type]
    return remote_switch(db, config=cfg, clock=NOW)


def test_trip_then_close_a_meter_by_its_id(db: Database, sim: MeterSimulator) -> None:
    # given a meter MC002 at communication address 000000000002
    load_meters(db, 3)
    rs = switch(db, sim)
    # when collections suspends and later reconnects it
    assert rs.trip("MC002") == CommandResult("MC002", "trip", True,
                                             "meter 000000000002 confirmed trip (reply 0x9C)", False)
    assert sim.meters["000000000002"].relay == "tripped"
    # then only that meter's relay moved
    assert [m.relay for a, m in sorted(sim.meters.items())] == ["closed", "tripped", "closed", "closed",
                                                                 "closed"]
    assert rs.close("MC002").ok is True
    assert sim.meters["000000000002"].relay == "closed"


def test_refusal_is_terminal_and_line_faults_are_retryable(db: Database, sim: MeterSimulator) -> None:
    load_meters(db, 2)
    refused = switch(db, sim, password="02999999").trip("MC001")
    assert (refused.ok, refused.retryable) == (False, False)
    assert refused.detail == ("meter 000000000001 refused (error reply 0xDC): "
                              "wrong password or not authorised (密码错/未授权)")
    sim.meters["000000000002"].faults = Faults(silent=-1)
    silent = switch(db, sim).trip("MC002")
    assert (silent.ok, silent.retryable) == (False, True)
    assert silent.detail.startswith("no reply from meter 000000000002")
    # and neither relay moved
    assert sim.meters["000000000001"].relay == sim.meters["000000000002"].relay == "closed"


def test_master_data_problems_are_reported_not_raised(db: Database, sim: MeterSimulator) -> None:
    load_meters(db, 1)
    rs = switch(db, sim)
    assert rs.trip("NOPE") == CommandResult("NOPE", "trip", False, "meter NOPE not found", False)
    unconfigured = remote_switch(db, config=Dlt645Config(), clock=NOW).close("MC001")
    assert (unconfigured.ok, unconfigured.retryable) == (False, False)
    assert unconfigured.detail.startswith("no DL/T 645 gateway configured")
    from sqlalchemy import text

    with db.engine.begin() as conn:
        conn.execute(text("UPDATE meters SET comm_address = NULL WHERE meter_id = 'MC001'"))
    got = rs.trip("MC001")
    assert (got.ok, got.retryable, got.detail) == (
        False, False, "meter MC001 has no communication address (comm_address)")
    assert sim.frames_received == 0  # nothing was sent


def test_gateway_from_settings(db: Database, sim: MeterSimulator, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    load_meters(db, 1)
    sim.now = NOW
    monkeypatch.setenv("DIANFEI_DLT645_HOST", sim.host)
    monkeypatch.setenv("DIANFEI_DLT645_PORT", str(sim.port))
    assert remote_switch(db, clock=NOW).trip("MC001").ok is True
