"""Estimation (估算) of missing intervals, as pure functions over frames.

Estimates fill gap events found by :func:`dianfei.metering.vee.rules.gaps` and nothing else: they
are made only for slots without a metered value, returned as new rows (``meter_id, ts, minutes,
wh, method, inputs``) and stored apart from metered data, so a metered value is never touched.

* **Short gaps** (gap_slots × step ≤ short_gap_minutes, 2 hours by default): linear interpolation
  between the bounding actual values. The i-th of L missing slots between values a and b gets
  ``a + (b − a) · i / (L + 1)``, rounded half up to the watt-hour in integers (no float).
* **Longer gaps** (up to max_estimate_days): the mean of the same slot on the same weekday over
  the previous profile_weeks weeks (metered values only; 同期同时段); where none of those weeks has
  a value, the mean of the meter's metered values at the same time of day (时段平均); where even
  that is empty, the meter's mean interval. Means are rounded half up in integers. Weeks are
  counted in UTC: right for zones without daylight saving time (Asia/Shanghai).
"""

from __future__ import annotations

from typing import Final

import polars as pl

from dianfei.metering.vee.config import VeeConfig
from dianfei.metering.vee.rules import MINUTES_PER_DAY, US_PER_MINUTE, fmt, iso

ESTIMATE_SCHEMA: Final = pl.Schema({
    "meter_id": pl.String(), "ts": pl.Datetime("us", "UTC"), "minutes": pl.Int16(), "wh": pl.Int64(),
    "method": pl.String(), "inputs": pl.String(),
})
METHODS: Final = ("linear", "profile_weekday", "profile_time_of_day", "meter_average")


def _round_div(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """num / den rounded half up (towards +∞ on a tie), exactly, for den > 0."""
    return (num * 2 + den) // (den * 2)


def _explode_slots(gap_events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per missing slot of each gap: ``i`` is 1 for the first missing slot."""
    return (gap_events.with_columns(pl.int_ranges(1, pl.col("gap_slots") + 1).alias("i"))
            .explode("i")
            .with_columns((pl.col("prev_ts") + pl.duration(
                microseconds=pl.col("step") * pl.col("i") * US_PER_MINUTE)).alias("ts")))


def _out(method: str | pl.Expr, wh: pl.Expr, inputs: pl.Expr) -> list[pl.Expr]:
    return [pl.col("meter_id"), pl.col("ts"), pl.col("step").cast(pl.Int16).alias("minutes"),
            wh.cast(pl.Int64).alias("wh"),
            (pl.lit(method) if isinstance(method, str) else method).alias("method"),
            inputs.cast(pl.String).alias("inputs")]


def interpolate(gap_events: pl.LazyFrame, cfg: VeeConfig) -> pl.LazyFrame:
    """Linear interpolation of the short gaps."""
    short = gap_events.filter(pl.col("gap_slots") * pl.col("step") <= cfg.short_gap_minutes)
    slots = _explode_slots(short)
    wh = pl.col("prev_wh") + _round_div((pl.col("next_wh") - pl.col("prev_wh")) * pl.col("i"),
                                        pl.col("gap_slots") + 1)
    return slots.select(_out("linear", wh, fmt(
        "slot {} of {} between {} ({} Wh) and {} ({} Wh)", "i", "gap_slots",
        iso("prev_ts"), "prev_wh", iso("next_ts"), "next_wh")))


def profile(gap_events: pl.LazyFrame, history: pl.LazyFrame, cfg: VeeConfig,
            tz: str) -> pl.LazyFrame:
    """History-based estimates for the longer gaps. ``history``: the meters' metered on-grid
    intervals (``meter_id, meter_key, ts, wh, tod`` as :func:`rules.prepare` gives them)."""
    long = gap_events.filter((pl.col("gap_slots") * pl.col("step") > cfg.short_gap_minutes)
                             & (pl.col("gap_slots") * pl.col("step")
                                <= cfg.max_estimate_days * MINUTES_PER_DAY))
    slots = _explode_slots(long).select("meter_id", "ts", "step")
    # only the meters that need it: most meters have no long gap
    history = history.join(long.select("meter_key").unique(), on="meter_key", how="semi")
    hist = history.select("meter_id", pl.col("ts").alias("ref_ts"), pl.col("wh").alias("ref_wh"))

    weeks = (slots.with_columns(pl.int_ranges(1, cfg.profile_weeks + 1).alias("w")).explode("w")
             .with_columns((pl.col("ts") - pl.duration(weeks=pl.col("w"))).alias("ref_ts"))
             .join(hist, on=["meter_id", "ref_ts"], how="inner")
             .group_by("meter_id", "ts")
             .agg(pl.col("step").first(), pl.col("ref_wh").sum().alias("s"), pl.len().alias("n"),
                  pl.col("ref_ts").sort().dt.date().cast(pl.String).str.join(",").alias("days")))
    by_week = weeks.select(_out("profile_weekday", _round_div(pl.col("s"), pl.col("n")),
                                fmt("mean of {} values on {}", "n", "days")))

    rest = slots.join(weeks.select("meter_id", "ts"), on=["meter_id", "ts"], how="anti")
    tod = pl.col("ts").dt.convert_time_zone(tz)
    tod_key = (tod.dt.hour().cast(pl.Int32) * 60 + tod.dt.minute().cast(pl.Int32)).alias("tod")
    hist_tod = (history.group_by("meter_id", "tod")
                .agg(pl.col("wh").sum().alias("s"), pl.len().alias("n")))
    rest_tod = rest.with_columns(tod_key).join(hist_tod, on=["meter_id", "tod"], how="inner")
    by_tod = rest_tod.select(_out("profile_time_of_day", _round_div(pl.col("s"), pl.col("n")),
                                  fmt("mean of the meter's {} values at this time of day", "n")))

    rest2 = rest.join(rest_tod.select("meter_id", "ts"), on=["meter_id", "ts"], how="anti")
    hist_all = history.group_by("meter_id").agg(pl.col("wh").sum().alias("s"), pl.len().alias("n"))
    by_avg = (rest2.join(hist_all, on="meter_id", how="inner")
              .select(_out("meter_average", _round_div(pl.col("s"), pl.col("n")),
                           fmt("mean of the meter's {} values", "n"))))
    return pl.concat([by_week, by_tod, by_avg], how="vertical")


def estimate(gap_events: pl.LazyFrame, history: pl.LazyFrame, cfg: VeeConfig,
             tz: str) -> pl.LazyFrame:
    """Every estimate for the gap events: interpolation for short gaps, profiles for long."""
    return pl.concat([interpolate(gap_events, cfg), profile(gap_events, history, cfg, tz)],
                     how="vertical").select(list(ESTIMATE_SCHEMA.names()))
