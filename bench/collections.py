"""Collections benchmark: one day of collections for N accounts of which a tenth are in arrears.

    python -m bench.collections --accounts 1000000 --backend sqlite

Builds the synthetic utility, posts one overdue bill for every tenth account (spread over 1–90
days past due) and a payment for a few, then times ``run_day`` for a first (cold: every account
enters the ladder) and a second (steady-state) day. Prints one JSON line with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop


def run(accounts: int, backend: str) -> dict[str, Any]:
    import numpy as np
    import polars as pl
    from tests.collections.fakes import FakeNotifier, FakeSwitch

    from dianfei import sim
    from dianfei.collections.service import run_day
    from dianfei.core.clock import BUSINESS_TZ, FixedClock
    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import load_settings
    from dianfei.customers.service import load_population
    from dianfei.db.engine import open_database
    from dianfei.ledger.service import post_frame

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-"))
    url, pg_name = _database(backend, tmp)
    out: dict[str, Any] = {"accounts": accounts, "backend": backend}
    try:
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(tmp)}))
        utility = sim.build_utility(accounts, seed=7)
        with db.engine.begin() as conn:
            load_population(conn, PiiCipher(b"k" * 32), regions=utility.regions,
                            stations=utility.stations, collectors=utility.collectors,
                            customers=utility.customers, meters=utility.meters)
        day = date(2026, 3, 18)
        ids = utility.customers.filter(pl.col("payment_mode") == "postpaid")["customer_id"]
        arrears = ids.gather_every(10)
        n = arrears.len()
        rng = np.random.default_rng(1)
        due = [day - timedelta(days=int(d)) for d in rng.integers(1, 91, size=n)]
        posted = datetime(2026, 1, 1)
        bills = pl.DataFrame({"account_id": arrears, "customer_id": arrears,
                              "kind": "bill", "amount": rng.integers(2_000, 80_000, size=n),
                              "posted_at": posted, "business_date": date(2026, 1, 1),
                              "due_on": pl.Series(due, dtype=pl.Date)}).with_columns(
            pl.format("{}-202512-1", "account_id").alias("reference"))
        with db.engine.begin() as conn:
            post_frame(conn, bills)
        out["in_arrears"] = n
        notifier, switch = FakeNotifier(), FakeSwitch()
        for label, d in (("first_day_s", day), ("second_day_s", day + timedelta(days=1))):
            clock = FixedClock(datetime.combine(d, dtime(9), tzinfo=BUSINESS_TZ))
            t0 = time.perf_counter()
            report = run_day(db, d, clock=clock, switch=switch, notifier=notifier)
            out[label] = round(time.perf_counter() - t0, 2)
            out[label.replace("_s", "_timings")] = {k: round(v, 2) for k, v in report.timings.items()}
            out[label.replace("_s", "_counts")] = {"late_fees": report.late_fees,
                                                   "dunning_changes": report.dunning_changes,
                                                   "notices": report.notices,
                                                   "stop_notices": report.stop_notices}
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        db.engine.dispose()
    finally:
        _drop(pg_name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args()
    print(json.dumps(run(args.accounts, args.backend)))


if __name__ == "__main__":
    main()
