"""VEE and TOU, local vs Spark, on the same store (issue 13).

N meters × D days of 15-minute data are written as the interval store writes them
(``month=YYYY-MM/group=GG/…`` by ``meter_group``, sorted by meter and ts, catalogued in a fresh
SQLite database) with planted gaps, spikes, days of zeros and negative values. Then, timed:

1. the VEE pass (figures, findings, estimates: ``service._result``) in this process (local);
2. a full local ``vee run`` (the pass and storing its findings and estimates), so that the TOU
   totals have estimates to use;
3. the same pass on Spark (``SparkRunner``: one task per meter group), after the session has
   started (its start-up is reported apart), twice: the first job also starts the executors'
   Python workers;
4. the daily TOU totals of the D days, local and on Spark;

3 and 4 alternate local and Spark ``--repeats`` times (the machine is shared: each figure comes
with the 1-minute load average before → after it).

Local and Spark must give the same figures, findings and estimates rows and the same TOU rows;
the bench checks it and says so. Each Spark task reports the intervals it read and its seconds
from reading its files to its results: ``per_task_intervals_per_s`` is what one core does with
one partition (the executors' Polars is held to one thread, ``POLARS_MAX_THREADS=1``, so a task
is a core), the figure a province projection can be based on.

    python -m bench.spark_vee --meters 20000 --days 30 [--repeats 3]

prints one JSON object (the load average before and after each step included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

START = date(2026, 3, 2)
SLOTS = 96


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def generate(db: Any, meters: int, days: int, seed: int = 11) -> dict[str, int]:
    """Write and catalogue the store; returns the planted events."""
    import numpy as np
    import polars as pl
    from sqlalchemy import text

    from dianfei.core.clock import FixedClock
    from dianfei.metering import ingest
    from dianfei.metering import intervals as store

    if START.day + days - 1 > 31:
        raise SystemExit("--days must stay within one month (March 2026): at most 30")
    clock = FixedClock(datetime(2026, 4, 1, 2, 0, tzinfo=UTC))
    batch = ingest.start_batch(db, kind="intervals", origin="bench", clock=clock)
    rng = np.random.default_rng(seed)
    first = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # 2 March 00:00 in Beijing
    n_slots = days * SLOTS
    ids = [f"M{m:08d}" for m in range(meters)]
    groups = np.array([store.meter_group(i) for i in ids])
    planted = {"intervals": 0, "gap_events": 0, "missing_intervals": 0, "zero_runs": 0,
               "negative": 0, "spikes": 0}
    root = store.store_root(db)
    files = []
    for g in range(store.GROUPS):
        mine = np.nonzero(groups == g)[0]
        n = len(mine)
        if n == 0:
            continue
        base = rng.integers(20, 200, size=n)
        shape = 1 + 0.8 * np.sin(np.linspace(0, 2 * np.pi * days, n_slots, endpoint=False))
        wh = (base[:, None] * shape[None, :]
              + rng.integers(0, 30, size=(n, n_slots))).astype(np.int64)
        keep = np.ones((n, n_slots), dtype=bool)
        k = np.arange(n)
        # 0.2 %: a whole business day of zeros (one zero run each)
        zero = rng.random(n) < 0.002
        zero_day = rng.integers(1, days - 1, size=n) if days > 2 else np.zeros(n, dtype=np.int64)
        for i in np.nonzero(zero)[0]:
            wh[i, zero_day[i] * SLOTS:(zero_day[i] + 1) * SLOTS] = 0
        # 0.5 %: one spike of 100 × the base plus 13 kWh (above the 50 kW safety floor)
        spike = (rng.random(n) < 0.005) & ~zero
        spike_at = rng.integers(0, n_slots, size=n)
        wh[k[spike], spike_at[spike]] = base[spike] * 100 + 13_000
        # 0.1 %: one negative value
        neg = (rng.random(n) < 0.001) & ~zero & ~spike
        neg_at = rng.integers(0, n_slots, size=n)
        wh[k[neg], neg_at[neg]] = -rng.integers(1, 50, size=int(neg.sum()))
        # 2 %: one gap of 1–40 slots, never at the ends nor over the other events
        gap = (rng.random(n) < 0.02) & ~spike & ~neg & ~zero
        glen = rng.integers(1, 41, size=n)
        gstart = rng.integers(1, n_slots - 41, size=n)
        for i in np.nonzero(gap)[0]:
            keep[i, gstart[i]:gstart[i] + glen[i]] = False
        planted["gap_events"] += int(gap.sum())
        planted["missing_intervals"] += int(glen[gap].sum())
        planted["zero_runs"] += int(zero.sum())
        planted["negative"] += int(neg.sum())
        planted["spikes"] += int(spike.sum())
        rows = np.nonzero(keep.ravel())[0]
        planted["intervals"] += len(rows)
        names = pl.Series("m", [ids[i] for i in mine])
        frame = pl.DataFrame({
            "meter_id": names.gather(pl.Series(rows // n_slots)),
            "ts": pl.Series((rows % n_slots).astype(np.int64) * 15 * 60_000_000
                            + int(first.timestamp()) * 1_000_000).cast(pl.Datetime("us", "UTC")),
            "minutes": pl.Series(np.full(len(rows), 15, dtype=np.int16)),
            "wh": pl.Series(wh.ravel()[rows]),
            "batch_id": pl.Series([batch] * len(rows), dtype=pl.String),
        })
        # the store's own chunking: at most 4,000,000 rows a file (ingest writes chunks)
        for c, part in enumerate(frame.iter_slices(4_000_000)):
            files.append(store.write_partition(root, part, month=START.replace(day=1), day=START,
                                               group=g, batch_id=batch, chunk=c + 1, sync=False))
    store.sync_files(root, files)
    with db.engine.begin() as conn:
        store.catalogue(conn, files)
        conn.execute(text("UPDATE import_batches SET status = 'finished', data_rows = :n, "
                          "accepted = :n WHERE batch_id = :b"),
                     {"n": planted["intervals"], "b": batch})
    return planted


def _same(a: Any, b: Any) -> bool:
    return bool(a.counts == b.counts and a.findings.equals(b.findings)
                and a.estimates.equals(b.estimates))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--repeats", type=int, default=3,
                        help="how many times local and Spark alternate (VEE pass, TOU)")
    parser.add_argument("--dir", type=Path, default=None, help="keep the database and store here")
    a = parser.parse_args()
    # the local pass with Polars' own threads (one per core): Polars reads POLARS_MAX_THREADS
    # once, when it is imported, so import it before the executors' setting below
    import polars as pl

    # the executors' Polars one thread each (a task is a core); set before the JVM starts, whose
    # Python workers inherit it
    os.environ["POLARS_MAX_THREADS"] = "1"
    os.environ["DIANFEI_SPARK_MASTER"] = a.master
    import base64
    import secrets

    from bench.machine import describe
    from dianfei.core.clock import FixedClock
    from dianfei.core.settings import load_settings
    from dianfei.db.engine import open_database
    from dianfei.metering.vee import service
    from dianfei.scale import vee as spark_vee
    from dianfei.scale.session import spark_session, stop_session

    work = a.dir or Path(tempfile.mkdtemp(prefix="dianfei-spark-vee-"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"benchmark": "spark_vee", "meters": a.meters, "days": a.days,
                           "master": a.master, "machine": describe(),
                           "local_polars_threads": pl.thread_pool_size()}
    try:
        db = open_database(load_settings({
            "DIANFEI_DATABASE_URL": f"sqlite:///{work / 'dianfei.db'}",
            "DIANFEI_DATA_DIR": str(work / "var"),
            "DIANFEI_SECRET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}))
        t = time.perf_counter()
        planted = generate(db, a.meters, a.days)
        out["generate_s"] = round(time.perf_counter() - t, 1)
        out["planted"] = planted
        clock = FixedClock(datetime(2026, 4, 1, 2, 0, tzinfo=UTC))
        last = START + timedelta(days=a.days - 1)

        def timed(name: str, fn: Any) -> Any:
            """Run ``fn``; append its seconds and the 1-minute load before → after to
            ``out[name]`` (a list: the steps that repeat alternate local and Spark)."""
            before = loadavg()
            t0 = time.perf_counter()
            result = fn()
            out.setdefault(name, []).append(
                {"s": round(time.perf_counter() - t0, 2), "load": f"{before} → {loadavg()}"})
            return result

        def vee_pass(runner: Any = None) -> Any:
            return service._result(db, None, None, with_findings=True, with_estimates=True,
                                   runner=runner)

        local = timed("local_vee_pass", vee_pass)
        out["figures"] = local.counts
        out["figures_match_planted"] = all(local.counts[k] == v for k, v in planted.items())
        out["findings"], out["estimates"] = local.findings.height, local.estimates.height
        # the estimates stored, for the TOU totals below
        timed("local_vee_run", lambda: service.run_vee(db, clock))
        session = timed("spark_session_start", lambda: spark_session(db.settings))
        runner = spark_vee.SparkRunner(session)
        # the first job also starts the executors' Python workers (each imports Polars and
        # dianfei): timed apart; then local and Spark alternate on the warm workers
        timed("spark_vee_pass_first", lambda: vee_pass(runner))
        same, tou_same = [], []
        stats: list[spark_vee.TaskStats] = []
        tou_stats: list[spark_vee.TaskStats] = []
        for r in range(a.repeats):
            if r:
                local = timed("local_vee_pass", vee_pass)
            spark = timed("spark_vee_pass", lambda: vee_pass(runner))
            same.append(_same(local, spark))
            stats += runner.stats
            tou_local = timed("local_tou", lambda: service.daily_tou(db, START, last))
            these: list[spark_vee.TaskStats] = []
            tou_spark = timed("spark_tou", lambda these=these: spark_vee.daily_tou(
                db, START, last, stats=these))
            tou_stats += these
            tou_same.append(tou_spark.equals(tou_local))
        out["spark_same_as_local"] = all(same)
        out["tou_rows"] = tou_local.height
        out["tou_same"] = all(tou_same)
        out["spark_tasks_per_job"] = len(runner.stats)
        rates = [s.intervals / s.seconds for s in stats if s.intervals]
        out["per_task_intervals_per_s"] = {
            "all_tasks": round(sum(s.intervals for s in stats) / sum(s.seconds for s in stats)),
            "median": round(statistics.median(rates)), "min": round(min(rates)),
            "max": round(max(rates)), "tasks": len(stats)}
        out["task_seconds_per_job"] = {
            "sum": round(sum(s.seconds for s in stats) / a.repeats, 2),
            "max": round(max(s.seconds for s in stats), 2)}
        out["tou_per_task_intervals_per_s"] = round(
            sum(s.intervals for s in tou_stats) / sum(s.seconds for s in tou_stats))
        stop_session()
        db.engine.dispose()
        print(json.dumps(out))
    finally:
        if a.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
