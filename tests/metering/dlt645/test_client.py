"""The TCP master against the simulated concentrator: reads, trip/close, and every fault a line
can produce — each a clear typed error, retried only when retrying can help."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from dianfei.core.clock import FixedClock
from dianfei.core.errors import ValidationError
from dianfei.core.settings import Settings
from dianfei.metering.dlt645 import frame as f
from dianfei.metering.dlt645.client import (
    Dlt645Client,
    Dlt645Config,
    control_sync,
    load_config,
    read_meter_sync,
)
from dianfei.metering.dlt645.simulator import Faults, MeterSimulator, SimMeter

TOU = (Decimal("10.00"), Decimal("40.50"), Decimal("50.25"), Decimal("23.00"))
NOW = datetime(2026, 3, 9, 2, 0, tzinfo=UTC)  # 10:00 Beijing time


@pytest.fixture
def sim() -> Iterator[MeterSimulator]:
    meters = [SimMeter("123456789012", total=Decimal("123.75"), tou=TOU, reverse=Decimal("1.5")),
              SimMeter("000000000002", total=Decimal("999999.99"))]
    with MeterSimulator(meters, now=datetime(2026, 3, 9, 10, 0)) as s:
        yield s


def cfg(sim: MeterSimulator, **kw: object) -> Dlt645Config:
    host, port = sim.address
    base = {"host": host, "port": port, "timeout_s": 0.3, "retries": 2}
    return Dlt645Config(**{**base, **kw})  # type: ignore[arg-type]


def read(sim: MeterSimulator, address: str, **kw: object) -> tuple[dict[str, Decimal], dict[str, str]]:
    r = read_meter_sync(cfg(sim, **kw), address, clock=FixedClock(NOW))
    assert r.address == address and r.read_at == NOW
    return r.values, r.unavailable


def test_reads_total_tou_and_reverse(sim: MeterSimulator) -> None:
    values, unavailable = read(sim, "123456789012")
    assert values == {"total": Decimal("123.75"), "sharp": Decimal("10.00"), "peak": Decimal("40.50"),
                      "flat": Decimal("50.25"), "valley": Decimal("23.00"), "reverse": Decimal("1.50")}
    assert unavailable == {}


def test_single_rate_meter_reports_tou_registers_as_unavailable(sim: MeterSimulator) -> None:
    values, unavailable = read(sim, "000000000002")
    assert values == {"total": Decimal("999999.99"), "reverse": Decimal("0.00")}
    assert unavailable == {r: "error reply: no requested data (无请求数据)"
                           for r in ("sharp", "peak", "flat", "valley")}


def test_meter_silent_for_unknown_registers_costs_one_timeout(sim: MeterSimulator) -> None:
    # given a single-rate meter that ignores data identifiers it does not have
    meter = sim.add(SimMeter("000000000005", total=Decimal("42.00"), answers_unknown=False))
    # when all registers are asked for
    values, unavailable = read(sim, "000000000005")
    # then the total is read, the first optional register timed out (two attempts), the rest not asked
    assert values == {"total": Decimal("42.00")}
    assert unavailable["sharp"].startswith("no reply from meter 000000000005")
    assert {k: v for k, v in unavailable.items() if k != "sharp"} == {
        r: "not asked: the meter did not answer for sharp" for r in ("peak", "flat", "valley", "reverse")}
    assert meter.reads == 3


def test_block_read_is_one_round_trip_with_fallback(sim: MeterSimulator) -> None:
    async def go(address: str) -> dict[str, Decimal]:
        async with Dlt645Client(*sim.address, timeout_s=0.3) as c:
            return (await c.read_meter(address, ("total", "sharp", "peak", "flat", "valley"),
                                       block=True)).values

    assert asyncio.run(go("123456789012"))["valley"] == Decimal("23.00")
    assert sim.meters["123456789012"].reads == 1
    # the single-rate meter refuses the block: total is read alone, TOU reported unavailable
    assert asyncio.run(go("000000000002")) == {"total": Decimal("999999.99")}


def test_read_address_asks_the_line(sim: MeterSimulator) -> None:
    with MeterSimulator([SimMeter("000000000777", total=Decimal("7"))]) as one:
        r = read_meter_sync(cfg(one), None, registers=("total",))
    assert (r.address, r.values) == ("000000000777", {"total": Decimal("7.00")})


@pytest.mark.parametrize("faults", [
    Faults(preamble=False), Faults(split=True), Faults(garbage=b"\x00\xff\x13"),
    Faults(bad_checksum=1), Faults(wrong_address=2), Faults(silent=1),
], ids=["no-preamble", "split", "noise", "checksum-once", "wrong-address-twice", "silent-once"])
def test_recoverable_line_faults(sim: MeterSimulator, faults: Faults) -> None:
    sim.meters["123456789012"].faults = faults
    values, _ = read(sim, "123456789012")
    assert values["total"] == Decimal("123.75") and values["valley"] == Decimal("23.00")


@pytest.mark.parametrize(("faults", "error", "message"), [
    (Faults(bad_checksum=3), f.ChecksumError, "checksum"),
    (Faults(wrong_address=3), f.AddressMismatchError,
     "asked meter 123456789012, reply came from 123456789013"),
    (Faults(silent=-1), f.MeterTimeout, "no reply from meter 123456789012 via 127.0.0.1:.* within 0.3 s"),
])
def test_persistent_faults_fail_after_the_retries(sim: MeterSimulator, faults: Faults,
                                                  error: type[Exception], message: str) -> None:
    meter = sim.meters["123456789012"]
    meter.faults = faults
    with pytest.raises(error, match=message) as info:
        read(sim, "123456789012")
    assert getattr(info.value, "retryable", False) is True
    if faults.silent == 0:
        assert meter.reads == 3  # the first attempt and two retries, then it gives up


def test_error_reply_is_not_retried(sim: MeterSimulator) -> None:
    meter = sim.meters["123456789012"]
    meter.faults = Faults(error_reply=1, error_word=0x01)
    with pytest.raises(f.ErrorReply, match=r"meter 123456789012 refused \(error reply 0xD1\): other error"):
        read(sim, "123456789012")
    assert meter.reads == 1


def test_unknown_meter_times_out(sim: MeterSimulator) -> None:
    with pytest.raises(f.MeterTimeout, match="no reply from meter 000000000099"):
        read(sim, "000000000099", retries=0)


def test_gateway_down_is_a_retryable_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(f.MeterTimeout, match=f"gateway 127.0.0.1:{port} unreachable") as info:
        read_meter_sync(Dlt645Config(host="127.0.0.1", port=port, timeout_s=0.3, retries=1), "000000000001")
    assert info.value.retryable


def test_trip_and_close_with_password_and_operator(sim: MeterSimulator) -> None:
    meter = sim.meters["123456789012"]
    c = cfg(sim, operator="00001234")
    reply = control_sync(c, "123456789012", "trip", clock=FixedClock(NOW))
    assert reply.control == 0x9C
    assert meter.relay == "tripped"
    assert meter.commands == [("trip", "00001234", datetime(2026, 3, 9, 10, 10), True)]
    control_sync(c, "123456789012", "close", clock=FixedClock(NOW))
    assert meter.relay == "closed"


def test_wrong_password_is_refused_and_the_relay_stays(sim: MeterSimulator) -> None:
    meter = sim.meters["123456789012"]
    with pytest.raises(f.ErrorReply, match=r"error reply 0xDC\): wrong password"):
        control_sync(cfg(sim, password="02999999"), "123456789012", "trip", clock=FixedClock(NOW))
    assert meter.relay == "closed"
    assert len(meter.commands) == 1 and meter.commands[0][3] is False  # tried once, never repeated


def test_expired_command_is_refused_by_the_meter(sim: MeterSimulator) -> None:
    stale = FixedClock(NOW - timedelta(hours=1))  # the command expired 50 minutes ago
    with pytest.raises(f.ErrorReply, match="other error"):
        control_sync(cfg(sim), "123456789012", "trip", clock=stale)
    assert sim.meters["123456789012"].relay == "closed"


def test_config_from_environment_and_file() -> None:
    settings = Settings(database_url="sqlite://", data_dir=__import__("pathlib").Path("var"), raw={
        "metering": {"dlt645": {"host": "10.0.0.5", "port": 8899, "password": "04123456",
                                "retries": 5, "timeout_s": 1.5}}})
    c = load_config(settings, env={})
    assert (c.host, c.port, c.password, c.retries, c.timeout_s, c.operator) == \
        ("10.0.0.5", 8899, "04123456", 5, 1.5, "00000000")
    c = load_config(settings, env={"DIANFEI_DLT645_PASSWORD": "02000001", "DIANFEI_DLT645_PORT": "9000"})
    assert (c.password, c.port) == ("02000001", 9000)
    assert load_config(None, env={}) == Dlt645Config()
    with pytest.raises(ValidationError, match="password must be 8 hex digits"):
        load_config(None, env={"DIANFEI_DLT645_PASSWORD": "123"})
    with pytest.raises(ValidationError, match="no DL/T 645 gateway"):
        Dlt645Config().gateway()
