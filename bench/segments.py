"""Risk segments' cost, in the two parts collections pays (docs/risk-insight.md, "Segments in
the daily run"):

    python -m bench.segments --accounts 100000 [--arrears-share 0.1]

1. once per billed period: the consumption facts of every account (the theft signals and
   points score, usual kWh, its percentile, bills in 12 months) from 24 months of the synthetic
   county's bills — what ``risk.service.segment_consumption_facts`` computes and keeps;
2. every day: the rules over the accounts in arrears only, from facts already read (what
   ``collections.segments.snapshot_segments`` does after reading the stored file).

Pure functions on the sim's monthly kWh, no database (the database path feeds the same
functions). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def run(accounts: int, arrears_share: float) -> dict[str, Any]:
    import numpy as np
    import polars as pl

    from dianfei.core.clock import Period
    from dianfei.risk import anomaly
    from dianfei.risk import segments as seg
    from dianfei.sim import build_utility, period_consumption

    start = Period(2025, 1)
    u = build_utility(accounts, seed=7, start=start)
    meters = u.meters.select("meter_id", "customer_id")
    parts, p = [], start
    for _ in range(24):
        parts.append(period_consumption(u, p).join(meters, on="meter_id").select(
            pl.col("customer_id").alias("account_id"), pl.lit(str(p)).alias("period"), "kwh"))
        p = p.next()
    history = pl.concat(parts).sort("account_id", "period")
    facts = u.customers.select(pl.col("customer_id").alias("account_id"), "customer_class",
                               "low_income", pl.lit(False).alias("protected"))
    as_of = Period(2026, 12)
    out: dict[str, Any] = {"accounts": accounts, "months": 24}
    t = time.perf_counter()
    feats = anomaly.features(history, facts, as_of)
    theft = anomaly.score(feats).select("account_id", pl.col("score").alias("theft_score"),
                                        pl.col("months_low").cast(pl.Int32))
    usage = (seg.usual_consumption(history).join(theft, on="account_id", how="full", coalesce=True)
             .select("account_id", *seg.CONSUMPTION_COLUMNS))
    out["per_period_facts_s"] = round(time.perf_counter() - t, 2)
    # the day: a share of the accounts in arrears, with the run's own facts
    rng = np.random.default_rng(1)
    n = int(accounts * arrears_share)
    arrears = facts.sample(n, seed=1).with_columns(
        pl.Series("amount_overdue", rng.integers(2_000, 80_000, size=n)),
        pl.Series("days_overdue", rng.integers(1, 91, size=n)))
    late = arrears.select("account_id", pl.Series("late_count", rng.integers(0, 12, size=n)),
                          pl.Series("late_recent", rng.integers(0, 3, size=n)))
    rules = seg.load_rules()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        day_facts = (arrears.select("account_id", "customer_class", "low_income", "protected",
                                    pl.col("amount_overdue").alias("overdue_amount"),
                                    "days_overdue")
                     .join(late.select("account_id", pl.col("late_count").alias("late_12m"),
                                       "late_recent"), on="account_id", how="left")
                     .with_columns((pl.col("late_12m") - pl.col("late_recent"))
                                   .clip(lower_bound=0).alias("late_before"))
                     .join(usage.join(arrears.select("account_id"), on="account_id", how="semi"),
                           on="account_id", how="left"))
        got = seg.assign(day_facts, rules)
        times.append(time.perf_counter() - t)
    out["in_arrears"] = n
    out["daily_rules_s"] = {"min": round(min(times), 3), "max": round(max(times), 3)}
    out["segments"] = dict(got.group_by("segment").len().sort("segment").iter_rows())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--arrears-share", type=float, default=0.1)
    args = ap.parse_args()
    print(json.dumps(run(args.accounts, args.arrears_share)))


if __name__ == "__main__":
    main()
