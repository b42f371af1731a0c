"""KPI benchmark: a period's KPIs for 1,000,000 accounts with 24 months of bills and payments.

    python -m bench.kpi --accounts 1000000 --months 24 [--trend 0|12] [--db none|sqlite]

The utility is synthesised as columns (``dianfei.sim`` builds customers, not two years of
clearings, in the time a benchmark has): per month one bill per account (1% zero bills, 0.1%
cancelled, 2% on estimated reads), 95% of the non-zero bills paid 0–40 days after issue through
one of six channels, a tenth of them in two parts. The period measured is the last one, as of
30 days after its bills were issued.

- ``--db none``: the frames the services return (bills and clearings of the DSO window, or of
  the trend's periods; customers; tickets; notices; …) are handed to
  :func:`dianfei.reporting.kpi.compute`: the computation alone, timed.
- ``--db sqlite|postgresql``: the months are written raw into a fresh database (customers,
  bills, payments, payment_allocations) and :func:`dianfei.reporting.kpi.period_kpis` is timed:
  the service reads plus the computation.

Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from dianfei.core.clock import Period

CHANNELS = ["counter", "alipay", "wechatpay", "bank", "online", "post"]
START = Period(2024, 1)


def periods(months: int) -> list[Period]:
    out, p = [], START
    for _ in range(months):
        out.append(p)
        p = p.next()
    return out


def customers(n: int) -> pl.DataFrame:
    i = pl.int_range(0, n, eager=True, dtype=pl.Int64)
    return pl.DataFrame({"i": i}).select(
        ("C" + pl.col("i").cast(pl.String).str.pad_start(8, "0")).alias("customer_id"),
        pl.when(pl.col("i") % 20 == 0).then(pl.lit("commercial")).otherwise(pl.lit("residential"))
        .alias("customer_class"),
        ("R" + (pl.col("i") % 20).cast(pl.String)).alias("region_id"),
        ("S" + (pl.col("i") % 100).cast(pl.String)).alias("station_id"),
        ("K" + (pl.col("i") % 500).cast(pl.String)).alias("collector_id"),
        pl.lit(date(2020, 1, 1)).alias("opened_on"),
        pl.lit(None, pl.Date).alias("closed_on"))


def bills_of(cust: pl.DataFrame, p: Period, seed: int) -> pl.DataFrame:
    n = cust.height
    h = (pl.int_range(0, n, dtype=pl.Int64) * 2654435761 + seed * 97) % 1_000_003
    issued = p.end_date + timedelta(days=2)
    read_to = datetime.combine(p.end_date, datetime.min.time(), tzinfo=UTC) - timedelta(hours=8)
    return cust.select("customer_id").with_columns(
        (pl.col("customer_id") + f"-{p.year:04d}{p.month:02d}-1").alias("bill_id"),
        pl.col("customer_id").alias("account_id"),
        pl.lit(str(p)).alias("period"),
        pl.lit(issued).alias("issued_on"),
        pl.lit(issued + timedelta(days=15)).alias("due_on"),
        pl.when(h % 100 == 0).then(0).otherwise(500 + h % 50_000).alias("amount"),
        (h % 60_000).alias("kwh"),
        pl.when(h % 1000 == 1).then(pl.lit("cancelled")).otherwise(pl.lit("issued")).alias("status"),
        (h % 50 == 2).alias("estimated"),
        pl.lit(read_to - timedelta(days=31)).dt.cast_time_unit("us").alias("read_from_at"),
        pl.lit(read_to).dt.cast_time_unit("us").alias("read_to_at"),
    ).select("bill_id", "account_id", "customer_id", "period", "issued_on", "due_on", "amount",
             "kwh", "status", "estimated", "read_from_at", "read_to_at")


def clearings_of(bills: pl.DataFrame, seed: int) -> pl.DataFrame:
    n = bills.height
    h = (pl.int_range(0, n, dtype=pl.Int64) * 40503 + seed * 131) % 1_000_033
    paid = bills.with_columns(h.alias("h")).filter((pl.col("amount") > 0) & (pl.col("h") % 20 != 3))
    at = (pl.col("issued_on").cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
          + pl.duration(hours=1 + pl.col("h") % (40 * 24)))
    one = paid.select(
        "bill_id", ("P" + pl.col("bill_id")).alias("payment_id"),
        at.alias("allocated_at"), pl.col("amount"), pl.col("h"))
    split = one.filter(pl.col("h") % 10 == 5)
    whole = one.filter(pl.col("h") % 10 != 5)
    first = split.with_columns((pl.col("amount") // 2).alias("amount"))
    second = split.with_columns((pl.col("amount") - pl.col("amount") // 2).alias("amount"),
                                (pl.col("payment_id") + "b").alias("payment_id"),
                                (pl.col("allocated_at") + pl.duration(days=3)).alias("allocated_at"))
    out = pl.concat([whole, first, second])
    return out.with_columns(
        pl.Series("channel", CHANNELS, dtype=pl.String).gather(pl.Series(out["h"] % 6)).alias(
            "channel")
    ).select("bill_id", "payment_id", "channel", "allocated_at", "amount").sort(
        "bill_id", "allocated_at")


def build(accounts: int, months: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    cust = customers(accounts)
    bills, clearings = [], []
    for k, p in enumerate(periods(months)):
        b = bills_of(cust, p, k)
        bills.append(b)
        clearings.append(clearings_of(b, k))
    return cust, pl.concat(bills), pl.concat(clearings)


def empty_inputs(period: Period, bills: pl.DataFrame, clearings: pl.DataFrame,
                 cust: pl.DataFrame) -> Any:
    from dianfei.reporting.kpi import Inputs

    return Inputs(
        period=period, bills=bills, clearings=clearings, customers=cust,
        tickets=pl.DataFrame(schema={"ticket_id": pl.Int64, "customer_id": pl.String,
                                     "category": pl.String, "satisfaction": pl.Int64}),
        notices=pl.DataFrame(schema={"customer_id": pl.String, "notice": pl.String,
                                     "channel": pl.String, "status": pl.String}),
        unbilled=pl.DataFrame(schema={"account_id": pl.String, "customer_id": pl.String}),
        suspensions=pl.DataFrame(schema={"account_id": pl.String, "mode": pl.String,
                                         "suspended_at": pl.Datetime("us", "UTC")}),
        write_offs=pl.DataFrame(schema={"reference": pl.String, "business_date": pl.Date,
                                        "amount": pl.Int64}))


def write_sqlite(db: Any, cust: pl.DataFrame, bills: pl.DataFrame, clearings: pl.DataFrame) -> None:
    """Raw rows into the real schema (the bench's own writer: not a money path)."""
    from dianfei.db.bulk import write_frame

    with db.engine.begin() as conn:
        write_frame(conn, "regions", pl.DataFrame({"region_id": [f"R{i}" for i in range(20)],
                                                   "name": [f"R{i}" for i in range(20)]}))
        write_frame(conn, "supply_stations", pl.DataFrame(
            {"station_id": [f"S{i}" for i in range(100)],
             "region_id": [f"R{i % 20}" for i in range(100)], "name": ["s"] * 100}))
        write_frame(conn, "collectors", pl.DataFrame(
            {"collector_id": [f"K{i}" for i in range(500)], "name": ["k"] * 500,
             "station_id": [f"S{i % 100}" for i in range(500)]}))
        write_frame(conn, "customers", cust.with_columns(
            pl.lit("n").alias("name"), pl.lit(False).alias("low_income"),
            pl.lit(False).alias("protected"), pl.lit("postpaid").alias("payment_mode")))
    pays = clearings.select(
        "payment_id", "channel", pl.col("payment_id").alias("transaction_id"),
        pl.col("bill_id").str.slice(0, 9).alias("account_id"),
        pl.col("bill_id").str.slice(0, 9).alias("customer_id"), "amount",
        pl.col("allocated_at").alias("paid_at"),
        pl.col("allocated_at").dt.convert_time_zone("Asia/Shanghai").dt.date()
        .alias("business_date"),
        pl.col("allocated_at").alias("posted_at"), pl.lit("import").alias("source"),
        pl.lit("posted").alias("status"))
    allocs = clearings.select(
        "payment_id", pl.col("bill_id").str.slice(0, 9).alias("account_id"),
        pl.lit("bill").alias("allocated_to"), "bill_id", pl.col("bill_id").alias("item_reference"),
        "amount", "allocated_at")
    step = 1_000_000
    for table, frame in (("bills", bills.with_columns(pl.lit(1).alias("version"),
                                                       pl.lit("t").alias("tariff_id"),
                                                       pl.lit("v1").alias("tariff_version"),
                                                       pl.lit(1).alias("multiplier"))),
                         ("payments", pays), ("payment_allocations", allocs)):
        for i in range(0, frame.height, step):
            with db.engine.begin() as conn:
                write_frame(conn, table, frame.slice(i, step))
    # each bill's open item with its kept clearing state (migration 0037), as the bill run and
    # the payment postings leave them: filled from the clearings by the ledger's own SQL (the
    # open amounts are the bills' amounts: the KPIs do not read them)
    from dianfei.ledger.service import refresh_bill_states

    items = bills.select(
        pl.col("bill_id").alias("reference"), "account_id", "customer_id",
        pl.lit("bill").alias("item_kind"), "bill_id", "due_on", "amount",
        pl.col("amount").alias("open_amount"),
        pl.lit(datetime(2024, 1, 1)).alias("updated_at"), "period")
    for i in range(0, items.height, step):
        with db.engine.begin() as conn:
            write_frame(conn, "open_items", items.slice(i, step))
    with db.engine.begin() as conn:
        refresh_bill_states(conn)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")  # planner statistics, as after a bill run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--trend", type=int, default=0)
    ap.add_argument("--db", choices=("none", "sqlite", "postgresql"), default="none")
    ap.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--by", default=None, help="a --by dimension for the timed KPI call")
    ap.add_argument("--runs", type=int, default=2, help="timed calls of period_kpis")
    ap.add_argument("--keep", default=None, help="SQLite: the database file to build (or reuse "
                    "when it exists); PostgreSQL: the database name to build (or reuse); kept")
    ap.add_argument("--json-out", default=None, help="write the KPI JSON here (to compare runs)")
    a = ap.parse_args()
    from dianfei.reporting.kpi import DSO_PERIODS, compute, first_of_window, period_kpis

    t0 = time.perf_counter()
    cust, bills, clearings = build(a.accounts, a.months)
    built = time.perf_counter() - t0
    last = periods(a.months)[-1]
    as_of = last.end_date + timedelta(days=32)
    result: dict[str, Any] = {"accounts": a.accounts, "months": a.months, "trend": a.trend,
                              "db": a.db, "bills_total": bills.height,
                              "clearings_total": clearings.height, "build_s": round(built, 1)}
    if a.db == "none":
        first = str(first_of_window(last, max(a.trend, DSO_PERIODS)))
        window = bills.filter(pl.col("period") >= first)
        ids = window.select("bill_id")
        wclear = clearings.join(ids, on="bill_id", how="semi")
        inp = empty_inputs(last, window, wclear, cust)
        del bills, clearings
        times, cpu = [], []
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            out = compute(inp, as_of, None, a.trend)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        result.update({"bills_read": window.height, "clearings_read": wclear.height,
                       "best_s": round(min(times), 2), "runs_s": [round(x, 2) for x in times],
                       "cpu_s": [round(x, 2) for x in cpu]})
    else:
        from dianfei.core.settings import load_settings
        from dianfei.db.engine import open_database

        tmp = Path(tempfile.mkdtemp(prefix="kpibench-"))
        path = Path(a.keep) if a.keep and a.db == "sqlite" else tmp / "k.db"
        url, fresh = f"sqlite:///{path}", not path.exists()
        if a.db == "postgresql":
            import psycopg

            name = a.keep or f"dianfei_kpibench_{os.getpid()}"
            admin = a.pg_url.replace("postgresql+psycopg", "postgresql")
            with psycopg.connect(admin, autocommit=True) as conn:
                fresh = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                     (name,)).fetchone() is None
                if fresh:
                    conn.execute(f'CREATE DATABASE "{name}"')
            url = a.pg_url.rsplit("/", 1)[0] + "/" + name
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url,
                                          "DIANFEI_DATA_DIR": str(tmp / "var")}))
        t = time.perf_counter()
        if fresh:
            write_sqlite(db, cust, bills, clearings)
        result["write_s"] = round(time.perf_counter() - t, 1)
        del bills, clearings
        times, cpu = [], []
        result["load_before"] = [round(x, 2) for x in os.getloadavg()]
        for _ in range(a.runs):
            t, c = time.perf_counter(), time.process_time()
            out = period_kpis(db, last, as_of, a.by, a.trend)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        result.update({"best_s": round(min(times), 2), "runs_s": [round(x, 2) for x in times],
                       "cpu_s": [round(x, 2) for x in cpu]})
        db.engine.dispose()
        if a.db == "postgresql" and not a.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if a.json_out:
        Path(a.json_out).write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n")
    result.update({"collection_rate": out["collection_rate"], "billed": out["billed"],
                   "load_average": [round(x, 1) for x in os.getloadavg()],
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
