"""Billing on estimated reads (估抄): the bill run's side of ``metering.estimated_reads``.

A meter whose period reads are missing or invalid (no_read, invalid_read, read_backwards) is
offered to metering for an estimated read at the period's end. Where metering makes one, the
meter's closing reads become the estimate (every register of the meter, so that the next bill
starts all of them from the same instant) and the bill says "estimated"; where it refuses, the
account stays on the exceptions with the rule that refused it. A meter without any interval in
the span is reported exactly as before (nothing to estimate from).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import polars as pl

from dianfei.billing.consumption import register_consumption
from dianfei.core.clock import Clock

if TYPE_CHECKING:
    from dianfei.db.engine import Database

#: read problems an estimate can stand in for
ESTIMABLE_PROBLEMS = ("no_read", "invalid_read", "read_backwards")


def estimate_missing_reads(db: Database, selected: pl.DataFrame, consumption: pl.DataFrame,
                           meters: pl.DataFrame, end: datetime, clock: Clock,
                           ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(consumption with estimated closing reads where metering made them, refusals: meter_id,
    reason, detail — the rule that refused the estimate; meters without intervals are left out)."""
    from dianfei.metering import service as metering

    problem_meters = (consumption.filter(pl.col("problem").is_in(list(ESTIMABLE_PROBLEMS)))
                      ["meter_id"].unique())
    empty = pl.DataFrame(schema={"meter_id": pl.String, "reason": pl.String, "detail": pl.String})
    if problem_meters.len() == 0:
        return consumption, empty
    wanted = (selected.filter(pl.col("meter_id").is_in(problem_meters.implode()))
              .join(meters.select("meter_id", "digits"), on="meter_id", how="inner")
              .select("meter_id", "register", pl.col("open_value").alias("from_value"),
                      pl.col("open_at").alias("from_at"), pl.col("open_source").alias("from_source"),
                      "digits"))
    estimates, refusals = metering.estimate_register_reads(db, wanted, end)
    if estimates.height:
        with db.engine.begin() as conn:
            estimates = metering.store_estimated_reads(conn, estimates, clock)
        patched = (selected.join(estimates.select(
            "meter_id", "register", pl.col("value").alias("est_value"),
            pl.col("read_at").alias("est_at")), on=["meter_id", "register"], how="left")
            .with_columns(
                pl.coalesce("est_value", "close_value").alias("close_value"),
                pl.coalesce("est_at", "close_at").alias("close_at"),
                pl.when(pl.col("est_value").is_not_null()).then(pl.lit("estimated"))
                .otherwise(pl.col("close_source")).alias("close_source"))
            .drop("est_value", "est_at"))
        consumption = register_consumption(patched, meters)
    return consumption, refusals.filter(pl.col("reason") != "estimate_no_intervals")


def name_refusals(problems: pl.DataFrame, refusals: pl.DataFrame) -> pl.DataFrame:
    """The meters' read problems, with the estimate's refusal as the reason where there is one:
    "no_read … ; no estimated read: 14.2% of the intervals … are VEE estimates"."""
    if refusals.height == 0:
        return problems
    return (problems.join(refusals.select("meter_id", pl.col("reason").alias("why"),
                                          pl.col("detail").alias("why_detail")),
                          on="meter_id", how="left")
            .with_columns(
                pl.coalesce("why", "reason").alias("reason"),
                pl.when(pl.col("why").is_null()).then(pl.col("detail"))
                .otherwise(pl.format("{}; no estimated read: {}", "detail", "why_detail"))
                .alias("detail"))
            .drop("why", "why_detail"))
