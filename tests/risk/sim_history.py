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


@cache
def county_bills(n: int = 4000, seed: int = 3, months: int = 24) -> pl.DataFrame:
    """The county's bills with when each was paid in full, as the sim's payment behaviour
    decides: account_id, bill_id, amount (fen, ~0.538 yuan/kWh — not a money path), due_on
    (the 18th of the month after), paid_in_full_on. A partly paid bill is completed by the
    customer's next payment (oldest first, as the ledger allocates); a prepaid customer's bill
    is settled from credit on issue."""
    from datetime import date, timedelta

    from dianfei.sim import payment_day_offsets

    u = build_utility(n, seed=seed, start=START)
    meters = u.meters.select("meter_id", "customer_id")
    mode = u.customers.select(pl.col("customer_id").alias("account_id"), "payment_mode")
    parts, p = [], START
    for _ in range(months):
        used = period_consumption(u, p).join(meters, on="meter_id")
        due = date(p.end_date.year, p.end_date.month, 18)
        bills = used.select("customer_id", (pl.col("kwh") * 538 // 1000).alias("amount"),
                            pl.lit(due).alias("due_on"))
        parts.append(payment_day_offsets(u, p, bills).with_columns(
            pl.col("customer_id").alias("account_id"),
            pl.format("{}-{}", "customer_id", pl.lit(str(p))).alias("bill_id")))
        p = p.next()
    b = pl.concat(parts).join(mode, on="account_id").sort("account_id", "due_on")
    return b.with_columns(
        pl.when(pl.col("payment_mode") == "prepaid").then(pl.col("due_on") - timedelta(days=15))
        .when(pl.col("paid_amount") >= pl.col("amount")).then(pl.col("paid_on"))
        .otherwise(pl.col("paid_on").shift(-1).over("account_id").backward_fill()
                   .over("account_id")).alias("paid_in_full_on"),
    ).select("account_id", "bill_id", "amount", "due_on", "paid_in_full_on")


@cache
def county_tou(n: int = 4000, seed: int = 3, months: int = 24) -> tuple[pl.DataFrame,
                                                                         pl.DataFrame]:
    """(tou: account_id, period, valley, kwh of the time-of-use accounts; night: account_id,
    tamper_month of the planted night bypasses) of :func:`county`'s utility."""
    from dianfei.sim import period_tou, tamper_modes

    u = build_utility(n, seed=seed, start=START)
    meters = u.meters.select("meter_id", "customer_id")
    parts, p = [], START
    for _ in range(months):
        parts.append(period_tou(u, p).join(meters, on="meter_id").select(
            pl.col("customer_id").alias("account_id"), pl.lit(str(p)).alias("period"),
            "valley", "kwh"))
        p = p.next()
    night = tamper_modes(u).filter(pl.col("mode") == "night").select(
        pl.col("customer_id").alias("account_id"), "tamper_month")
    return pl.concat(parts), night
