"""The default demo, timed: with the daily collections loop and without it, side by side in one
run, each in a fresh database and data directory (the issue's target: ≤ 5 minutes on 2 cores and
never more than 4× the billing-only demo).

    python -m bench.demo_time [--customers 20000] [--months 24]

Prints one JSON line: seconds for each, their ratio, peak memory, the database size, ledger
entries by kind and how the collections days grew (the days' own timings, from
``collection_runs.report``: day 2, day 30, day 365 and the last)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import describe


def _demo(customers: int, months: int, collections: bool) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="dianfei-demo-"))
    env = {**os.environ, "DIANFEI_DATABASE_URL": f"sqlite:///{work / 'd.db'}",
           "DIANFEI_DATA_DIR": str(work / "var")}
    args = [sys.executable, "-m", "dianfei", "demo", "--customers", str(customers), "--months",
            str(months), "--no-serve"] + ([] if collections else ["--no-collections"])
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    check = subprocess.run([sys.executable, "-m", "dianfei", "ledger", "check"], env=env,
                           capture_output=True, text=True)
    db = sqlite3.connect(work / "d.db")
    kinds = dict(db.execute("SELECT kind, count(*) FROM ledger_entries GROUP BY kind").fetchall())
    days: dict[str, object] = {}
    steps: dict[str, float] = {}
    if collections:
        runs = db.execute("SELECT day, report FROM collection_runs WHERE report IS NOT NULL "
                          "ORDER BY day").fetchall()
        for n in (2, 30, 365, len(runs)):
            if 0 < n <= len(runs):
                timings = json.loads(runs[n - 1][1])["timings"]
                days[f"day {n} ({runs[n - 1][0]})"] = round(sum(timings.values()), 3)
        # each step's seconds over the whole run, largest first (where the days went)
        for _day, report in runs:
            for step, secs in json.loads(report)["timings"].items():
                steps[step] = steps.get(step, 0.0) + secs
    db.close()
    size = (work / "d.db").stat().st_size
    # two years of a county are gigabytes: the work directory goes when its figures are read
    shutil.rmtree(work, ignore_errors=True)
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak / 1024),
            "database_mb": round(size / 2**20),
            "ledger_entries": kinds, "ledger_check_ok": check.returncode == 0,
            "collections_day_seconds": days,
            "collections_step_seconds": {k: round(v, 1) for k, v in
                                         sorted(steps.items(), key=lambda kv: -kv[1])}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--months", type=int, default=24)
    a = ap.parse_args()
    billing_only = _demo(a.customers, a.months, collections=False)
    full = _demo(a.customers, a.months, collections=True)
    print(json.dumps({
        "machine": describe(), "customers": a.customers, "months": a.months,
        "demo_seconds": full["seconds"], "billing_only_seconds": billing_only["seconds"],
        "ratio": round(float(full["seconds"]) / float(billing_only["seconds"]), 2),  # type: ignore[arg-type]
        "demo": full, "billing_only": billing_only}, ensure_ascii=False))


if __name__ == "__main__":
    main()
