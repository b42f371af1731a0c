"""What a collections day pays for the late-payment history, once a year of it is stored:

    python -m bench.late_history --accounts 1000000 [--backend sqlite|postgresql]

The synthetic book: every account billed on the 18th of each of the last 12 months, a quarter of
those bills paid late (one ``late_fee_accruals`` row each, 1–40 days late), a tenth of the
accounts in arrears today, and the rating pass of yesterday stored with each account's count.
Two reads of each day, timed after a warm-up (best of three):

1. the risk features of the accounts the day scores: what the daily run reads now
   (``repository.late_history_of`` of the accounts in arrears, through the account index, as
   ``Context.late_history`` does) beside the whole book's year grouped (what it read until
   session 18, kept here as SQL for the comparison);
2. which accounts' late counts may have moved since yesterday's rating: now
   (``ops_repository.late_count_moved``: the accruals opened since the pass and the window's
   edges) beside the count of every account's window compared with its stored rating (until
   session 18, SQL here).

Prints one JSON line; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop

DAY = date(2026, 5, 8)

#: the whole book's year of late bills grouped per account (the read the daily run replaced)
WHOLE_BOOK = (
    "SELECT account_id, COUNT(*) AS late_count, CAST(AVG({days}) AS DOUBLE PRECISION) "
    "AS avg_days_late, SUM(CASE WHEN due_on >= :recent THEN 1 ELSE 0 END) AS late_recent "
    "FROM (SELECT account_id, through, due_on FROM late_fee_accruals WHERE due_on >= :since "
    "ORDER BY due_on) AS y GROUP BY account_id")

#: every account's late count of the window compared with its stored rating (replaced too)
COUNT_COMPARED = (
    "SELECT l.account_id FROM (SELECT account_id, COUNT(*) AS late FROM late_fee_accruals "
    "WHERE due_on >= :s AND due_on < :u GROUP BY account_id) l LEFT JOIN credit_ratings r "
    "ON r.account_id = l.account_id WHERE r.late IS NULL OR r.late <> l.late "
    "UNION SELECT r.account_id FROM credit_ratings r WHERE r.late > 0 AND NOT EXISTS ("
    "SELECT 1 FROM late_fee_accruals a WHERE a.account_id = r.account_id "
    "AND a.due_on >= :s AND a.due_on < :u)")


def _best(fn: Callable[[], Any], times: int = 3) -> tuple[float, Any]:
    fn()  # warm: the first read of a table pays for the pages, which every later day finds cached
    best, got = float("inf"), None
    for _ in range(times):
        t = time.perf_counter()
        got = fn()
        best = min(best, time.perf_counter() - t)
    return best, got


def _book(accounts: int) -> tuple[Any, Any, list[str]]:
    """(late_fee_accruals rows, credit_ratings rows, the accounts in arrears today)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(18)
    ids = np.array([f"A{i:08d}" for i in range(accounts)], dtype=object)
    parts = []
    for m in range(1, 13):  # the bills due on the 18th of each of the last 12 months
        y, mo = divmod(DAY.year * 12 + DAY.month - 1 - m, 12)
        due = date(y, mo + 1, 18)
        late = np.flatnonzero(rng.random(accounts) < 0.25)
        days = rng.integers(1, 41, size=late.size)
        parts.append(pl.DataFrame({
            "bill_id": [f"{a}-{due:%Y%m}-1" for a in ids[late]], "account_id": ids[late],
            "due_on": [due] * late.size,
            "through": [due + timedelta(days=int(d)) for d in days]},
            schema={"bill_id": pl.String, "account_id": pl.String, "due_on": pl.Date,
                    "through": pl.Date}))
    rows = pl.concat(parts).with_columns(
        pl.col("account_id").alias("customer_id"), pl.lit("residential").alias("customer_class"),
        pl.lit(0, pl.Int64).alias("raw"), pl.lit(0, pl.Int64).alias("posted"),
        pl.lit(0, pl.Int64).alias("accrued"), pl.lit(False).alias("waived"),
        pl.col("through").alias("closed_on"),
        # opened by the run of the bill's first day overdue
        (pl.col("due_on") + pl.duration(days=1)).alias("opened_on"))
    # a tenth in arrears today (their history is what the day scores)
    arrears = ids[rng.permutation(accounts)[: accounts // 10]].tolist()
    ratings = (rows.filter(pl.col("due_on") < DAY - timedelta(days=1))
               .group_by("account_id").agg(pl.len().cast(pl.Int64).alias("late")))
    # one account in a thousand had an old bill re-issued and found overdue by yesterday's run,
    # after yesterday's rating: its late count moved without a new due date
    reissued = ids[rng.permutation(accounts)[: max(1, accounts // 1000)]]
    old = rows.filter(pl.col("account_id").is_in(pl.Series(reissued.tolist()).implode())).group_by(
        "account_id").agg(pl.all().first()).with_columns(
        (pl.col("bill_id") + "R"), pl.lit(DAY - timedelta(days=1)).alias("opened_on"))
    return pl.concat([rows, old.select(rows.columns)]), ratings, arrears


def run(accounts: int, backend: str) -> dict[str, Any]:
    import polars as pl
    from sqlalchemy import text

    from dianfei.collections import ops_repository, repository
    from dianfei.core.settings import load_settings
    from dianfei.db.bulk import write_frame
    from dianfei.db.engine import open_database
    from dianfei.db.frames import read_frame

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-"))
    url, pg_name = _database(backend, tmp)
    out: dict[str, Any] = {"accounts": accounts, "backend": backend}
    try:
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url, "DIANFEI_DATA_DIR": str(tmp)}))
        rows, ratings, arrears = _book(accounts)
        with db.engine.begin() as conn:
            write_frame(conn, "late_fee_accruals", rows)
            write_frame(conn, "credit_ratings", ratings.with_columns(
                pl.col("account_id").alias("customer_id"), pl.lit("B").alias("grade"),
                pl.lit(0).alias("points"), pl.lit(0).alias("on_time"),
                pl.lit(0).alias("broken"), pl.lit(0).alias("suspensions"),
                pl.lit(False).alias("repeat_defaulter"), pl.lit(DAY).alias("since"),
                pl.lit(DAY).alias("as_of")))
            if backend == "sqlite":
                conn.exec_driver_sql("ANALYZE")
            else:
                conn.exec_driver_sql("ANALYZE late_fee_accruals")
                conn.exec_driver_sql("ANALYZE credit_ratings")
        out["accruals"] = rows.height
        out["in_arrears"] = len(arrears)
        since, recent = DAY - timedelta(days=365), DAY - timedelta(days=92)
        days = ("julianday(through) - julianday(due_on)" if backend == "sqlite"
                else "through - due_on")
        whole_s, whole = _best(lambda: read_frame(db.engine, WHOLE_BOOK.format(days=days),
                                                  {"since": since, "recent": recent}))
        of_s, of = _best(lambda: repository.late_history_of(db.engine, arrears, since, recent, DAY))
        out["history_whole_book_s"] = round(whole_s, 3)
        out["history_whole_book_rows"] = whole.height
        out["history_of_arrears_s"] = round(of_s, 3)
        out["history_of_arrears_rows"] = of.height
        # the accounts' rows are the whole book's rows of those accounts, to the value
        cols = ["account_id", "late_count", "avg_days_late", "late_recent"]
        mine = whole.filter(pl.col("account_id").is_in(pl.Series(arrears).implode()))
        out["history_same_as_whole_book"] = mine.select(cols).sort("account_id").equals(
            of.select(cols).sort("account_id"))
        passed = DAY - timedelta(days=1)
        window, passed_window = (date(2025, 5, 8), passed), (date(2025, 5, 7), passed - timedelta(days=1))

        def compared() -> set[str]:
            with db.engine.connect() as conn:
                return {r[0] for r in conn.execute(text(COUNT_COMPARED),
                                                   {"s": window[0], "u": window[1]}).all()}

        cmp_s, before = _best(compared)
        moved_s, after = _best(lambda: ops_repository.late_count_moved(db.engine, passed,
                                                                       passed_window, window))
        out["late_counts_compared_s"] = round(cmp_s, 3)
        out["late_counts_moved_s"] = round(moved_s, 4)
        out["late_counts_moved_accounts"] = len(after)
        # the stored ratings were counted as of the pass: what moved is found either way
        out["late_counts_compared_accounts"] = len(before)
        out["moved_found_by_both"] = bool(before) and before <= after
    finally:
        _drop(pg_name)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args()
    print(json.dumps(run(args.accounts, args.backend)))


if __name__ == "__main__":
    main()
