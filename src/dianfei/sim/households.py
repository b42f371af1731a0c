"""Synthetic interval histories of real-looking households (负荷曲线) with planted faults.

What a utility's old collection system hands over when it migrates: years of half-hourly (or
quarter-hourly) energy per meter, with the things that make real load curves hard to judge —
electric heating in winter and air conditioning in summer (with heat waves), the Spring Festival
and National Day holidays (away, or a full house), vacant weeks, electric-vehicle charging at
night (7 kW for hours), rooftop PV exporting at noon (negative intervals), shops and irrigation
pumps — and faults planted at known places, so that a VEE rule's precision and recall can be
measured: spikes (one impossible interval), communication gaps and zero runs (a dead meter).

Seeded and vectorised (one array per meter × slot); the same seed gives the same frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from dianfei.sim._rng import stream

if TYPE_CHECKING:
    import polars as pl

#: the load kinds, in the order meters are given them (meter i gets KINDS[i % len(KINDS)])
KINDS = ("heating", "cooling", "ev", "pv", "cooling", "heating", "shop", "vacant_often",
         "irrigation", "cooling")

_OFFSET = timedelta(hours=8)  # Asia/Shanghai, fixed since 1991


@dataclass(frozen=True)
class History:
    """``intervals``: meter_id, ts (UTC interval start), wh (Int64), kwh (exact decimal text);
    ``kinds``: meter_id, kind; ``spikes``/``gaps``/``zero_runs``/``high_days``/``low_days``: what
    was planted (meter_id, ts of the spike or first slot, slots)."""

    intervals: pl.DataFrame
    kinds: pl.DataFrame
    spikes: pl.DataFrame
    gaps: pl.DataFrame
    zero_runs: pl.DataFrame
    high_days: pl.DataFrame
    low_days: pl.DataFrame


def _holidays(start: date, days: int) -> np.ndarray:
    """Day indices of the long holidays (春节 about 8 days from the lunar new year, 国庆 1–7
    October) in the span; lunar new year dates 2023–2028 are listed, others are skipped."""
    new_year = {2023: date(2023, 1, 22), 2024: date(2024, 2, 10), 2025: date(2025, 1, 29),
                2026: date(2026, 2, 17), 2027: date(2027, 2, 6), 2028: date(2028, 1, 26)}
    out: list[int] = []
    for year in range(start.year, (start + timedelta(days=days)).year + 1):
        spans = [(date(year, 10, 1), 7)]
        if year in new_year:
            spans.append((new_year[year] - timedelta(days=1), 8))
        for first, length in spans:
            for k in range(length):
                i = (first + timedelta(days=k) - start).days
                if 0 <= i < days:
                    out.append(i)
    return np.array(sorted(out), dtype=np.int64)


def household_history(meters: int = 10, days: int = 730, *, minutes: int = 30,
                      start: date = date(2024, 12, 1), seed: int = 16, spikes: int = 5,
                      gaps: int = 3, zero_runs: int = 1, high_days: int = 0, low_days: int = 0,
                      prefix: str = "H") -> History:
    """``meters`` meters × ``days`` business days of ``minutes``-long intervals from ``start``
    (Asia/Shanghai), with ``spikes`` planted spikes, ``gaps`` communication gaps and
    ``zero_runs`` dead-meter runs (at least a day of zeros) per meter group of ten, and
    ``high_days``/``low_days`` faulty days (a wrong multiplier: every interval × 8; a bypassed
    meter: × 0.02)."""
    import polars as pl

    per_day = 1440 // minutes
    slots = days * per_day
    h = minutes / 60.0
    tod = (np.arange(per_day) * minutes) / 60.0  # hour of day of each slot start
    day_idx = np.arange(days)
    dates = [start + timedelta(days=int(d)) for d in day_idx]
    month = np.array([d.month for d in dates])
    weekday = np.array([d.weekday() for d in dates])
    winter = np.isin(month, (12, 1, 2)).astype(float)
    summer = np.isin(month, (6, 7, 8)).astype(float)
    shoulder = np.isin(month, (3, 11)).astype(float) * 0.4 + np.isin(month, (5, 9)).astype(float) * 0.4
    holiday = np.zeros(days, dtype=bool)
    holiday[_holidays(start, days)] = True

    rng_heat = stream(seed, "households.weather")
    heat_wave = np.clip(rng_heat.normal(1.0, 0.35, size=days), 0.2, 2.2)
    cold_snap = np.clip(rng_heat.normal(1.0, 0.3, size=days), 0.3, 2.0)
    cloud = np.clip(rng_heat.beta(2.0, 1.2, size=days), 0.05, 1.0)

    def bump(centre: float, width: float) -> np.ndarray:
        d = np.minimum(np.abs(tod - centre), 24 - np.abs(tod - centre))
        out: np.ndarray = np.exp(-0.5 * (d / width) ** 2)
        return out

    # a household day (kW): night standby, a morning bump, an evening peak
    base_shape = 0.08 + 0.5 * bump(7.5, 0.8) + 0.35 * bump(12.0, 1.0) + 1.1 * bump(19.5, 1.6)
    heating_shape = 0.6 + 1.6 * bump(20.0, 2.5) + 0.8 * bump(7.0, 1.2)
    cooling_shape = 0.3 + 1.8 * bump(15.0, 2.5) + 2.2 * bump(21.5, 2.0)
    pv_shape = np.clip(np.sin((tod - 6.5) / 11.5 * np.pi), 0, None) ** 1.5
    open_hours = ((tod >= 9) & (tod < 21)).astype(float)

    ids = [f"{prefix}{i:04d}" for i in range(meters)]
    kinds = [KINDS[i % len(KINDS)] for i in range(meters)]
    kw = np.empty((meters, days, per_day))
    for i, kind in enumerate(kinds):
        rng = stream(seed, "households.meter", i)
        scale = rng.uniform(0.6, 1.6)
        load = scale * base_shape[None, :] * np.ones((days, 1))
        if kind in ("heating", "vacant_often"):
            load += (winter * cold_snap)[:, None] * heating_shape[None, :] * rng.uniform(1.0, 2.0)
            load += (shoulder * cold_snap)[:, None] * heating_shape[None, :] * 0.5
        if kind in ("cooling", "ev", "pv", "heating"):
            share = 1.0 if kind == "cooling" else 0.5
            load += (summer * heat_wave)[:, None] * cooling_shape[None, :] * share * rng.uniform(0.8, 1.8)
        if kind == "shop":
            load = scale * (0.3 + 6.0 * open_hours)[None, :] * np.ones((days, 1))
            load += (summer * heat_wave)[:, None] * (open_hours * 4.0)[None, :]
            load[holiday] *= 0.3
        if kind == "irrigation":
            load = np.full((days, per_day), 0.05 * scale)
        machine = np.zeros((days, per_day))  # steady loads: pumps and chargers (±5 %)
        if kind == "irrigation":
            # pumps run on dry days of the growing season, 6–18 h, at 15 kW
            season = np.isin(month, (4, 5, 6, 7, 8)).astype(bool)
            pumping = season & (rng.random(days) < 0.45)
            on = ((tod >= 6) & (tod < 18)).astype(float)
            machine[pumping] += 15.0 * on[None, :]
        if kind == "ev":
            # 7 kW charging from 22:00–00:30 for 2–4 hours on a third of the nights
            nights = np.flatnonzero(rng.random(days) < 0.33)
            for d in nights:
                first = int(rng.integers(22 * 60, 24 * 60 + 30) // minutes)
                length = int(rng.integers(120, 241) // minutes)
                span = np.arange(first, first + length)
                dd = d + span // per_day
                ok = dd < days
                machine[dd[ok], span[ok] % per_day] += 7.0
        if kind != "shop":
            # holidays: away (standby) or a full house (half again as much), per meter
            if rng.random() < 0.5:
                load[holiday] = load[holiday] * 0.15
            else:
                load[holiday] = load[holiday] * 1.5
            # weekends a little higher
            load[weekday >= 5] *= 1.15
        vacancies = {"vacant_often": 4, "shop": 0, "irrigation": 0}.get(kind, int(rng.integers(0, 2)))
        for _ in range(vacancies):
            first = int(rng.integers(0, max(days - 30, 1)))
            load[first:first + int(rng.integers(7, 29))] = 0.03 * scale
        noise = rng.lognormal(0.0, 0.35, size=(days, per_day))
        load = load * noise + machine * rng.uniform(0.95, 1.05, size=(days, per_day))
        if kind == "pv":
            load = load - (cloud[:, None] * pv_shape[None, :]) * rng.uniform(3.0, 5.0)
        kw[i] = load
    wh = np.round(kw * h * 1000.0).astype(np.int64).reshape(meters, slots)
    present = np.ones((meters, slots), dtype=bool)

    plant = stream(seed, "households.faults")
    groups = max(1, meters // 10)
    gap_rows: list[tuple[str, int, int]] = []
    zero_rows: list[tuple[str, int, int]] = []
    spike_rows: list[tuple[str, int, int]] = []
    busy = np.zeros((meters, slots), dtype=bool)

    def free_span(length: int) -> tuple[int, int]:
        while True:
            m = int(plant.integers(0, meters))
            first = int(plant.integers(per_day, slots - length - per_day))
            if not busy[m, first - 1:first + length + 1].any():
                busy[m, first - 1:first + length + 1] = True
                return m, first

    for _ in range(gaps * groups):
        length = int(plant.choice([1, 3, 8, per_day, 3 * per_day]))
        m, first = free_span(length)
        present[m, first:first + length] = False
        gap_rows.append((ids[m], first, length))
    for _ in range(zero_runs * groups):
        length = int(plant.integers(per_day, 4 * per_day))
        m, first = free_span(length)
        wh[m, first:first + length] = 0
        zero_rows.append((ids[m], first, length))
    high_rows: list[tuple[str, int, int]] = []
    low_rows: list[tuple[str, int, int]] = []
    for rows_, count, factor in ((high_rows, high_days, 8.0), (low_rows, low_days, 0.02)):
        for _ in range(count):
            while True:
                who = int(plant.integers(0, meters))
                day_no = int(plant.integers(60, days - 1))
                span = np.arange(day_no * per_day, (day_no + 1) * per_day)
                if not busy[who, span].any() and (wh[who, span] > 0).all():
                    break
            busy[who, span] = True
            wh[who, span] = np.round(wh[who, span] * factor).astype(np.int64)
            rows_.append((ids[who], day_no * per_day, per_day))
    for _ in range(spikes):
        m, at = free_span(1)
        # a corrupt value: 6–30 × the highest the meter draws at that time of day (its 99th
        # percentile over the history), and at least 10 kW
        high = float(np.quantile(wh[m, (at % per_day)::per_day], 0.99))
        wh[m, at] = int(max(high * plant.uniform(6, 30), 10_000 * h))
        spike_rows.append((ids[m], at, 1))

    t0 = datetime(start.year, start.month, start.day, tzinfo=UTC) - _OFFSET
    step_us = minutes * 60_000_000
    t0_us = int(t0.timestamp()) * 1_000_000
    meter_col = np.repeat(np.arange(meters), slots)
    slot_col = np.tile(np.arange(slots), meters)
    keep = present.reshape(-1)
    frame = pl.DataFrame({
        "meter_id": pl.Series(np.array(ids, dtype=object)[meter_col[keep]], dtype=pl.String),
        "ts": pl.Series(t0_us + slot_col[keep] * step_us).cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC"),
        "wh": pl.Series(wh.reshape(-1)[keep], dtype=pl.Int64),
    })
    frame = frame.with_columns(_kwh_text(pl.col("wh")).alias("kwh"))

    def planted(rows: list[tuple[str, int, int]]) -> pl.DataFrame:
        return pl.DataFrame({
            "meter_id": [r[0] for r in rows],
            "ts": [t0 + timedelta(minutes=minutes * r[1]) for r in rows],
            "slots": [r[2] for r in rows],
        }, schema={"meter_id": pl.String, "ts": pl.Datetime("us", "UTC"), "slots": pl.Int64}
        ).sort("meter_id", "ts")

    return History(frame, pl.DataFrame({"meter_id": ids, "kind": kinds}),
                   planted(spike_rows), planted(gap_rows), planted(zero_rows),
                   planted(high_rows), planted(low_rows))


def _kwh_text(wh: pl.Expr) -> pl.Expr:
    import polars as pl

    mag = wh.abs()
    return pl.concat_str(pl.when(wh < 0).then(pl.lit("-")).otherwise(pl.lit("")),
                         (mag // 1000).cast(pl.String), pl.lit("."),
                         (mag % 1000).cast(pl.String).str.zfill(3))


def write_csv(history: History, path: str) -> int:
    """The canonical intervals CSV (meter_id, ts with +08:00, kwh); returns the data rows."""
    import polars as pl

    out = history.intervals.select(
        "meter_id",
        pl.col("ts").dt.convert_time_zone("Asia/Shanghai")
        .dt.strftime("%Y-%m-%dT%H:%M:%S+08:00").alias("ts"),
        "kwh")
    out.write_csv(path)
    return out.height
