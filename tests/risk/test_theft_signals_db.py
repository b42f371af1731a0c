"""The night/day and station line-loss theft signals on a real database (SQLite and
PostgreSQL): time-of-use bills issued by the bill run carry the valley energy, the stations'
supply comes in through ``dianfei import stations``, and the inspection worklist names both
thieves with the signals that found them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from dianfei.billing.service import run_bill_run
from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
from dianfei.db.engine import Database
from dianfei.metering import service as metering
from dianfei.risk import service as risk
from tests.factories import Person, Reads, load_people, month_end

pytestmark = pytest.mark.db

FIRST = Period(2025, 1)
MONTHS = 14  # 2025-01 … 2026-02
AS_OF = Period(2026, 2)
SEASON = [1.2, 1.0, 0.9, 0.9, 1.0, 1.3, 1.5, 1.5, 1.1, 0.9, 1.0, 1.2]
PLAIN = [f"C{k:02d}" for k in range(1, 13)]
TOU = [f"T{k:02d}" for k in range(1, 13)]
NIGHT = "T05"   # from month 10 (2025-11) its valley register records a quarter of the valley
SCALE = "C07"   # from month 10 every register records 40 %
STATION_LOSS = 0.05
CLOCK = FixedClock(datetime(2026, 3, 10, 9, tzinfo=BUSINESS_TZ))


def used(customer: str, i: int) -> tuple[int, int]:
    """(true kWh × 100, true valley kWh × 100) of ``customer`` in month i (0 = 2025-01)."""
    k = int(customer[1:])
    kwh = int((120 + 7 * k) * SEASON[i % 12] * (1 + 0.02 * ((i * k) % 3)) * 100)
    share = 0.36 + 0.01 * (k % 5) + 0.005 * ((i + k) % 2)
    return kwh, int(kwh * share) if customer.startswith("T") else 0


def recorded(customer: str, i: int) -> tuple[int, int]:
    """(recorded kWh × 100, recorded valley × 100): what the meter registers."""
    kwh, valley = used(customer, i)
    if customer == SCALE and i >= 10:
        return int(kwh * 0.4), 0
    if customer == NIGHT and i >= 10:
        kept = valley // 4
        return kwh - valley + kept, kept
    return kwh, valley


@pytest.fixture
def billed(db: Database, tmp_path: Path) -> Database:
    load_people(db, [Person(c) for c in PLAIN]
                + [Person(c, tariff_id="cn-zj-residential-tou", registers="total,peak,valley")
                   for c in TOU])
    reads = Reads()
    for c in PLAIN + TOU:
        total, peak, valley = 1000_00, 600_00, 400_00  # a TOU meter's registers add up
        at = month_end(FIRST.prev())
        reads.add(c, at, total)
        if c.startswith("T"):
            reads.add(c, at, peak, "peak").add(c, at, valley, "valley")
        p = FIRST
        for i in range(MONTHS):
            kwh, v = recorded(c, i)
            at = month_end(p)
            if c.startswith("T"):
                peak, valley = peak + kwh - v, valley + v
                total = peak + valley
                reads.add(c, at, peak, "peak").add(c, at, valley, "valley")
            else:
                total += kwh
            reads.add(c, at, total)
            p = p.next()
    reads.store(db)
    p = FIRST
    for _ in range(MONTHS):
        d = p.end_date
        run_bill_run(db, p, FixedClock(datetime(d.year, d.month, 3, 9, tzinfo=BUSINESS_TZ)))
        p = p.next()
    return db


def supply_csv(path: Path) -> Path:
    """stations.csv of station S1: what its customers truly used × (1 + 5 %)."""
    lines = ["station_id,period,kwh"]
    p = FIRST
    for i in range(MONTHS):
        true = sum(used(c, i)[0] for c in PLAIN + TOU)
        centi = round(true * (1 + STATION_LOSS))
        lines.append(f"S1,{p},{centi // 100}.{centi % 100:02d}")
        p = p.next()
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_time_of_use_bills_carry_the_valley_energy(billed: Database) -> None:
    from dianfei.billing.service import tou_energy

    tou = tou_energy(billed.engine, str(FIRST))
    assert set(tou["account_id"]) == set(TOU)  # plain bills have no time-of-use lines
    one = tou.filter((pl.col("account_id") == "T03") & (pl.col("period") == "2025-07")).row(
        0, named=True)
    assert (one["kwh"], one["valley"]) == recorded("T03", 6)


def test_the_worklist_finds_the_night_bypass_and_the_station_loss(billed: Database,
                                                                  tmp_path: Path) -> None:
    before = risk.theft_scan(billed, AS_OF)
    assert before["station_rise"].null_count() == before.height  # no station supply yet
    night = before.filter(pl.col("account_id") == NIGHT).row(0, named=True)
    assert night["valley_share_now"] < 0.15 < 0.35 < night["valley_share_before"]
    assert "night-time share fell" in night["reasons"]
    assert "夜间（谷段）用电占比骤降" in night["reasons_zh"]
    assert before.row(0, named=True)["account_id"] in (NIGHT, SCALE)

    res = metering.import_stations(billed, supply_csv(tmp_path / "stations.csv"), clock=CLOCK)
    assert (res.accepted, res.rejected, res.duplicates) == (MONTHS, 0, 0)
    losses = risk.station_losses(billed, AS_OF).row(0, named=True)
    assert losses["station_id"] == "S1"
    assert losses["loss_before"] == pytest.approx(STATION_LOSS / (1 + STATION_LOSS), abs=1e-3)
    assert losses["rise"] > 0.01  # both thieves' missing energy
    after = risk.theft_scan(billed, AS_OF)
    top2 = set(after.head(2)["account_id"])
    assert top2 == {NIGHT, SCALE}
    for thief in (NIGHT, SCALE):
        row = after.filter(pl.col("account_id") == thief).row(0, named=True)
        assert row["station_corr"] > 0.9 and row["station_share"] > 0.05
        assert "station S1 line loss up" in row["reasons"]
        assert "所属台区 S1 线损率上升" in row["reasons_zh"]
    honest = after.filter(~pl.col("account_id").is_in([NIGHT, SCALE]))
    assert honest["score"].max() < after.filter(pl.col("account_id") == NIGHT)["score"].item()


def test_cli_import_stations_and_theft_stations_json(billed: Database, tmp_path: Path) -> None:
    env = {**os.environ, "DIANFEI_DATABASE_URL": str(billed.settings.database_url),
           "DIANFEI_DATA_DIR": str(billed.settings.data_dir)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dianfei", *args], env=env,
                              capture_output=True, text=True, timeout=120)

    path = supply_csv(tmp_path / "stations.csv")
    first = run("import", "stations", str(path), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["accepted"] == MONTHS
    again = run("import", "stations", str(path), "--json")
    out = json.loads(again.stdout)
    assert (out["accepted"], out["rejected"], out["duplicates"]) == (0, 0, MONTHS)
    st = run("theft", "stations", "--as-of", str(AS_OF), "--json")
    assert st.returncode == 0, st.stderr
    (row,) = json.loads(st.stdout)
    assert row["station"] == "S1" and row["rise"] > 0.01
    assert row["extra_lost_kwh"].count(".") == 1
    scan = run("theft", "scan", "--as-of", str(AS_OF), "--top", "2", "--json")
    rows = json.loads(scan.stdout)
    assert {r["account"] for r in rows} == {NIGHT, SCALE}
    assert all(r["station"] == "S1" and r["reasons_zh"] for r in rows)
