"""Meters behind an open switch: what the synthetic county's meters show when a customer's supply
was cut off (停电) — for arrears or by smart prepayment — and restored later (恢复送电).

The simulated consumption (``consumption``) is what each customer would use with power. A meter
whose supply is off registers nothing: its registers stand still from the day the supply was
cut until the day it was restored, then move on from where they stopped. So what a meter shows
at an instant is the simulated register less everything the customer "used" while cut off:

    shown(t) = R(t) − Σ over the spans [off, until) before t of (R(min(until, t)) − R(off))

with ``R`` the simulated registers at 00:00 of a day (:func:`consumption.registers_on`) and the
spans in whole business days: the day the supply was cut is lost whole, the day it was restored
counts whole. Every register (total, time-of-use, kvarh) is treated alike, so registers stay
monotone and a time-of-use meter's registers still add up to its total; a month-end demand
register reads 0 when the supply was off the whole month. A meter's read changed so is true
(source ``ami``): the planted read faults of ``monthly_reads`` are left out for those meters,
except a read that is missing, which stays missing.

The spans come from the caller (the demo reads them from the customers' service, where the stop
cases keep them), so the simulation stays a pure function of the seed and its inputs.
"""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any

import numpy as np
import polars as pl

from dianfei.core.clock import BUSINESS_TZ
from dianfei.sim.consumption import registers_on
from dianfei.sim.population import Utility

#: the columns of the spans :func:`as_metered` takes
SPAN_COLUMNS = ("customer_id", "off_from", "off_until")


def as_metered(utility: Utility, reads: pl.DataFrame, spans: pl.DataFrame) -> pl.DataFrame:
    """``reads`` (one instant's reads of this utility's meters: ``monthly_reads``,
    ``daily_reads``, ``opening_reads``) as the meters show them when the supply of some
    customers was off: ``spans`` has one row per interruption, ``customer_id``, ``off_from``
    (Date: the business day the supply was cut) and ``off_until`` (Date: the day it was
    restored; null while it is still off). Spans of customers not in ``reads`` and days from the
    reads' own day on change nothing; without any span that reaches back before it, ``reads`` is
    returned as it is. Same rows, same order."""
    missing = [c for c in SPAN_COLUMNS if c not in spans.columns]
    if missing:
        raise ValueError(f"supply spans need the columns {', '.join(missing)}")
    if reads.height == 0 or spans.height == 0:
        return reads
    instants = reads["read_at"].unique()
    if instants.len() != 1:
        raise ValueError(f"reads of one instant only, got {instants.len()}")
    on = _business_day(instants[0])
    m = utility.model
    present = pl.DataFrame({"cust": np.arange(int(m.cls.shape[0]), dtype=np.int64),
                            "meter_id": m.meter_ids,
                            "modulus": m.modulus.astype(np.int64)}).join(
        reads.select("meter_id").unique(), on="meter_id", how="semi")
    index = utility.customers.select("customer_id").with_row_index("cust").with_columns(
        pl.col("cust").cast(pl.Int64))
    lost_days = (spans.select(*SPAN_COLUMNS)
                 .join(index, on="customer_id", how="inner")
                 .join(present.select("cust"), on="cust", how="semi")
                 .with_columns(pl.min_horizontal(pl.col("off_until").fill_null(pl.lit(on)),
                                                 pl.lit(on)).alias("until"))
                 .filter(pl.col("off_from") < pl.col("until")))
    if lost_days.height == 0:
        return reads
    # one customer's supply is cut once at a time (a stop case per account): overlapping spans
    # would count the same days twice
    overlap = (lost_days.sort("cust", "off_from")
               .filter(pl.col("off_from") < pl.col("until").shift(1).over("cust")))
    if overlap.height:
        raise ValueError(f"supply spans of customer {overlap['customer_id'][0]} overlap")
    custs = lost_days["cust"].unique().sort()
    need = pl.concat([
        lost_days.select("cust", pl.col("off_from").alias("day")),
        lost_days.select("cust", pl.col("until").alias("day")),
        pl.DataFrame({"cust": custs, "day": pl.Series([on] * custs.len(), dtype=pl.Date)}),
    ]).unique()
    values = _registers(utility, need, on)
    start = values.rename({"day": "off_from", "value": "at_off"})
    end = values.rename({"day": "until", "value": "at_until"})
    lost = (lost_days.select("cust", "off_from", "until")
            .join(start, on=["cust", "off_from"], how="inner")
            .join(end, on=["cust", "until", "register"], how="inner")
            .group_by("cust", "register")
            .agg((pl.col("at_until") - pl.col("at_off")).sum().alias("lost")))
    shown = (values.filter(pl.col("day") == on)
             .join(lost, on=["cust", "register"], how="left")
             .join(present, on="cust", how="inner")
             # wrapped as the register rolls over (翻转), like every read of the simulation
             .with_columns(((pl.col("value") - pl.col("lost").fill_null(0)) % pl.col("modulus"))
                           .alias("shown"))
             .select("meter_id", "register", "shown"))
    # the month before the reads' day, for the demand register
    month_start = (on - timedelta(days=1)).replace(day=1)
    dark = (lost_days.filter((pl.col("off_from") <= month_start) & (pl.col("until") == on))
            .join(present, on="cust", how="inner")["meter_id"].unique())
    out = (reads.with_row_index("_row")
           .join(shown, on=["meter_id", "register"], how="left")
           .with_columns(
               pl.when(pl.col("shown").is_not_null()).then(pl.col("shown"))
               .when((pl.col("register") == "demand_kw") & pl.col("meter_id").is_in(dark.implode()))
               .then(pl.lit(0, dtype=pl.Int64)).otherwise(pl.col("value")).alias("value"),
               pl.when(pl.col("shown").is_not_null()
                       | ((pl.col("register") == "demand_kw")
                          & pl.col("meter_id").is_in(dark.implode())))
               .then(pl.lit("ami")).otherwise(pl.col("source")).alias("source"))
           .sort("_row").select(reads.columns))
    return out.cast(reads.schema)


def _business_day(instant: Any) -> date:
    """The business day (Asia/Shanghai) of a reads' instant (a UTC datetime)."""
    at = instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)
    return at.astimezone(BUSINESS_TZ).date()  # type: ignore[no-any-return]


def _registers(utility: Utility, need: pl.DataFrame, on: date) -> pl.DataFrame:
    """cust, day, register, value: :func:`registers_on` of each (cust, day) of ``need``. The
    days before ``on`` (the ends of spans, asked for again every day the span is in the past)
    are kept on the utility; ``on`` itself is not: it is asked for every customer with a span,
    once — kept, the store grew by a day of them every day and was copied and joined whole
    (0.1 s of a two-year demo's late day)."""
    wanted = need.select("cust", "day").unique()
    ends = wanted.filter(pl.col("day") < on)
    cache: pl.DataFrame | None = utility._cache.get("supply_registers")
    todo = ends if cache is None else ends.join(cache.select("cust", "day").unique(),
                                                 on=["cust", "day"], how="anti")
    found = [] if cache is None else [cache]
    for (day,), rows in todo.sort("day").group_by("day", maintain_order=True):
        found.append(_registers_of(utility, day, rows))
    if len(found) > (0 if cache is None else 1):
        cache = pl.concat(found)
        utility._cache["supply_registers"] = cache
    today = wanted.filter(pl.col("day") >= on)
    parts = [] if cache is None else [cache.join(ends, on=["cust", "day"], how="semi")]
    for (day,), rows in today.sort("day").group_by("day", maintain_order=True):
        parts.append(_registers_of(utility, day, rows))
    return pl.concat(parts) if parts else pl.DataFrame(
        schema={"cust": pl.Int64, "day": pl.Date, "register": pl.String, "value": pl.Int64})


def _registers_of(utility: Utility, day: date, rows: pl.DataFrame) -> pl.DataFrame:
    idx = rows["cust"].unique().sort().to_numpy()
    return registers_on(utility, day, idx).with_columns(
        pl.lit(day, dtype=pl.Date).alias("day")).select("cust", "day", "register", "value")
