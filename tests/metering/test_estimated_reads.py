"""Estimated register reads (估计读数): the arithmetic the true-up rests on, and the per-band
estimate of a time-of-use meter from its intervals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from dianfei.billing.consumption import register_consumption
from dianfei.core.clock import FixedClock
from dianfei.db.engine import Database
from dianfei.metering import ingest
from dianfei.metering.estimated_reads import estimated_values
from dianfei.metering.service import estimate_register_reads
from tests.factories import Person, Reads, load_people

T0 = datetime(2026, 2, 28, 16, 0, tzinfo=UTC)  # 2026-03-01 00:00 Beijing time
T1, T2 = T0 + timedelta(days=31), T0 + timedelta(days=61)


def _period(meter: str, open_value: int, close_value: int, close_source: str,
            open_source: str = "ami", digits: int = 6) -> pl.DataFrame:
    sel = pl.DataFrame({"meter_id": [meter], "register": ["total"], "open_value": [open_value],
                        "open_at": [T0], "open_source": [open_source], "close_value": [close_value],
                        "close_at": [T1], "close_source": [close_source]})
    return register_consumption(sel, pl.DataFrame({"meter_id": [meter], "multiplier": [1],
                                                   "digits": [digits]}))


@settings(max_examples=200, deadline=None)
@given(digits=st.integers(4, 8), start=st.integers(0, 10**10), used_wh=st.integers(0, 10**9),
       later=st.integers(0, 10**7))
def test_estimate_then_actual_bills_exactly_what_was_measured(digits: int, start: int, used_wh: int,
                                                              later: int) -> None:
    wrap = 10**digits * 100
    start %= wrap
    # keep the two periods' movement under half a turn each: beyond that a read is a fault
    used_wh %= wrap * 5 - 10
    later %= wrap // 2
    est = estimated_values(pl.DataFrame({"from_value": [start], "interval_wh": [used_wh],
                                         "digits": [digits]}))["value"][0]
    actual = (est + later) % wrap
    first = _period("M", start, est, "estimated", digits=digits)
    second = _period("M", est, actual, "ami", open_source="estimated", digits=digits)
    assert first["problem"][0] is None and second["problem"][0] is None
    # over the two bills: exactly the register's movement, whatever the intervals said
    assert first["quantity"][0] + second["quantity"][0] == (actual - start) % wrap
    assert first["estimated"][0] and second["estimated"][0]


def test_time_of_use_registers_are_estimated_from_their_own_bands(db: Database) -> None:
    # a four-rate meter; every 15-minute interval 100 Wh, except 200 Wh from 19:00 to 21:00 (sharp)
    load_people(db, [Person("C1", registers="total,sharp,peak,flat,valley")])
    regs = {"total": 5000_00, "sharp": 500_00, "peak": 2000_00, "flat": 1000_00, "valley": 1500_00}
    reads = Reads()
    for reg, value in regs.items():
        reads.add("C1", T0, value, register=reg)
    reads.store(db)
    rows = []
    for k in range(31 * 96):
        ts = T0 + timedelta(minutes=15 * k)
        local_hour = (ts + timedelta(hours=8)).hour
        rows.append(("MC1", ts, "0.200" if 19 <= local_hour < 21 else "0.100"))
    ingest.ingest_intervals(db, pl.DataFrame(rows, schema={"meter_id": pl.String,
                                                           "ts": pl.Datetime("us", "UTC"),
                                                           "kwh": pl.String}, orient="row"),
                            interval_minutes=15, origin="test", clock=FixedClock(T1))
    wanted = pl.DataFrame({"meter_id": ["MC1"] * 5, "register": list(regs),
                           "from_value": list(regs.values()), "from_at": [T0] * 5,
                           "from_source": ["ami"] * 5, "digits": [6] * 5})
    estimates, refusals = estimate_register_reads(db, wanted, T1)
    assert refusals.height == 0
    got = dict(estimates.select("register", "interval_wh").rows())
    # cn-zj-general: sharp 2 h, peak 10 h, flat 3 h, valley 9 h a day; 4 intervals an hour
    assert got == {"sharp": 31 * 2 * 4 * 200, "peak": 31 * 10 * 4 * 100, "flat": 31 * 3 * 4 * 100,
                   "valley": 31 * 9 * 4 * 100, "total": 31 * (22 * 4 * 100 + 2 * 4 * 200)}
    assert sum(v for r, v in got.items() if r != "total") == got["total"]
    # each register's derivation counts its own band's intervals
    assert dict(estimates.select("register", "intervals").rows()) == {
        "sharp": 31 * 8, "peak": 31 * 40, "flat": 31 * 12, "valley": 31 * 36, "total": 31 * 96}
    values = dict(estimates.select("register", "value").rows())
    assert values == {r: regs[r] + got[r] // 10 for r in regs}
