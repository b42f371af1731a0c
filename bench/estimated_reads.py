"""Billing on estimated reads: N meters without a closing read, each with a month of 15-minute
intervals, billed on estimates (metering.estimated_reads) — the bill run's extra cost.

    python -m bench.estimated_reads --meters 1000 [--backend sqlite]
prints one JSON object: the interval import, the bill run, and the estimate step alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=1000)
    args = parser.parse_args()
    import polars as pl

    from dianfei.billing.service import run_bill_run
    from dianfei.core.clock import FixedClock, Period
    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import load_settings
    from dianfei.customers.service import load_population
    from dianfei.db.engine import open_database
    from dianfei.metering.ingest import ingest_intervals
    from dianfei.metering.service import estimate_register_reads, store_reads

    n = args.meters
    opening = datetime(2025, 12, 31, 16, 0, tzinfo=UTC)  # 2026-01-01 00:00 Beijing time
    until = opening + timedelta(days=31)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DIANFEI_DATABASE_URL": f"sqlite:///{Path(tmp) / 'b.db'}",
               "DIANFEI_DATA_DIR": str(Path(tmp) / "var"), "DIANFEI_SECRET_KEY": "a" * 43 + "="}
        db = open_database(load_settings(env))
        ids = [f"C{i:06d}" for i in range(n)]
        customers = pl.DataFrame([{
            "customer_id": c, "name": "用户", "customer_class": "residential", "region_id": "R1",
            "station_id": "S1", "collector_id": "K1", "address": "路1号", "phone": "13800138000",
            "id_number": None, "tariff_id": "cn-zj-residential", "low_income": False,
            "protected": False, "payment_mode": "postpaid", "opened_on": date(2020, 1, 1),
            "capacity_kva": None, "demand_basis": None} for c in ids],
            schema_overrides={"id_number": pl.String, "capacity_kva": pl.Int64, "demand_basis": pl.String})
        meters = pl.DataFrame({"meter_id": [f"M{c}" for c in ids], "customer_id": ids,
                               "multiplier": [1] * n, "digits": [6] * n,
                               "installed_on": [date(2020, 1, 1)] * n, "registers": ["total"] * n})
        with db.engine.begin() as conn:
            load_population(
                conn, PiiCipher(b"k" * 32),
                regions=pl.DataFrame({"region_id": ["R1"], "name": ["镇"]}),
                stations=pl.DataFrame({"station_id": ["S1"], "region_id": ["R1"], "name": ["所"]}),
                collectors=pl.DataFrame({"collector_id": ["K1"], "name": ["张"], "station_id": ["S1"]}),
                customers=customers, meters=meters)
            store_reads(conn, pl.DataFrame({
                "meter_id": [f"M{c}" for c in ids], "read_at": [opening] * n, "register": ["total"] * n,
                "value": [1000_00] * n, "source": ["ami"] * n},
                schema_overrides={"read_at": pl.Datetime("us", "UTC")}))
        slots = 31 * 96
        month = pl.datetime_range(opening, until, "15m", closed="left", eager=True,
                                  time_zone="UTC").dt.cast_time_unit("us")
        frame = pl.DataFrame({"meter_id": pl.Series([f"M{c}" for c in ids]).repeat_by(slots).explode(),
                              "ts": pl.concat([month] * n), "kwh": ["0.050"] * (slots * n)})
        clock = FixedClock(until + timedelta(days=2))
        t0 = time.perf_counter()
        ingest_intervals(db, frame, interval_minutes=15, origin="bench", clock=clock)
        t1 = time.perf_counter()
        wanted = pl.DataFrame({"meter_id": [f"M{c}" for c in ids], "register": ["total"] * n,
                               "from_value": [1000_00] * n, "from_at": [opening] * n,
                               "from_source": ["ami"] * n, "digits": [6] * n},
                              schema_overrides={"from_at": pl.Datetime("us", "UTC")})
        est, refused = estimate_register_reads(db, wanted, until)
        t2 = time.perf_counter()
        # the same population without estimates (every meter an exception), then with them
        plain = run_bill_run(db, Period(2026, 1), clock, estimate=False)
        t3 = time.perf_counter()
        res = run_bill_run(db, Period(2026, 1), clock)
        t4 = time.perf_counter()
        print(json.dumps({"meters": n, "intervals": slots * n, "import_s": round(t1 - t0, 2),
                          "estimate_s": round(t2 - t1, 2), "estimated": est.height,
                          "refused": refused.height,
                          "bill_run_without_estimates_s": round(t3 - t2, 2),
                          "exceptions_without": plain.exceptions,
                          "bill_run_s": round(t4 - t3, 2), "estimate_in_run_s":
                          round(res.timings.get("estimate_s", 0.0), 2),
                          "billed": res.billed, "estimated_meters": res.estimated_meters}))


if __name__ == "__main__":
    main()
