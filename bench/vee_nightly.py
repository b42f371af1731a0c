"""The nightly VEE run as the history grows: each night's cost against the whole store's.

    python -m bench.vee_nightly [--meters 10000] [--days 60] [--minutes 15] [--full]

A utility's night, ``--days`` times over: the day's interval reads of every meter arrive as one
import batch (``metering.ingest``, the path of a gateway or a file), then the nightly job runs
(``vee.service.run_pending``: the days that arrived, with each meter's readings just before as
context). The data are synthetic (a daily shape per meter, 0.2% of the readings missing in
gaps of one to eight intervals, a meter in 500 vacant — zeros — for days at a time) and seeded.

Prints one JSON line: every night's seconds (wall and CPU), the first and last week's medians,
the peak memory of the nights, and with ``--full`` one run over the whole store at the end (what
the nightly job did before: its cost grows with the history) with its peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from bench.imports import _population

START = datetime(2026, 1, 1, 16, tzinfo=UTC)  # 2 January 2026, 00:00 in Beijing


def day_frame(meters: int, day: int, minutes: int, seed: int) -> pl.DataFrame:
    """One business day of every meter: ``meter_id, ts, kwh`` (text, as an import reads it)."""
    per_day = 1440 // minutes
    n = meters * per_day
    i = pl.int_range(0, n, eager=True, dtype=pl.Int64)
    frame = pl.DataFrame({"i": i}).with_columns(
        (pl.col("i") // per_day).alias("m"), (pl.col("i") % per_day).alias("k"))
    noise = ((pl.col("i") * 2654435761 + day * 40503 + seed) % 1_000_003)
    base = 40 + (pl.col("m") % 17) * 9
    evening = pl.when((pl.col("k") * minutes >= 18 * 60) & (pl.col("k") * minutes < 22 * 60))
    wh = (base + evening.then(base * 3).otherwise(0) + noise % 23)
    # a meter in 500 is vacant for six days out of ten (zeros across midnights)
    vacant = (pl.col("m") % 500 == 7) & ((day + pl.col("m")) % 10 < 6)
    wh = pl.when(vacant).then(0).otherwise(wh)
    # 0.2% of readings missing, in gaps of up to eight intervals
    missing = ((pl.col("i") // 8 * 7919 + day * 104729 + seed) % 500) == 0
    frame = frame.filter(~missing).select(
        pl.format("M{}", pl.col("m").cast(pl.String).str.pad_start(8, "0")).alias("meter_id"),
        (pl.lit(START + timedelta(days=day))
         + pl.duration(minutes=pl.col("k") * minutes)).dt.cast_time_unit("us").alias("ts"),
        wh.alias("wh"))
    return frame.select("meter_id", "ts", pl.format(
        "{}.{}", (pl.col("wh") // 1000).cast(pl.String),
        (pl.col("wh") % 1000).cast(pl.String).str.pad_start(3, "0")).alias("kwh"))


def _cli(env: dict[str, str], *args: str) -> None:
    exe = str(Path(sys.executable).with_name("dianfei"))
    out = subprocess.run([exe, *args], env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"dianfei {' '.join(args)} exited {out.returncode}: {out.stderr}")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--meters", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--minutes", type=int, default=15)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--full", action="store_true", help="a run over the whole store at the end")
    args = ap.parse_args()

    from dianfei.core.clock import FixedClock
    from dianfei.core.settings import load_settings
    from dianfei.db.engine import open_database
    from dianfei.metering.ingest import ingest_intervals
    from dianfei.metering.vee.service import run_pending, run_vee

    with tempfile.TemporaryDirectory(prefix="vee-nightly-") as tmpdir:
        tmp = Path(tmpdir)
        env = dict(os.environ, DIANFEI_DATABASE_URL=f"sqlite:///{tmp}/d.db",
                   DIANFEI_DATA_DIR=str(tmp / "data"))
        cust, met = _population(tmp, args.meters)
        _cli(env, "import", "customers", str(cust))
        _cli(env, "import", "meters", str(met))
        db = open_database(load_settings({k: env[k] for k in
                                          ("DIANFEI_DATABASE_URL", "DIANFEI_DATA_DIR")}))
        nights: list[dict[str, Any]] = []
        rows = 0
        for day in range(args.days):
            clock = FixedClock(START + timedelta(days=day + 1, hours=2))
            frame = day_frame(args.meters, day, args.minutes, args.seed)
            rows += frame.height
            ingest_intervals(db, frame, interval_minutes=args.minutes, origin="bench",
                             clock=clock)
            del frame
            t, c = time.perf_counter(), _cpu()
            done = run_pending(db, clock)
            nights.append({"night": day + 1, "s": round(time.perf_counter() - t, 3),
                           "cpu_s": round(_cpu() - c, 3),
                           "findings_added": done["findings_added"],
                           "estimates_added": done["estimates_added"]})
        nights_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        week = min(7, args.days)
        result: dict[str, Any] = {
            "meters": args.meters, "days": args.days, "minutes": args.minutes, "rows": rows,
            "rows_per_night": rows // args.days,
            "first_week_median_s": statistics.median(n["s"] for n in nights[:week]),
            "last_week_median_s": statistics.median(n["s"] for n in nights[-week:]),
            "first_week_median_cpu_s": statistics.median(n["cpu_s"] for n in nights[:week]),
            "last_week_median_cpu_s": statistics.median(n["cpu_s"] for n in nights[-week:]),
            "peak_rss_mb_nights": nights_rss, "nights": nights,
        }
        if args.full:
            clock = FixedClock(START + timedelta(days=args.days + 1, hours=3))
            t, c = time.perf_counter(), _cpu()
            whole = run_vee(db, clock)
            result.update({
                "whole_store_s": round(time.perf_counter() - t, 3),
                "whole_store_cpu_s": round(_cpu() - c, 3),
                # the nightly runs must have left a run over everything nothing to add
                "whole_store_estimates_added": whole.estimates_added,
                "peak_rss_mb_whole_store": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            })
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
        db.engine.dispose()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
