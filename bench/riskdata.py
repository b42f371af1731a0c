"""A risk history straight from the synthetic county, without a database: each month's bills
(the true consumption at a flat 0.55 yuan/kWh, issued two days after the period, due 15 days
later) and the customers' payments of them (``sim.payment_day_offsets``: who pays, when, how
much, through which channel). Used by the risk tests and benchmarks, where running the real bill
run for a million accounts would measure the bill run, not risk."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from dianfei import sim
from dianfei.core.clock import Period
from dianfei.risk.features import History

ISSUE_DELAY = timedelta(days=2)
DUE_DAYS = timedelta(days=15)


def sim_history(customers: int, months: int, *, seed: int = 1,
                start: Period = Period(2025, 1)) -> tuple[History, sim.Utility]:
    u = sim.build_utility(customers, seed=seed, start=start)
    c = u.customers
    accounts = c.select(pl.col("customer_id").alias("account_id"), "customer_class", "region_id",
                        "station_id", "payment_mode", "opened_on", "low_income", "protected")
    bills, clearings = [], []
    period = start
    for _ in range(months):
        issued = period.end_date + ISSUE_DELAY
        kwh = sim.period_consumption(u, period).rename({"kwh": "kwh"})
        b = (u.meters.select("meter_id", "customer_id").join(kwh, on="meter_id")
             .select(pl.col("customer_id"), pl.col("kwh").cast(pl.Int64))
             .with_columns(
                 pl.format("{}-{}", "customer_id", pl.lit(str(period).replace("-", ""))).alias("bill_id"),
                 pl.col("customer_id").alias("account_id"),
                 pl.lit(issued).alias("issued_on"), pl.lit(issued + DUE_DAYS).alias("due_on"),
                 (pl.col("kwh") * 55 // 100).alias("amount")))
        paid = sim.payment_day_offsets(u, period, b.select("bill_id", "customer_id", "amount",
                                                           "due_on", "account_id"))
        paid = paid.filter(pl.col("paid_on").is_not_null() & (pl.col("paid_amount") > 0))
        clearings.append(paid.select("bill_id", "account_id", "paid_on",
                                     pl.col("paid_amount").alias("amount"), "channel"))
        bills.append(b.select("bill_id", "account_id", "issued_on", "due_on", "amount", "kwh"))
        period = period.next()
    return History(bills=pl.concat(bills), clearings=pl.concat(clearings), accounts=accounts).checked(), u
