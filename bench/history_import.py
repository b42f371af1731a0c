"""History import benchmark: N customers × M months of legacy bills and payments, as files.

Writes customers.csv, bills.csv and payments.csv (one bill a month per customer; one payment per
bill, most on time, some late, some partial, some overpaid, a third naming their bill), imports
them with ``dianfei import``'s own functions into a fresh database and times each file, then a
re-import of both (every row a duplicate) and ``ledger check``:

    python -m bench.history_import --customers 30000 --months 24 --backend sqlite

prints one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.billrun import _database, _drop


def write_files(tmp: Path, customers: int, months: int, seed: int = 11) -> dict[str, Path]:
    """The three canonical files, generated as columns."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    ids = pl.Series("customer_id", [f"L{i:08d}" for i in range(customers)])
    pl.DataFrame({
        "customer_id": ids, "name": pl.Series(["户主"] * customers),
        "customer_class": pl.Series(["residential"] * customers),
        "region": pl.Series([f"R{i % 20:02d}" for i in range(customers)]),
        "address": pl.Series([""] * customers), "phone": pl.Series([""] * customers),
        "tariff_id": pl.Series(["cn-zj-residential"] * customers),
        "low_income": pl.Series([0] * customers), "protected": pl.Series([0] * customers),
        "payment_mode": pl.Series(["postpaid"] * customers),
        "opened_on": pl.Series(["2020-01-01"] * customers),
    }).write_csv(tmp / "customers.csv")
    n = customers * months
    month = np.tile(np.arange(months), customers)
    cust = np.repeat(np.arange(customers), months)
    first = date(2024, 1, 1)
    periods = [f"{first.year + (m // 12)}-{m % 12 + 1:02d}" for m in range(months)]
    issued = [date(first.year + (m + 1) // 12, (m + 1) % 12 + 1, 3) for m in range(months)]
    fen = rng.integers(0, 60_000, n)
    kwh = rng.integers(0, 120_000, n)
    bills = pl.DataFrame({
        "bill_id": pl.Series([f"LB{c:08d}-{m:02d}" for c, m in zip(cust, month, strict=True)]),
        "customer_id": ids.gather(cust),
        "period": pl.Series(periods).gather(month),
        "issued_on": pl.Series(issued).gather(month),
        "amount": pl.Series(fen), "kwh": pl.Series(kwh),
    }).with_columns(
        (pl.col("issued_on") + pl.duration(days=15)).alias("due_on"),
        (pl.col("amount") // 100).cast(pl.String) + "." +
        (pl.col("amount") % 100).cast(pl.String).str.zfill(2),
        (pl.col("kwh") // 100).cast(pl.String) + "." +
        (pl.col("kwh") % 100).cast(pl.String).str.zfill(2))
    bills.select("bill_id", "customer_id", "period", "issued_on", "due_on", "amount",
                 "kwh").write_csv(tmp / "bills.csv")
    # days after issue: mostly within the due period, a tail late; amount: mostly the bill
    delay = np.where(rng.random(n) < 0.85, rng.integers(0, 15, n), rng.integers(15, 90, n))
    factor = rng.choice([100, 100, 100, 100, 60, 130], n)
    paid = np.maximum(fen * factor // 100, 1)
    hour = rng.integers(8, 20, n)
    base = np.array([int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
                     for d in issued], dtype=np.int64)
    at = base[month] + delay * 86400 + hour * 3600 - 8 * 3600
    named = rng.random(n) < 0.33
    pays = pl.DataFrame({
        "payment_id": pl.Series([f"LP{c:08d}-{m:02d}" for c, m in zip(cust, month, strict=True)]),
        "customer_id": ids.gather(cust),
        "paid_at": pl.Series(at * 1_000_000).cast(pl.Datetime("us", "UTC")),
        "amount": pl.Series(paid),
        "channel": pl.Series(rng.choice(["counter", "bank", "alipay", "wechatpay"], n)),
        "bill_id": pl.Series(np.where(named, bills["bill_id"].to_numpy(), "")),
    }).with_columns(
        pl.col("paid_at").dt.convert_time_zone("Asia/Shanghai")
        .dt.strftime("%Y-%m-%dT%H:%M:%S%:z"),
        (pl.col("amount") // 100).cast(pl.String) + "." +
        (pl.col("amount") % 100).cast(pl.String).str.zfill(2))
    # file order is not time order: shuffled
    pays.sample(fraction=1.0, shuffle=True, seed=seed).write_csv(tmp / "payments.csv")
    return {k: tmp / f"{k}.csv" for k in ("customers", "bills", "payments")}


def run(customers: int, months: int, backend: str) -> dict[str, Any]:
    from dianfei.billing.service import import_bills
    from dianfei.core.clock import FixedClock
    from dianfei.core.settings import load_settings
    from dianfei.db.engine import open_database
    from dianfei.ledger import service as ledger
    from dianfei.metering.imports import import_file
    from dianfei.payments.service import import_payments

    tmp = Path(tempfile.mkdtemp(prefix="dianfei-history-"))
    url, pg_name = _database(backend, tmp)
    clock = FixedClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    out: dict[str, Any] = {"customers": customers, "months": months, "backend": backend}
    try:
        t = time.perf_counter()
        files = write_files(tmp, customers, months)
        out["write_files_s"] = round(time.perf_counter() - t, 1)
        db = open_database(load_settings({"DIANFEI_DATABASE_URL": url,
                                          "DIANFEI_DATA_DIR": str(tmp / "var")}))
        t = time.perf_counter()
        res = import_file(db, "customers", files["customers"], clock=clock)
        out["customers_s"] = round(time.perf_counter() - t, 1)
        for kind, fn in (("bills", import_bills), ("payments", import_payments)):
            t = time.perf_counter()
            res = fn(db, files[kind], clock=clock)
            s = time.perf_counter() - t
            out[kind] = {**res.to_json(), "seconds": round(s, 1),
                         "rows_per_s": round((res.accepted + res.rejected + res.duplicates) / s)}
        for kind, fn in (("bills", import_bills), ("payments", import_payments)):
            t = time.perf_counter()
            res = fn(db, files[kind], clock=clock)
            out[f"{kind}_again"] = {**res.to_json(),
                                    "seconds": round(time.perf_counter() - t, 1)}
        t = time.perf_counter()
        with db.engine.connect() as conn:
            out["ledger_check"] = [v.invariant for v in ledger.check(conn)] or "ok"
        out["ledger_check_s"] = round(time.perf_counter() - t, 1)
        db.engine.dispose()
    finally:
        _drop(pg_name)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=30_000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    a = ap.parse_args()
    print(json.dumps(run(a.customers, a.months, a.backend), indent=2))


if __name__ == "__main__":
    main()
