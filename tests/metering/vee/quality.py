"""Precision and recall of the VEE rules on synthetic households with planted faults
(``dianfei.sim.households``): used by the test that keeps the floors and by
``bench/vee_quality.py`` that writes the figures in docs/vee.md."""

from __future__ import annotations

from typing import Any

import polars as pl

from dianfei.metering.vee import pipeline
from dianfei.metering.vee.config import VeeConfig
from dianfei.sim.households import History, household_history

__all__ = ["CLASS_OF_KIND", "findings", "household_history", "households", "score"]

#: the customer class of the generator's load kinds (the others are households)
CLASS_OF_KIND = {"shop": "commercial", "irrigation": "agricultural"}


def findings(history: History, cfg: VeeConfig | None = None, minutes: int = 30) -> pl.DataFrame:
    lf = history.intervals.select("meter_id", "ts", pl.lit(minutes, pl.Int16).alias("minutes"),
                                  "wh").lazy()
    meters = history.kinds.select(
        "meter_id", pl.lit(6, pl.Int64).alias("digits"),
        pl.col("kind").replace_strict(CLASS_OF_KIND, default="residential").alias("meter_class"))
    return pipeline.run(lf, cfg or VeeConfig(), "Asia/Shanghai", meters=meters.lazy(),
                        with_estimates=False).findings


def _inside(found: pl.DataFrame, spans: pl.DataFrame, minutes: int) -> pl.Series:
    """Whether each finding lies in one of the planted spans (meter_id, ts, slots)."""
    if spans.height == 0 or found.height == 0:
        return pl.Series([False] * found.height)
    ends = spans.with_columns((pl.col("ts") + pl.duration(minutes=pl.col("slots") * minutes))
                              .alias("end")).rename({"ts": "start"})
    hits = (found.with_row_index("_i").join(ends, on="meter_id", how="inner")
            .filter((pl.col("ts") >= pl.col("start")) & (pl.col("ts") < pl.col("end")))
            ["_i"].unique())
    return pl.Series(range(found.height)).is_in(hits.implode())


def score(history: History, found: pl.DataFrame, minutes: int = 30) -> dict[str, Any]:
    """Per rule: planted, found, true (found at a planted fault), precision, recall.

    A spike is true at a planted spike or inside a planted faulty high day (every interval of
    that day is 8× too high: flagging some of them is right). A day finding is true on a planted
    day of its kind; a high day is also true when a planted spike made it high, a low day when
    a planted dead-meter run (zeros) covers it."""
    out: dict[str, Any] = {}
    spike_days = (history.spikes.with_columns(pl.col("ts") - pl.duration(
        minutes=(pl.col("ts").dt.epoch("s") + 8 * 3600) % 86400 // 60)).with_columns(
        pl.lit(1440 // minutes, pl.Int64).alias("slots")))
    cases = (("spike", history.spikes, [history.spikes, history.high_days]),
             ("high_usage", history.high_days, [history.high_days, spike_days]),
             ("low_usage", history.low_days, [history.low_days, history.zero_runs]))
    for rule, planted, faulty in cases:
        got = found.filter(pl.col("rule") == rule).select("meter_id", "ts")
        true_mask = pl.Series([False] * got.height)
        for spans in faulty:
            true_mask = true_mask | _inside(got, spans, minutes)
        # a day finding's ts is the day's start, as a planted day's
        recalled = planted.join(got, on=["meter_id", "ts"], how="semi").height
        true = int(true_mask.sum())
        out[rule] = {"planted": planted.height, "found": got.height, "true": true,
                     "false": got.height - true, "recalled": recalled,
                     "precision": round(true / got.height, 4) if got.height else 1.0,
                     "recall": round(recalled / planted.height, 4) if planted.height else 1.0}
    return out


def households(seed: int, meters: int = 10, days: int = 730) -> History:
    """The evaluation set: per ten meters over two years, 20 spikes, 10 faulty high days and 10
    faulty low days, three gaps and a dead-meter run."""
    scale = max(1, meters // 10) * max(1, days // 730)
    return household_history(meters, days, seed=seed, spikes=20 * scale, high_days=10 * scale,
                             low_days=10 * scale)
