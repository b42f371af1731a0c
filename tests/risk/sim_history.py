"""Monthly consumption of a small synthetic county, as risk's pure functions take it (the
recorded kWh each bill would carry: tampered meters under-record, vacant homes use ~0)."""

from __future__ import annotations

from functools import cache

import polars as pl

from dianfei.core.clock import Period
from dianfei.sim import build_utility, period_consumption

START = Period(2025, 1)


@cache
def county(n: int = 4000, seed: int = 3, months: int = 24) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(history: account_id, period, kwh; facts: account_id, customer_class, tariff_id,
    low_income, behaviour, tamper_month) — one account per customer, as the sim builds them."""
    u = build_utility(n, seed=seed, start=START)
    meters = u.meters.select("meter_id", "customer_id")
    parts, p = [], START
    for _ in range(months):
        parts.append(period_consumption(u, p).join(meters, on="meter_id").select(
            pl.col("customer_id").alias("account_id"), pl.lit(str(p)).alias("period"), "kwh"))
        p = p.next()
    facts = u.customers.select(pl.col("customer_id").alias("account_id"), "customer_class",
                               "tariff_id", "low_income", "behaviour", "tamper_month")
    return pl.concat(parts), facts


def months_after_start(period: Period) -> int:
    return period.index() - START.index()
