"""Read success rate (采集成功率): the share of AMI meters that delivered a complete day.

Definition (configurable in ``[vee]``):

* the population of day D is every meter installed on or before D and not removed by D that is
  read remotely: it has a communication address (通信地址), or it delivered intervals or an
  ``ami`` register read in the read_lookback_days up to D;
* a meter *succeeded* on D when it delivered a daily frozen reading (日冻结: a ``total`` register
  read, source ``ami``, taken at the end of D — within frozen_read_grace_minutes after midnight) or
  at least read_min_interval_share of D's intervals (all of them by default) on its grid;
* rate = succeeded ÷ population, per day, region (区域) or supply station (供电所). Every meter that
  failed is listed with its reason: ``no_data`` (nothing that day) or ``incomplete_intervals``
  (some intervals, below the share, and no frozen read).
"""

from __future__ import annotations

from typing import Final

import polars as pl

from dianfei.metering.vee.config import VeeConfig
from dianfei.metering.vee.rules import MINUTES_PER_DAY, fmt

OUTCOME_SCHEMA: Final = pl.Schema({
    "meter_id": pl.String(), "region_id": pl.String(), "station_id": pl.String(), "succeeded": pl.Boolean(),
    "reason": pl.String(), "detail": pl.String(),
})


def outcomes(population: pl.DataFrame, day_counts: pl.DataFrame, frozen: pl.DataFrame,
             cfg: VeeConfig) -> pl.DataFrame:
    """Per meter of ``population`` (meter_id, region_id, station_id): succeeded, reason, detail.

    ``day_counts``: meter_id, n (on-grid intervals delivered on D), step (interval minutes);
    ``frozen``: meter_id of meters with a daily frozen read for D.
    """
    expected = (pl.lit(MINUTES_PER_DAY) // pl.col("step")).cast(pl.Int64)
    needed = (expected.cast(pl.Float64) * cfg.read_min_interval_share).ceil().cast(pl.Int64)
    frame = (population.select("meter_id", "region_id", "station_id")
             .join(day_counts.select("meter_id", "n", "step"), on="meter_id", how="left")
             .join(frozen.select("meter_id").unique().with_columns(pl.lit(True).alias("frozen")),
                   on="meter_id", how="left")
             .with_columns(pl.col("frozen").fill_null(False), pl.col("n").fill_null(0)))
    complete = pl.col("step").is_not_null() & (pl.col("n") >= needed)
    ok = pl.col("frozen") | complete
    return (frame.with_columns(ok.alias("succeeded"))
            .with_columns(
                pl.when(pl.col("succeeded")).then(None)
                .when(pl.col("n") == 0).then(pl.lit("no_data"))
                .otherwise(pl.lit("incomplete_intervals")).alias("reason"),
                pl.when(pl.col("succeeded")).then(None)
                .when(pl.col("n") == 0).then(pl.lit("no intervals and no daily frozen read"))
                .otherwise(fmt("{} of {} intervals and no daily frozen read", "n", expected))
                .alias("detail"))
            .select(list(OUTCOME_SCHEMA.names()))
            .sort("meter_id"))


def rates(outcome: pl.DataFrame, by: str | None) -> pl.DataFrame:
    """Meters, succeeded, failed and rate (4 places) overall or per ``region``/``station``."""
    keys = {None: [], "region": ["region_id"], "station": ["station_id"]}
    if by not in keys:
        raise ValueError(by)
    group = keys[by]
    agg = [pl.len().alias("meters"), pl.col("succeeded").sum().alias("succeeded")]
    frame = (outcome.group_by(group).agg(agg).sort(group) if group
             else outcome.select(agg))
    return frame.with_columns(
        pl.col("meters").cast(pl.Int64), pl.col("succeeded").cast(pl.Int64),
        (pl.col("meters") - pl.col("succeeded")).cast(pl.Int64).alias("failed"),
        pl.when(pl.col("meters") > 0)
        .then((pl.col("succeeded") / pl.col("meters")).round(4)).alias("rate"))
