"""Rating-only benchmark: the columnar rater over N synthetic accounts (no database)."""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any


def usage_frame(accounts: int) -> Any:
    import polars as pl

    from dianfei import sim
    from dianfei.billing.consumption import RATER_COLUMN

    u = sim.build_utility(accounts, seed=7)
    opening, closing = sim.opening_reads(u), sim.monthly_reads(u, u.start)
    reads = pl.concat([opening, closing])
    from dianfei.billing.consumption import account_usage, register_consumption, select_reads
    from dianfei.core.clock import start_of_day

    sel = select_reads(reads, start_of_day(u.start.first_day), start_of_day(u.start.end_date))
    usage, _ = account_usage(register_consumption(sel, u.meters))
    c = u.customers.join(u.meters.select("meter_id", "customer_id"), on="customer_id")
    frame = usage.join(c, on="meter_id").select(
        pl.col("customer_id").alias("account_id"), "tariff_id",
        *[v for v in RATER_COLUMN.values() if v != "max_demand_kw"],
        pl.lit(0, pl.Int64).alias("ytd_kwh"),
        pl.when(pl.col("demand_basis") == "demand").then(pl.col("max_demand_kw"))
        .otherwise(None).alias("max_demand_kw"),
        pl.when(pl.col("demand_basis") == "demand").then(None)
        .otherwise(pl.col("capacity_kva")).alias("capacity_kva"),
        "low_income")
    return u, frame


def run(accounts: int, repeat: int = 3) -> dict[str, Any]:
    from dianfei.billing.consumption import fit_registers_to_tariff
    from dianfei.tariffs.service import load_catalogue, rate_frame

    u, frame = usage_frame(accounts)
    cat = load_catalogue()
    periods = {t: tuple(getattr(cat.version_for(t, u.start).energy, "periods", ()))
               for t in frame["tariff_id"].unique().to_list()}
    frame = fit_registers_to_tariff(frame, periods)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        lines, errors = rate_frame(cat, u.start, frame)
        times.append(time.perf_counter() - t)
    return {"accounts": frame.height, "lines": lines.height, "errors": errors.height,
            "best_s": round(min(times), 3), "runs_s": [round(x, 3) for x in times],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    print(json.dumps(run(ap.parse_args().accounts)))


if __name__ == "__main__":
    main()
