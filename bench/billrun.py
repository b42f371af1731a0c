"""Bill run benchmark: N synthetic accounts, persisted; plus the raw-write floor.

The first month (every meter opens from its installation read) and then the steady state: the
second month, whose opening reads are found from the first month's bills (起码 = 上期止码), with
the first month's bills, lines and ledger already in the database; ``--months 12`` bills the rest
of the year too (each month's keys go between the earlier months' in every customer-first index).
Two floors: the first month's rows written raw into an empty copy of the schema, and the second
month's written raw into that copy once it holds the first month's (``raw_write_steady_all_s``).

Run one backend per process so peak memory (ru_maxrss) belongs to that run alone:
    python -m bench.billrun --accounts 1000000 --backend sqlite [--months 12]
prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
import uuid
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def _database(backend: str, tmp: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.db'}", None
    import psycopg

    name = f"dianfei_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name


def _drop(name: str | None) -> None:
    if name:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _month_rows(db: Any, period: str) -> dict[str, Any]:
    """Every row a bill run wrote for ``period``: bills, lines, ledger debits, open items and the
    per-meter rows of multi-meter bills."""
    from dianfei.db.frames import read_frame

    p = {"p": period}
    return {
        "bills": read_frame(db.engine, "SELECT * FROM bills WHERE period = :p", p,
                            dates=("issued_on", "due_on"),
                            instants=("read_from_at", "read_to_at", "cancelled_at")),
        "bill_lines": read_frame(db.engine, "SELECT l.* FROM bill_lines l JOIN bills b "
                                 "ON b.bill_id = l.bill_id WHERE b.period = :p", p),
        "ledger_entries": read_frame(
            db.engine, "SELECT account_id, customer_id, kind, amount, posted_at, business_date, "
            "due_on, reference FROM ledger_entries WHERE reference IN "
            "(SELECT bill_id FROM bills WHERE period = :p)", p,
            dates=("business_date", "due_on"), instants=("posted_at",)),
        "open_items": read_frame(db.engine, "SELECT * FROM open_items WHERE reference IN "
                                 "(SELECT bill_id FROM bills WHERE period = :p)", p,
                                 dates=("due_on",),
                                 instants=("updated_at", "last_cleared_at", "paid_in_full_at")),
        "bill_meters": read_frame(db.engine, "SELECT m.* FROM bill_meters m JOIN bills b "
                                  "ON b.bill_id = m.bill_id WHERE b.period = :p", p,
                                  instants=("read_from_at", "read_to_at")),
    }


def _write_rows(db: Any, rows: dict[str, Any], tables: tuple[str, ...]) -> None:
    """``rows``' frames of ``tables`` written raw (bulk insert / COPY), in one transaction."""
    from dianfei.db.bulk import write_frame

    with db.engine.begin() as conn:
        for name in tables:
            if rows[name].height:
                write_frame(conn, name, rows[name])


def run(accounts: int, backend: str, months: int = 2) -> dict[str, Any]:

    from sqlalchemy import text

    from dianfei import sim
    from dianfei.billing.service import run_bill_run
    from dianfei.core.clock import BUSINESS_TZ, FixedClock
    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import load_settings
    from dianfei.customers.service import load_population
    from dianfei.db.engine import open_database
    from dianfei.metering.service import store_reads

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-"))
    url, pg_name = _database(backend, tmp)
    url2, pg_name2 = _database(backend, tmp)
    out: dict[str, Any] = {"accounts": accounts, "backend": backend}
    try:
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url,
                                          "DIANFEI_DATA_DIR": str(tmp / "var")}))
        t = time.perf_counter()
        u = sim.build_utility(accounts, seed=7)
        period = u.start
        with db.engine.begin() as conn:
            load_population(conn, PiiCipher(b"b" * 32), regions=u.regions, stations=u.stations,
                            collectors=u.collectors, customers=u.customers, meters=u.meters)
            store_reads(conn, sim.opening_reads(u))
            store_reads(conn, sim.monthly_reads(u, period))
        if backend == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
        out["setup_s"] = round(time.perf_counter() - t, 2)
        d = period.end_date
        clock = FixedClock(datetime.combine(d.replace(day=3), dtime(9), tzinfo=BUSINESS_TZ))
        t = time.perf_counter()
        res = run_bill_run(db, period, clock)
        out["bill_run_s"] = round(time.perf_counter() - t, 2)
        out["breakdown_s"] = {k: round(v, 2) for k, v in res.timings.items()}
        out["billed"], out["exceptions"] = res.billed, res.exceptions

        # steady state: month 2, the month-1 bills in place
        nxt = period.next()
        with db.engine.begin() as conn:
            store_reads(conn, sim.monthly_reads(u, nxt))
        if backend == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE"))
        d2 = nxt.end_date
        clock2 = FixedClock(datetime.combine(d2.replace(day=3), dtime(9), tzinfo=BUSINESS_TZ))
        t = time.perf_counter()
        res2 = run_bill_run(db, nxt, clock2)
        out["steady_bill_run_s"] = round(time.perf_counter() - t, 2)
        out["steady_breakdown_s"] = {k: round(v, 2) for k, v in res2.timings.items()}
        out["steady_billed"], out["steady_exceptions"] = res2.billed, res2.exceptions
        out["ratio_steady_to_first"] = round(out["steady_bill_run_s"] / out["bill_run_s"], 2)

        # later months (``--months``): what the run reads grows through the year (the
        # year-to-date kWh of annual tiers sums every bill of the year before the period)
        later: list[dict[str, Any]] = []
        month = nxt
        for _ in range(months - 2):
            month = month.next()
            with db.engine.begin() as conn:
                store_reads(conn, sim.monthly_reads(u, month))
            if backend == "postgresql":
                with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    c.execute(text("VACUUM ANALYZE"))
            at = FixedClock(datetime.combine(month.end_date.replace(day=3), dtime(9),
                                             tzinfo=BUSINESS_TZ))
            t = time.perf_counter()
            res_m = run_bill_run(db, month, at)
            later.append({"period": str(month), "bill_run_s": round(time.perf_counter() - t, 2),
                          "breakdown_s": {k: round(v, 2) for k, v in res_m.timings.items()},
                          "billed": res_m.billed, "exceptions": res_m.exceptions})
        if later:
            out["later_months"] = later
            out["ratio_last_to_first"] = round(later[-1]["bill_run_s"] / out["bill_run_s"], 2)

        # the floor: the same rows written raw into an empty copy of the schema
        # (the first month's rows)
        rows = _month_rows(db, str(period))
        out["rows"] = {name: frame.height for name, frame in rows.items()}
        db2 = open_database(load_settings({"DIANFEI_DATABASE_URL": url2,
                                           "DIANFEI_DATA_DIR": str(tmp / "var2")}))
        t = time.perf_counter()
        _write_rows(db2, rows, ("bills", "bill_lines", "ledger_entries"))
        out["raw_write_s"] = round(time.perf_counter() - t, 2)
        out["ratio_bill_run_to_raw"] = round(out["bill_run_s"] / out["raw_write_s"], 2)
        out["ratio_steady_to_raw"] = round(out["steady_bill_run_s"] / out["raw_write_s"], 2)
        t = time.perf_counter()
        # what the bill run writes besides, since the money core: an open item per debit and
        # the per-meter rows of multi-meter bills (the floor above predates them)
        _write_rows(db2, rows, ("open_items", "bill_meters"))
        # the floor of every row the run writes (bills, lines, ledger, open items, bill meters)
        out["raw_write_all_s"] = round(out["raw_write_s"] + time.perf_counter() - t, 2)
        out["ratio_bill_run_to_raw_all"] = round(out["bill_run_s"] / out["raw_write_all_s"], 2)
        out["ratio_steady_to_raw_all"] = round(out["steady_bill_run_s"] / out["raw_write_all_s"],
                                               2)
        # the steady month's own floor: month 2's rows written raw into the copy that now holds
        # month 1's — its keys go between month 1's in every customer-first B-tree, as the
        # run's do; an empty copy cannot show that cost
        steady_rows = _month_rows(db, str(nxt))
        with db2.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE" if backend == "postgresql" else "ANALYZE"))
        t = time.perf_counter()
        _write_rows(db2, steady_rows, tuple(steady_rows))
        out["raw_write_steady_all_s"] = round(time.perf_counter() - t, 2)
        out["ratio_steady_to_raw_steady_all"] = round(
            out["steady_bill_run_s"] / out["raw_write_steady_all_s"], 2)
        db.engine.dispose()
        db2.engine.dispose()
    finally:
        _drop(pg_name)
        _drop(pg_name2)
        # a million accounts' year is tens of gigabytes of SQLite files: gone once measured
        shutil.rmtree(tmp, ignore_errors=True)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--months", type=int, default=2,
                    help="months billed: the first, the steady month 2, and later ones (≥ 2)")
    a = ap.parse_args()
    if a.months < 2:
        ap.error(f"--months is at least 2 (the first month and the steady month), got {a.months}")
    print(json.dumps(run(a.accounts, a.backend, a.months)))


if __name__ == "__main__":
    main()
