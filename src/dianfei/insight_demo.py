"""The built-in strategy experiment on the synthetic county: uniform vs risk-driven dunning
(``dianfei experiment simulate``; docs/risk-insight.md).

An entry point (like ``demo.py``): it assembles the simulator and risk's pure functions.

1. The county's first 12 months of bills (rated by the tariff engine) and the payments the
   sim's behaviour model makes give each postpaid account its lateness as of the start
   (``segments.payment_facts``) and its risk band (the points score collections uses).
2. Postpaid accounts are assigned at random: ``holdout`` (no dunning at all), ``uniform`` (one
   ladder for everybody, the champion) and ``risk_driven`` (gentle for low risk, fast to the
   stop for high risk, the challenger) — ``experiments.LADDERS``.
3. The next ``months`` months of bills are dunned by each arm's ladder; a stopped customer pays
   to be reconnected as the sim's ``pay_after_suspension`` decides.
4. The seed's KPIs per arm with 95 % intervals (``experiments.arm_kpis``).

What the sim can and cannot show: its customers do not react to reminders (their payment day is
drawn before any notice), only to a supply stop. So the difference between the arms comes from
*when* stops happen and *how many* contacts are made — not from reminders persuading anyone.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from dianfei.core.clock import Period

ARMS = "holdout:0.1,uniform:0.45,risk_driven:0.45"


def county_bills(u: Any, first: Period, months: int) -> Any:
    """account_id, bill_id, amount (fen, rated), issued_on, due_on, natural_paid_on of the
    postpaid customers' bills of ``months`` periods from ``first``."""
    import polars as pl

    from dianfei.risk import forecast
    from dianfei.sim import payment_day_offsets, period_consumption
    from dianfei.tariffs.service import load_catalogue

    catalogue = load_catalogue()
    cust = u.customers.filter(pl.col("payment_mode") == "postpaid").select(
        pl.col("customer_id").alias("account_id"), "tariff_id", "low_income")
    meters = u.meters.select("meter_id", pl.col("customer_id").alias("account_id"))
    parts, ytd, p = [], None, first
    for _ in range(months):
        used = period_consumption(u, p).join(meters, on="meter_id").join(cust, on="account_id")
        if p.month == 1 or ytd is None:
            ytd = used.select("account_id", pl.lit(0, dtype=pl.Int64).alias("ytd_kwh"))
        usage = used.join(ytd, on="account_id", how="left").with_columns(
            pl.col("ytd_kwh").fill_null(0))
        rated = forecast.rate_forecast(catalogue, p, usage, "kwh")
        issued = p.end_date + timedelta(days=2)
        due = issued + timedelta(days=15)
        bills = (usage.join(rated, on="account_id", how="left")
                 .filter(pl.col("amount").is_not_null() & (pl.col("amount") > 0))
                 .select(pl.col("account_id").alias("customer_id"), "amount",
                         pl.lit(due).alias("due_on")))
        paid = payment_day_offsets(u, p, bills)
        parts.append(paid.select(
            pl.col("customer_id").alias("account_id"),
            pl.format("{}-{}", "customer_id", pl.lit(str(p))).alias("bill_id"), "amount",
            pl.lit(issued).alias("issued_on"), "due_on", "paid_on",
            (pl.col("paid_amount") >= pl.col("amount")).alias("full")))
        ytd = ytd.join(used.select("account_id", "kwh"), on="account_id", how="left").select(
            "account_id", (pl.col("ytd_kwh") + pl.col("kwh").fill_null(0)).alias("ytd_kwh"))
        p = p.next()
    b = pl.concat(parts).sort("account_id", "due_on")
    # a part-paid bill is completed by the customer's next payment (oldest first)
    return b.with_columns(
        pl.when(pl.col("full")).then(pl.col("paid_on"))
        .otherwise(pl.col("paid_on").shift(-1).over("account_id").backward_fill()
                   .over("account_id")).alias("natural_paid_on")).drop("paid_on", "full")


def run(customers: int = 4000, seed: int = 7, months: int = 6,
        arms: str = ARMS, assign_seed: int = 1) -> dict[str, Any]:
    """The experiment's report (``experiments.arm_kpis``) plus its set-up."""
    import polars as pl

    from dianfei.risk import experiments, segments
    from dianfei.sim import build_utility, pay_after_suspension

    start = Period(2025, 1)
    u = build_utility(customers, seed=seed, start=start)
    history = county_bills(u, start, 12 + months)
    begin = date(2026, 1, 1)  # the first bill dunned is 2025-12's, issued in January
    before = history.filter(pl.col("issued_on") < begin)
    paid = before.select("bill_id", pl.col("natural_paid_on").alias("paid_in_full_on"))
    bands = experiments.risk_bands(segments.payment_facts(
        before.select("account_id", "bill_id", "amount", "due_on"), paid, begin))
    assigned = experiments.assign(history["account_id"], experiments.parse_arms(arms),
                                  assign_seed)
    during = history.filter(pl.col("issued_on") >= begin)
    as_of = during["due_on"].max() + timedelta(days=60)

    def reconnect(cases: pl.DataFrame) -> pl.DataFrame:
        return pay_after_suspension(u, cases)

    bills, contacts = experiments.simulate_dunning(during, bands, assigned, reconnect, as_of)
    report = experiments.arm_kpis(bills, contacts, as_of)
    report["setup"] = {"customers": customers, "seed": seed, "months": months, "arms": arms,
                       "assign_seed": assign_seed, "first_issue": begin.isoformat(),
                       "bands": {r["band"]: r["len"] for r in
                                 bands.group_by("band").len().sort("band").to_dicts()}}
    return report
