"""Payment plans benchmark: the daily run's plan step, the bill document hook and the
performance report with many active plans.

    python -m bench.plans --accounts 100000 --plans 10000 --backend sqlite|postgresql

Builds the synthetic utility, posts an overdue bill for each of ``plans`` postpaid accounts and
stores one active plan each (half ``instalment`` plans riding on bills, half pay plans; a down
payment and 3–6 instalments, some already missed), then times step 2 of ``run_day`` (complete,
note a miss, break) on two days, the bill documents' instalment hook for 1,000 accounts and
``plan report`` by collector. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop


def run(accounts: int, plans: int, backend: str, profile: str | None = None) -> dict[str, Any]:
    import numpy as np
    import polars as pl
    from tests.collections.fakes import FakeNotifier, FakeSwitch

    from dianfei import sim
    from dianfei.collections.plan_report import bill_document_instalments, plan_performance
    from dianfei.collections.service import run_day
    from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import load_settings
    from dianfei.customers.service import load_population
    from dianfei.db.bulk import write_frame
    from dianfei.db.engine import open_database
    from dianfei.ledger.service import post_frame

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-"))
    url, pg_name = _database(backend, tmp)
    out: dict[str, Any] = {"accounts": accounts, "plans": plans, "backend": backend}
    try:
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(tmp)}))
        utility = sim.build_utility(accounts, seed=7)
        with db.engine.begin() as conn:
            load_population(conn, PiiCipher(b"k" * 32), regions=utility.regions,
                            stations=utility.stations, collectors=utility.collectors,
                            customers=utility.customers, meters=utility.meters)
        ids = utility.customers.filter(pl.col("payment_mode") == "postpaid")["customer_id"]
        ids = ids.head(plans)
        n = ids.len()
        rng = np.random.default_rng(3)
        amounts = rng.integers(30_000, 300_000, size=n)
        with db.engine.begin() as conn:
            post_frame(conn, pl.DataFrame({
                "account_id": ids, "customer_id": ids, "kind": "bill", "amount": amounts,
                "posted_at": datetime(2026, 1, 3), "business_date": date(2026, 1, 3),
                "due_on": date(2026, 1, 18)}).with_columns(
                pl.format("{}-202512-1", "account_id").alias("reference")))
        agreed = datetime(2026, 1, 25, 2, tzinfo=UTC)
        kinds = np.where(np.arange(n) % 2 == 0, "instalment", "pay_plan")
        plan_rows = pl.DataFrame({
            "plan_id": np.arange(1, n + 1), "account_id": ids, "customer_id": ids,
            "status": "active", "agreed_at": agreed, "agreed_on": date(2026, 1, 25),
            "ledger_mark": 0, "total": amounts, "requested_by": "bench", "kind": kinds,
            "down_payment": amounts // 5, "grace_days": 5}).with_columns(
            pl.col("agreed_at").dt.replace_time_zone("UTC"))
        inst: list[dict[str, Any]] = []
        for pid, total, kind, count in zip(plan_rows["plan_id"], amounts, kinds,
                                           rng.integers(3, 7, size=n), strict=True):
            down = int(total) // 5
            inst.append({"plan_id": int(pid), "seq": 0, "due_on": date(2026, 2, 1),
                         "amount": down, "period": None})
            rest, period = int(total) - down, Period(2026, 1)
            for i in range(1, int(count) + 1):
                share = rest // int(count) + (1 if i <= rest % int(count) else 0)
                inst.append({"plan_id": int(pid), "seq": i,
                             "due_on": (period.end_date + timedelta(days=25) if kind == "instalment"
                                        else date(2026, 1, 25) + timedelta(days=30 * i)),
                             "amount": share, "period": str(period) if kind == "instalment" else None})
                period = period.next()
        with db.engine.begin() as conn:
            write_frame(conn, "payment_plans", plan_rows)
            write_frame(conn, "plan_instalments", pl.DataFrame(inst, schema={
                "plan_id": pl.Int64, "seq": pl.Int64, "due_on": pl.Date, "amount": pl.Int64,
                "period": pl.String}))
        notifier, switch = FakeNotifier(), FakeSwitch()
        # 3 February: every down payment missed (noted, in grace); 10 February: all broken
        for label, d in (("day_in_grace", date(2026, 2, 3)), ("day_breaking", date(2026, 2, 10))):
            prof = cProfile.Profile() if profile else None
            if prof:
                prof.enable()
            rep = run_day(db, d, clock=FixedClock(datetime.combine(d, dtime(9), tzinfo=BUSINESS_TZ)),
                          switch=switch, notifier=notifier)
            if prof:
                prof.disable()
                prof.dump_stats(f"{profile}.{label}")
            out[f"{label}_plans_step_s"] = round(rep.timings["plans"], 3)
            out[f"{label}_run_day_s"] = round(sum(rep.timings.values()), 3)
            out[f"{label}_broken"] = rep.plans_broken
        t0 = time.perf_counter()
        bill_document_instalments(db.engine, ids.head(1000).to_list(), Period(2026, 1))
        out["bill_hook_1000_accounts_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        plan_performance(db.engine, date(2026, 1, 1), date(2026, 2, 28), "collector")
        out["report_by_collector_s"] = round(time.perf_counter() - t0, 3)
        db.engine.dispose()
    finally:
        _drop(pg_name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--plans", type=int, default=10_000)
    ap.add_argument("--backend", default="sqlite")
    ap.add_argument("--profile", help="write cProfile stats of each day to PROFILE.<day>")
    a = ap.parse_args()
    print(json.dumps(run(a.accounts, a.plans, a.backend, a.profile)))


if __name__ == "__main__":
    main()
