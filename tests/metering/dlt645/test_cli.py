"""`dianfei meters read` and `dianfei meters control` as an operator (or a third-party peer's
harness) runs them: a real process talking to the simulated concentrator over TCP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest

from dianfei.metering.dlt645.simulator import Faults, MeterSimulator, SimMeter


def dianfei(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIANFEI_DLT645_")}
    return subprocess.run([sys.executable, "-m", "dianfei", *args], env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def sim() -> Iterator[MeterSimulator]:
    meters = [SimMeter("123456789012", total=Decimal("12345.67"),
                       tou=(Decimal("1000.00"), Decimal("4000.00"), Decimal("5000.00"), Decimal("2345.67")),
                       faults=Faults(preamble=False)),
              SimMeter("000000000002", total=Decimal("8.10"), password="02123456")]
    with MeterSimulator(meters) as s:
        yield s


def gateway(sim: MeterSimulator) -> list[str]:
    return ["--host", sim.host, "--port", str(sim.port)]


def test_read_json(sim: MeterSimulator) -> None:
    proc = dianfei("meters", "read", *gateway(sim), "--address", "123456789012", "--protocol", "dlt645",
                   "--json", env={"DIANFEI_NOW": "2026-03-09T10:00:00+08:00"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "address": "123456789012", "protocol": "dlt645", "read_at": "2026-03-09T10:00:00+08:00",
        "forward_active_kwh": "12345.67", "sharp_kwh": "1000.00", "peak_kwh": "4000.00",
        "flat_kwh": "5000.00", "valley_kwh": "2345.67", "reverse_active_kwh": "0.00"}


def test_read_single_rate_meter_lists_what_it_lacks(sim: MeterSimulator) -> None:
    proc = dianfei("meters", "read", *gateway(sim), "--address", "000000000002", "--json")
    out = json.loads(proc.stdout)
    assert out["forward_active_kwh"] == "8.10" and "valley_kwh" not in out
    assert out["unavailable"]["valley_kwh"] == "error reply: no requested data (无请求数据)"


def test_read_errors_are_one_clear_line(sim: MeterSimulator) -> None:
    proc = dianfei("meters", "read", *gateway(sim), "--address", "12345678901X", "--json")
    assert proc.returncode == 2
    assert proc.stderr == "error: address '12345678901X': '1X' is neither two digits nor the AA wildcard\n"
    sim.meters["123456789012"].faults = Faults(bad_checksum=99)
    proc = dianfei("meters", "read", *gateway(sim), "--address", "123456789012", "--timeout", "0.5")
    assert proc.returncode == 2 and proc.stderr.startswith("error: checksum")
    assert "Traceback" not in proc.stderr
    proc = dianfei("meters", "read", *gateway(sim), "--address", "123456789012", "--protocol", "modbus")
    assert proc.returncode == 2 and "protocol 'modbus' is not supported" in proc.stderr


def test_control_trip_then_close(sim: MeterSimulator) -> None:
    meter = sim.meters["000000000002"]
    env = {"DIANFEI_DLT645_PASSWORD": "02123456", "DIANFEI_DLT645_OPERATOR": "00000007"}
    proc = dianfei("meters", "control", *gateway(sim), "--address", "000000000002", "--action", "trip",
                   "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"address": "000000000002", "action": "trip", "ok": True,
                                       "reply": "0x9C", "relay": "tripped"}
    assert meter.relay == "tripped" and meter.commands[0][:2] == ("trip", "00000007")
    proc = dianfei("meters", "control", *gateway(sim), "--address", "000000000002", "--action", "close",
                   env=env)
    assert proc.returncode == 0 and meter.relay == "closed"


def test_control_refused_exits_non_zero_and_changes_nothing(sim: MeterSimulator) -> None:
    meter = sim.meters["000000000002"]  # its password is 123456, the default is 000000
    proc = dianfei("meters", "control", *gateway(sim), "--address", "000000000002", "--action", "trip",
                   "--json")
    assert proc.returncode == 2
    assert proc.stderr == ("error: meter 000000000002 refused (error reply 0xDC): "
                           "wrong password or not authorised (密码错/未授权)\n")
    assert json.loads(proc.stdout)["ok"] is False
    assert meter.relay == "closed"
    proc = dianfei("meters", "control", *gateway(sim), "--address", "000000000002", "--action", "open")
    assert proc.returncode == 2 and "--action must be trip or close" in proc.stderr
    assert len(meter.commands) == 1


def test_gateway_from_the_config_file(sim: MeterSimulator, tmp_path: object) -> None:
    from pathlib import Path

    cfg = Path(str(tmp_path)) / "dianfei.toml"
    cfg.write_text(f'[metering.dlt645]\nhost = "{sim.host}"\nport = {sim.port}\npassword = "02123456"\n')
    proc = dianfei("meters", "control", "--address", "000000000002", "--action", "trip",
                   env={"DIANFEI_CONFIG": str(cfg)})
    assert proc.returncode == 0, proc.stderr
    assert sim.meters["000000000002"].relay == "tripped"
