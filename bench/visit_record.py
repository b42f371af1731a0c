"""Recording a visit or call outcome (the collector's app calls this once per visit).

    python -m bench.visit_record --accounts 100000 --visits 1000 --backend sqlite|postgresql

Builds the synthetic utility, posts one overdue bill for a tenth of the accounts and a week of
daily collections state, then records ``--visits`` visits through the one service function
(``collections.visits.record_visit``, each in its own transaction as the REST route does), the
outcomes mixed as in the field: promises (watched), disputes (tickets), hardship / wrong contact /
vacant (tasks), paid, refused. Prints one JSON line: p50, p95, max and mean per visit (target
≤ 50 ms each) and the rows written.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop

#: how often each outcome comes back from the field (of 20 visits)
MIX = (["promise"] * 6 + ["refused"] * 4 + ["paid"] * 2 + ["dispute"] * 2 + ["hardship"] * 2
       + ["wrong_contact"] * 2 + ["vacant"] * 2)


def run(accounts: int, visits: int, backend: str) -> dict[str, Any]:
    import numpy as np
    import polars as pl
    from sqlalchemy import text

    from dianfei import sim
    from dianfei.collections.visits import record_visit
    from dianfei.core.clock import BUSINESS_TZ, FixedClock
    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import load_settings
    from dianfei.customers.service import load_population
    from dianfei.db.engine import open_database
    from dianfei.ledger.service import post_frame

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-"))
    url, pg_name = _database(backend, tmp)
    out: dict[str, Any] = {"accounts": accounts, "visits": visits, "backend": backend}
    try:
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(tmp)}))
        utility = sim.build_utility(accounts, seed=7)
        with db.engine.begin() as conn:
            load_population(conn, PiiCipher(b"k" * 32), regions=utility.regions,
                            stations=utility.stations, collectors=utility.collectors,
                            customers=utility.customers, meters=utility.meters)
        day = date(2026, 3, 18)
        ids = utility.customers.filter(pl.col("payment_mode") == "postpaid")["customer_id"]
        n = accounts // 10
        arrears = ids.gather((np.arange(n) * (ids.len() / n)).astype(np.int64))
        rng = np.random.default_rng(1)
        amounts = rng.integers(2_000, 80_000, size=n)
        bills = pl.DataFrame({"account_id": arrears, "customer_id": arrears, "kind": "bill",
                              "amount": amounts, "posted_at": datetime(2026, 1, 1),
                              "business_date": date(2026, 1, 1),
                              "due_on": date(2026, 1, 18)}).with_columns(
            pl.format("{}-202512-1", "account_id").alias("reference"))
        with db.engine.begin() as conn:
            post_frame(conn, bills)
        collectors = utility.collectors["collector_id"].to_list()
        owed = dict(zip(arrears.to_list(), amounts.tolist(), strict=True))
        clock = FixedClock(datetime.combine(day, dtime(18), tzinfo=BUSINESS_TZ))
        seen = datetime.combine(day, dtime(10), tzinfo=BUSINESS_TZ)
        picks = rng.integers(0, n, size=visits)
        times = []
        by_outcome: dict[str, list[float]] = {}
        for i, k in enumerate(picks.tolist()):
            acct = arrears[k]
            outcome = MIX[i % len(MIX)]
            kw: dict[str, Any] = {}
            if outcome == "promise":
                kw = {"promise_on": day + timedelta(days=7), "promise_amount_fen": owed[acct]}
            elif outcome == "dispute":
                kw = {"bill_id": f"{acct}-202512-1"}
            t0 = time.perf_counter()
            with db.session() as s:  # one transaction per visit, as the REST route
                record_visit(s, request_id=f"bench-{i}", account_id=acct,
                             collector_id=collectors[i % len(collectors)],
                             channel="visit" if i % 3 else "call", outcome=outcome, at=seen,
                             recorded_by="bench", clock=clock, **kw)
            times.append(time.perf_counter() - t0)
            by_outcome.setdefault(outcome, []).append(times[-1] * 1000)
        ms = sorted(t * 1000 for t in times)
        out.update({
            "in_arrears": n, "p50_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[int(len(ms) * 0.95) - 1], 2), "max_ms": round(ms[-1], 2),
            "mean_ms": round(statistics.fmean(ms), 2), "target_ms": 50,
            "p95_ms_by_outcome": {k: round(sorted(v)[int(len(v) * 0.95) - 1], 2)
                                  for k, v in sorted(by_outcome.items())}})
        with db.engine.connect() as conn:
            out["rows"] = {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                           for t in ("collection_visits", "payment_promises", "service_tickets",
                                     "collection_tasks", "collection_events")}
        db.engine.dispose()
    finally:
        _drop(pg_name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--visits", type=int, default=1_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    a = ap.parse_args()
    print(json.dumps(run(a.accounts, a.visits, a.backend)))


if __name__ == "__main__":
    main()
