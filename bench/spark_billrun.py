"""The bill run on Spark against the local backend: the same synthetic county, billed once by
each backend into its own database, timed; and each Spark partition's own pricing and writing
time, the per-core throughput behind docs/scaling.md's projection.

    python -m bench.spark_billrun --accounts 1000000 [--backend sqlite|postgresql]
        [--partitions N] [--order local-first|spark-first]
    python -m bench.spark_billrun --accounts 1000000 --memory local|spark

prints one JSON object. The two databases are loaded identically before either run (the load
is not timed); the bills of both runs are compared (count, amount, kWh) so a fast wrong answer
cannot pass. Spark runs ``local[2]`` (the machine's two cores) unless DIANFEI_SPARK_MASTER says
otherwise; its session start (a JVM) is timed apart from the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop


def _load(url: str, data_dir: Path, accounts: int) -> Any:
    from sqlalchemy import text

    from dianfei import sim
    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import load_settings
    from dianfei.customers.service import load_population
    from dianfei.db.engine import open_database
    from dianfei.metering.service import store_reads

    db = open_database(load_settings({"DIANFEI_DATABASE_URL": url,
                                      "DIANFEI_DATA_DIR": str(data_dir)}))
    u = sim.build_utility(accounts, seed=7)
    with db.engine.begin() as conn:
        load_population(conn, PiiCipher(b"b" * 32), regions=u.regions, stations=u.stations,
                        collectors=u.collectors, customers=u.customers, meters=u.meters)
        store_reads(conn, sim.opening_reads(u))
        store_reads(conn, sim.monthly_reads(u, u.start))
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE"))
    return db, u.start


def _totals(db: Any, period: str) -> dict[str, int]:
    from sqlalchemy import text

    with db.engine.connect() as conn:
        n, amount, kwh = conn.execute(text(
            "SELECT count(*), sum(amount), sum(kwh) FROM bills WHERE period = :p"),
            {"p": period}).one()
        lines = conn.execute(text("SELECT count(*) FROM bill_lines")).scalar_one()
    return {"bills": int(n), "amount_fen": int(amount or 0), "kwh": int(kwh or 0),
            "lines": int(lines)}


def run(accounts: int, backend: str, partitions: int | None, order: str) -> dict[str, Any]:
    from dianfei.billing.service import run_bill_run
    from dianfei.core.clock import BUSINESS_TZ, FixedClock

    if partitions:
        os.environ["DIANFEI_SPARK_PARTITIONS"] = str(partitions)
    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-spark-"))
    (url_l, pg_l), (url_s, pg_s) = _database(backend, tmp), _database(backend, tmp)
    out: dict[str, Any] = {"accounts": accounts, "backend": backend, "order": order,
                           "master": os.environ.get("DIANFEI_SPARK_MASTER", "local[2]")}
    try:
        t = time.perf_counter()
        local_db, period = _load(url_l, tmp / "var-local", accounts)
        spark_db, _ = _load(url_s, tmp / "var-spark", accounts)
        out["setup_s"] = round(time.perf_counter() - t, 1)
        d = period.end_date
        clock = FixedClock(datetime.combine(d.replace(day=3), dtime(9), tzinfo=BUSINESS_TZ))

        from dianfei.scale.billing import spark_backend

        t = time.perf_counter()
        engine = spark_backend(spark_db.settings)
        out["spark_session_start_s"] = round(time.perf_counter() - t, 2)

        def local() -> None:
            t = time.perf_counter()
            res = run_bill_run(local_db, period, clock)
            out["local_s"] = round(time.perf_counter() - t, 2)
            out["local_breakdown_s"] = {k: round(v, 2) for k, v in res.timings.items()}

        def spark() -> None:
            t = time.perf_counter()
            res = run_bill_run(spark_db, period, clock, backend=engine)
            out["spark_s"] = round(time.perf_counter() - t, 2)
            out["spark_breakdown_s"] = {k: round(v, 2) for k, v in res.timings.items()}

        for step in ((local, spark) if order == "local-first" else (spark, local)):
            step()
        out["spark_to_local"] = round(out["spark_s"] / out["local_s"], 2)
        lt, st = _totals(local_db, str(period)), _totals(spark_db, str(period))
        if lt != st:
            raise SystemExit(f"the backends disagree: local {lt}, spark {st}")
        out["bills"] = lt
        b = out["spark_breakdown_s"]
        # per core: what one Spark task prices and writes per second of its own time
        out["per_core_accounts_per_s"] = {
            "price": round(accounts / b["spark_price_core_s"]),
            "write": round(accounts / b["spark_write_core_s"]),
            "price_and_write": round(accounts / (b["spark_price_core_s"]
                                                 + b["spark_write_core_s"])),
        }
        local_db.engine.dispose()
        spark_db.engine.dispose()
    finally:
        _drop(pg_l)
        _drop(pg_s)
        shutil.rmtree(tmp, ignore_errors=True)  # two counties of SQLite: gigabytes at a million
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["load_average"] = Path("/proc/loadavg").read_text().split()[:3]
    return out


def memory(accounts: int, engine: str) -> dict[str, Any]:
    """One backend's bill run in a process of its own (SQLite), after the county was loaded by
    another: the peak memory is the run's, not the simulator's."""
    import subprocess
    import sys

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-bench-mem-"))
    url = f"sqlite:///{tmp / 'county.db'}"
    try:
        subprocess.run([sys.executable, "-m", "bench.spark_billrun", "--load-into", url,
                        "--accounts", str(accounts)], check=True)
        out = subprocess.run([sys.executable, "-m", "bench.spark_billrun", "--bill", url,
                              "--engine", engine], check=True, capture_output=True, text=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _bill_alone(url: str, engine: str) -> dict[str, Any]:
    import subprocess

    from dianfei.billing.service import run_bill_run
    from dianfei.core.clock import BUSINESS_TZ, FixedClock, Period
    from dianfei.core.settings import load_settings
    from dianfei.db.engine import open_database

    db = open_database(load_settings({"DIANFEI_DATABASE_URL": url,
                                      "DIANFEI_DATA_DIR": str(Path(url[10:]).parent / "var")}))
    period = Period(2025, 1)  # the simulator's first month
    backend = None
    if engine == "spark":
        from dianfei.scale.billing import spark_backend

        backend = spark_backend(db.settings)
    clock = FixedClock(datetime.combine(period.end_date.replace(day=3), dtime(9),
                                        tzinfo=BUSINESS_TZ))
    t = time.perf_counter()
    res = run_bill_run(db, period, clock, backend=backend)
    # this process's own JVM (spark-submit execs java as our child), not other jobs' JVMs
    jvm = subprocess.run(["ps", "--ppid", str(os.getpid()), "-o", "rss=,comm="],
                         capture_output=True, text=True)
    jvm_kb = sum(int(line.split()[0]) for line in jvm.stdout.splitlines()
                 if line.split()[1:] == ["java"])
    return {"engine": engine, "bill_run_s": round(time.perf_counter() - t, 2),
            "billed": res.billed, "python_peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "jvm_rss_mb_at_end": jvm_kb // 1024,
            "load_average": Path("/proc/loadavg").read_text().split()[:3]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--partitions", type=int, default=None)
    ap.add_argument("--order", choices=("local-first", "spark-first"), default="local-first")
    ap.add_argument("--memory", choices=("local", "spark"), default=None,
                    help="only this backend's run, in a process of its own, with its peak memory")
    ap.add_argument("--load-into", help=argparse.SUPPRESS)
    ap.add_argument("--bill", help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.load_into:
        _load(a.load_into, Path(a.load_into[10:]).parent / "var", a.accounts)
    elif a.bill:
        print(json.dumps(_bill_alone(a.bill, a.engine)))
    elif a.memory:
        print(json.dumps(memory(a.accounts, a.memory)))
    else:
        print(json.dumps(run(a.accounts, a.backend, a.partitions, a.order)))


if __name__ == "__main__":
    main()
