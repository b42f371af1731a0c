"""Import throughput: interval rows per second from Parquet and from CSV, end to end.

End to end = reading the file in chunks, parsing and validating every row (timestamps with
offsets, exact decimal kWh, known meters, installation dates), de-duplication against the store,
writing the partitioned Parquet store and the catalogue, and the batch record.

    python -m bench.imports --meters 20000 --days 7 [--minutes 15|30]
runs each format in its own process (so peak memory belongs to that run alone) and prints one
JSON line of figures as its last line. ``--format parquet|parquet_float|parquet_text|csv`` runs
one format only:

- ``parquet``: typed, as AMI head-ends export it — ``ts`` timestamp[us, tz=+08:00], ``kwh``
  decimal128(12,3) (the issue's target, ≥ 2,000,000 rows/s);
- ``parquet_float``: ``ts`` timestamp[us, tz=UTC], ``kwh`` float64 (checked to hold ≤ 3 decimals);
- ``parquet_text``: ``ts`` and ``kwh`` as text (parsed like CSV);
- ``csv``: the canonical CSV (target ≥ 500,000 rows/s).

The file is generated in memory before the import (``peak_rss_mb_before_import``); the import
reads it in chunks, so its own memory does not grow with the file (``peak_rss_mb_after_import``
is the peak once it ran). Issue 16's shape is ``--meters 10000 --days 730 --minutes 30 --format
parquet`` (350,400,000 rows, whose generation alone would need ~12 GB here); a shorter
``--days`` measures the same throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def _population(tmp: Path, meters: int) -> tuple[Path, Path]:
    ids = [f"{i:08d}" for i in range(meters)]
    cust = tmp / "customers.csv"
    with cust.open("w", encoding="utf-8") as fh:
        fh.write("customer_id,name,customer_class,region,address,phone,tariff_id,low_income,"
                 "protected,payment_mode,opened_on\n")
        for i in ids:
            fh.write(f"C{i},用户{i},residential,城关镇,,,cn-zj-residential,0,0,postpaid,2020-01-01\n")
    met = tmp / "meters.csv"
    with met.open("w", encoding="utf-8") as fh:
        fh.write("meter_id,customer_id,multiplier,digits,installed_on\n")
        for i in ids:
            fh.write(f"M{i},C{i},1,6,2020-01-01\n")
    return cust, met


#: the files the bench imports: (format name, description)
FORMATS = {
    "parquet": "Parquet as an AMI head-end exports it: ts timestamp[us, tz=+08:00], "
               "kwh decimal128(12,3)",
    "parquet_float": "Parquet with ts timestamp[us, tz=UTC] and kwh float64 (3 decimals)",
    "parquet_text": "Parquet with ts and kwh as text (parsed like CSV)",
    "csv": "CSV, ts ISO 8601 with +08:00, kwh decimal text",
}


#: above this many rows a Parquet file is generated block by block (bounded memory)
IN_MEMORY_ROWS = int(os.environ.get("BENCH_IN_MEMORY_ROWS", 50_000_000))


def _intervals(tmp: Path, meters: int, days: int, fmt: str,
               minutes: int = 15) -> tuple[Path, int]:
    """``minutes``-long intervals × days × meters, sorted by time, in one of ``FORMATS``.

    Up to ``IN_MEMORY_ROWS`` rows the file is built in memory and written in one go, as the
    earlier figures were measured; a bigger Parquet file is written block by block."""
    import numpy as np
    import polars as pl
    import pyarrow.parquet as pq

    start = datetime(2026, 2, 28, 16, tzinfo=UTC)  # 2026-03-01 00:00 in Asia/Shanghai
    slots = 1440 // minutes * days
    step_us = minutes * 60_000_000
    rng = np.random.default_rng(7)
    meter_ids = pl.Series("meter_id", [f"M{i:08d}" for i in range(meters)])
    per = max(1, 2_000_000 // meters)
    path = tmp / f"intervals-{fmt}.{'csv' if fmt == 'csv' else 'parquet'}"

    def blocks(per: int) -> Any:
        for s0 in range(0, slots, per):
            n = min(per, slots - s0)
            base = int(start.timestamp()) * 1_000_000
            ts = pl.Series("ts", [base + (s0 + k) * step_us for k in range(n)],
                           dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
            yield pl.DataFrame({
                "meter_id": pl.concat([meter_ids] * n),
                "ts": ts.gather(np.repeat(np.arange(n), meters)),
                "wh": rng.integers(0, 2500, size=n * meters),
            })

    if fmt in ("parquet", "parquet_float") and slots * meters > IN_MEMORY_ROWS:
        # too big to build in memory (issue 16's 350 M rows would need ~40 GB): written block
        # by block, one row group of ~1,000,000 rows per block — the layout the in-memory
        # file has (row_group_size=1_000_000), so both measure the same reader
        import pyarrow as pa

        rows = 0
        writer = None
        try:
            for block in blocks(max(1, 1_000_000 // meters)):
                table = _typed_table(block, fmt, np, pa)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table, row_group_size=1_000_000)
                rows += block.height
        finally:
            if writer is not None:
                writer.close()
        return path, rows
    df = pl.concat(list(blocks(per)))
    rows = df.height
    if fmt in ("parquet", "parquet_float"):
        import pyarrow as pa

        pq.write_table(_typed_table(df, fmt, np, pa), path, row_group_size=1_000_000)
        return path, rows
    text = df.select("meter_id",
                     pl.col("ts").dt.convert_time_zone("Asia/Shanghai")
                     .dt.strftime("%Y-%m-%dT%H:%M:%S%:z").alias("ts"),
                     ((pl.col("wh") // 1000).cast(pl.String) + "."
                      + (pl.col("wh") % 1000).cast(pl.String).str.pad_start(3, "0")).alias("kwh"))
    if fmt == "parquet_text":
        text.write_parquet(path, row_group_size=1_000_000)
    else:
        text.write_csv(path)
    return path, rows


def _typed_table(df: Any, fmt: str, np: Any, pa: Any) -> Any:
    """The block as an AMI head-end's typed Arrow table (see FORMATS)."""
    rows = df.height
    wh_np = df["wh"].to_numpy().astype(np.int64)
    if fmt == "parquet":
        # decimal128 from its unscaled integers (two little-endian 64-bit words per value)
        words = np.empty((rows, 2), dtype=np.int64)
        words[:, 0] = wh_np
        words[:, 1] = wh_np >> 63
        kwh = pa.Array.from_buffers(pa.decimal128(12, 3), rows,
                                    [None, pa.py_buffer(words.tobytes())])
        ts_type = pa.timestamp("us", tz="+08:00")
    else:
        kwh = pa.array(wh_np / 1000.0, pa.float64())
        ts_type = pa.timestamp("us", tz="UTC")
    return pa.table({
        "meter_id": df["meter_id"].to_arrow().cast(pa.string()),
        # a zoned Arrow timestamp holds UTC microseconds: the zone is metadata
        "ts": pa.Array.from_buffers(ts_type, rows, [None, pa.py_buffer(
            df["ts"].dt.epoch("us").to_numpy().astype(np.int64).tobytes())]),
        "kwh": kwh,
    })


def run_one(meters: int, days: int, fmt: str, chunk_rows: int,
            minutes: int = 15) -> dict[str, Any]:
    from dianfei.core.clock import FixedClock
    from dianfei.core.settings import load_settings
    from dianfei.db.engine import open_database
    from dianfei.metering import intervals
    from dianfei.metering.imports import import_file

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        tmp = Path(d)
        env = {"DIANFEI_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
               "DIANFEI_DATA_DIR": str(tmp / "var"), "DIANFEI_SECRET_KEY":
               "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="}
        os.environ.update(env)
        db = open_database(load_settings(env))
        clock = FixedClock(datetime(2026, 4, 1, tzinfo=UTC))
        cust, met = _population(tmp, meters)
        import_file(db, "customers", cust, clock=clock)
        import_file(db, "meters", met, clock=clock)
        path, rows = _intervals(tmp, meters, days, fmt, minutes)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        size = path.stat().st_size
        t0 = time.perf_counter()
        res = import_file(db, "intervals", path, clock=clock, chunk_rows=chunk_rows,
                          chunk_bytes=chunk_rows * 40, interval_minutes=minutes)
        elapsed = time.perf_counter() - t0
        rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        assert res.accepted == rows, res
        t1 = time.perf_counter()
        again = import_file(db, "intervals", path, clock=clock, chunk_rows=chunk_rows,
                            chunk_bytes=chunk_rows * 40, interval_minutes=minutes)
        elapsed_again = time.perf_counter() - t1
        assert again.duplicates == rows, again
        import polars as pl

        # counted, not collected: 350 M stored rows would take ~3 GB to hold just to count them
        stored = intervals.scan(db).select(pl.len()).collect().item()
        assert stored == rows
        db.engine.dispose()
    return {
        "format": fmt, "file": FORMATS[fmt], "rows": rows, "meters": meters, "days": days,
        "minutes": minutes,
        "file_mb": round(size / 1e6, 1), "seconds": round(elapsed, 2),
        "rows_per_s": int(rows / elapsed),
        "reimport_seconds": round(elapsed_again, 2),
        "reimport_rows_per_s": int(rows / elapsed_again),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        # the peak once the file was generated, and once it was imported (the import's own
        # peak when the second is higher)
        "peak_rss_mb_before_import": rss_before, "peak_rss_mb_after_import": rss_import,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--chunk-rows", type=int, default=1_000_000)
    ap.add_argument("--minutes", type=int, default=15, help="interval length (30: half-hourly)")
    ap.add_argument("--format", choices=(*FORMATS, "all", "both"), default="all",
                    help="one format, or all of them (each in its own process); both = all")
    args = ap.parse_args()
    if args.format not in ("all", "both"):
        print(json.dumps(run_one(args.meters, args.days, args.format, args.chunk_rows,
                                 args.minutes)))
        return
    out: dict[str, Any] = {"benchmark": "imports"}
    for fmt in FORMATS:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.imports", "--meters", str(args.meters), "--days",
             str(args.days), "--chunk-rows", str(args.chunk_rows), "--minutes",
             str(args.minutes), "--format", fmt],
            capture_output=True, text=True, check=True)
        out[fmt] = json.loads(proc.stdout.strip().splitlines()[-1])
    from bench.machine import describe

    out["machine"] = describe()
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
