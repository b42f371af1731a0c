"""Worklist benchmark: every collector's daily worklist for N accounts, a tenth in arrears with an
open collector visit.

    python -m bench.worklist --accounts 1000000 [--what core|db|both] [--backend sqlite|postgresql]
                             [--profile F]

``core`` times the column arithmetic of a build on frames (no database): the risk points score
of the arrears accounts, ranking by expected recovery, the reasons in words, assignment (own
collector, 5% of collectors off duty so their accounts go to the least-loaded colleague of the
station) and balancing. ``db`` loads the synthetic utility, posts one overdue bill and one open
``collector_visit`` task per arrears account, then times ``build_worklists`` end to end (every
read through the owners' services, the write of the rows) and reading the ranked lists back.
Prints one JSON line; the load average is recorded because the machine is shared.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop

DAY = date(2026, 3, 18)


def _arrears(utility: Any, accounts: int) -> tuple[Any, Any]:
    """The arrears accounts (a tenth, spread evenly over the postpaid ones) and a generator."""
    import numpy as np
    import polars as pl

    ids = utility.customers.filter(pl.col("payment_mode") == "postpaid")["customer_id"]
    n = accounts // 10
    return ids.gather((np.arange(n) * (ids.len() / n)).astype(np.int64)), np.random.default_rng(1)


def _roster(utility: Any, rng: Any) -> Any:
    import polars as pl

    c = utility.collectors
    return c.select("collector_id", "station_id").with_columns(
        pl.Series("active", rng.random(c.height) >= 0.05),
        pl.lit(250, pl.Int64).alias("capacity"))


def core(accounts: int, profile: str | None) -> dict[str, Any]:
    import polars as pl

    from dianfei import sim
    from dianfei.collections.assignment import Rules, assign, balance, rank
    from dianfei.risk.service import RulesScorer

    utility = sim.build_utility(accounts, seed=7)
    arrears, rng = _arrears(utility, accounts)
    n = arrears.len()
    facts = utility.customers.select("customer_id", "customer_class", "region_id", "station_id",
                                     "collector_id").rename({"customer_id": "account_id"})
    feats = pl.DataFrame({"account_id": arrears, "late_count": rng.integers(0, 6, size=n),
                          "avg_days_late": rng.uniform(0, 30, size=n),
                          "arrears": rng.integers(2_000, 80_000, size=n),
                          "broken_plans": rng.integers(0, 2, size=n)})
    base = feats.select("account_id", pl.col("arrears").alias("amount_overdue"),
                        pl.Series("days_overdue", rng.integers(1, 91, size=n)),
                        pl.lit("collector_visit").alias("task_kinds"))
    roster = _roster(utility, rng)
    rules = Rules()
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    t0 = time.perf_counter()
    c0 = time.process_time()
    scores = RulesScorer().score(feats)
    t1 = time.perf_counter()
    work = (base.join(scores.select("account_id", (pl.col("score") / 100).alias("p_default"),
                                    pl.col("reasons").alias("risk_reasons")), on="account_id")
            .join(facts, on="account_id", how="left")
            .with_columns(pl.lit(None, pl.String).alias("language")))
    ranked = rank(work, rules)
    t2 = time.perf_counter()
    assigned = assign(ranked, roster, rules)
    t3 = time.perf_counter()
    moves = balance(assigned.select("account_id", "collector_id", "expected", "amount_overdue"),
                    roster)
    t4 = time.perf_counter()
    cpu = time.process_time() - c0
    if prof:
        prof.disable()
        prof.dump_stats(f"{profile}.core")
    assert assigned["account_id"].n_unique() == n
    return {"accounts": accounts, "in_arrears": n, "collectors": roster.height,
            "inactive": int((~roster["active"]).sum()),
            "core_s": round(t4 - t0, 2), "core_cpu_s": round(cpu, 2),
            "core_steps_s": {"score": round(t1 - t0, 2), "rank_and_reasons": round(t2 - t1, 2),
                             "assign": round(t3 - t2, 2), "balance": round(t4 - t3, 2)},
            "reassigned_from_inactive": int(assigned["rule"].str.starts_with("station").sum()),
            "balancing_moves": moves.height}


def db_build(accounts: int, backend: str, profile: str | None) -> dict[str, Any]:
    import polars as pl

    from dianfei import sim
    from dianfei.collections.worklist import _ranked, build_worklists, set_roster
    from dianfei.core.clock import BUSINESS_TZ, FixedClock
    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import load_settings
    from dianfei.customers.service import load_population
    from dianfei.db.bulk import write_frame
    from dianfei.db.engine import open_database
    from dianfei.ledger.service import post_frame

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-"))
    url, pg_name = _database(backend, tmp)
    out: dict[str, Any] = {"backend": backend}
    try:
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(tmp)}))
        utility = sim.build_utility(accounts, seed=7)
        t = time.perf_counter()
        with db.engine.begin() as conn:
            load_population(conn, PiiCipher(b"k" * 32), regions=utility.regions,
                            stations=utility.stations, collectors=utility.collectors,
                            customers=utility.customers, meters=utility.meters)
        arrears, rng = _arrears(utility, accounts)
        n = arrears.len()
        due = [DAY - timedelta(days=int(d)) for d in rng.integers(1, 91, size=n)]
        with db.engine.begin() as conn:
            post_frame(conn, pl.DataFrame({
                "account_id": arrears, "customer_id": arrears, "kind": "bill",
                "amount": rng.integers(2_000, 80_000, size=n), "posted_at": datetime(2026, 1, 1),
                "business_date": date(2026, 1, 1), "due_on": pl.Series(due, dtype=pl.Date)})
                .with_columns(pl.format("{}-202512-1", "account_id").alias("reference")))
            now = datetime.combine(DAY, dtime(8), tzinfo=BUSINESS_TZ).astimezone(UTC)
            write_frame(conn, "collection_tasks", pl.DataFrame({
                "key": [f"bench:{a}" for a in arrears.to_list()],
                "account_id": arrears, "customer_id": arrears, "kind": "collector_visit",
                "status": "open", "created_at": now, "due_at": now + timedelta(days=3),
                "detail": None}, schema_overrides={"created_at": pl.Datetime("us", "UTC"),
                                                   "due_at": pl.Datetime("us", "UTC"),
                                                   "detail": pl.String}))
        for cid in _roster(utility, rng).filter(~pl.col("active"))["collector_id"].to_list():
            set_roster(db, cid, by="bench", active=False)
        out["setup_s"] = round(time.perf_counter() - t, 1)
        clock = FixedClock(datetime.combine(DAY, dtime(18), tzinfo=BUSINESS_TZ))
        prof = cProfile.Profile() if profile else None
        if prof:
            prof.enable()
        t0, c0 = time.perf_counter(), time.process_time()
        report = build_worklists(db, DAY, clock=clock)
        t1 = time.perf_counter()
        lists = _ranked(db, DAY, DAY, None)
        t2 = time.perf_counter()
        cpu = time.process_time() - c0
        if prof:
            prof.disable()
            prof.dump_stats(f"{profile}.db")
        assert report["accounts"] == n and lists["account_id"].n_unique() == n
        # what reading the lists adds for their risk segment column (collections/segments.py)
        from dianfei.collections.segments import account_segments

        t3 = time.perf_counter()
        segments = account_segments(db, DAY, lists["account_id"].to_list())
        out["segments_read_s"] = round(time.perf_counter() - t3, 2)
        assert segments.height == n
        out.update({"build_s": round(t1 - t0, 2), "read_ranked_s": round(t2 - t1, 2),
                    "build_and_read_cpu_s": round(cpu, 2), "collectors_with_list": report["collectors"],
                    "in_arrears": n})
        db.engine.dispose()
    finally:
        _drop(pg_name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--what", choices=("core", "db", "both"), default="both")
    ap.add_argument("--backend", default="sqlite")
    ap.add_argument("--profile")
    a = ap.parse_args()
    out: dict[str, Any] = {"accounts": a.accounts, "load_before": os.getloadavg()[0]}
    if a.what in ("core", "both"):
        out.update(core(a.accounts, a.profile))
    if a.what in ("db", "both"):
        out.update(db_build(a.accounts, a.backend, a.profile))
    out["load_after"] = round(os.getloadavg()[0], 1)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps(out))


if __name__ == "__main__":
    main()
