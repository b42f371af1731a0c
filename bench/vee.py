"""VEE + TOU benchmark: one day of 15-minute data for N meters (96 × N intervals).

The day is generated as Parquet laid out like the interval store (``day=…/group=GG/…``) with
planted gaps, spikes, zero days and negative values, in a child process (so its memory is not
counted). Then, timed, the pure VEE pipeline (figures, findings, estimates) and the daily TOU
split run over the files group by group (Polars lazy). The figures found are checked against
what was planted.

    python -m bench.vee --meters 1000000
prints one JSON object with the figures as its last line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

DAY = date(2026, 3, 2)
SLOTS = 96
GROUPS = 16
TZ = "Asia/Shanghai"


def generate(root: Path, meters: int, seed: int = 7) -> dict[str, int]:
    """Write the day; returns the figures that were planted (what VEE must find)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(seed)
    start = datetime(2026, 3, 1, 16, 0, tzinfo=UTC)  # 2026-03-02 00:00 Shanghai
    planted = {"intervals": 0, "missing_intervals": 0, "gap_events": 0, "spikes": 0,
               "zero_runs": 0, "negative": 0}
    ids = np.arange(meters)
    group_of = ids % GROUPS
    for g in range(GROUPS):
        mine = ids[group_of == g]
        n = len(mine)
        # a household load: 20–400 Wh per quarter-hour, the same shape for everyone (plus noise)
        base = rng.integers(20, 200, size=n)
        shape = (1 + 0.8 * np.sin(np.linspace(0, 2 * np.pi, SLOTS)))
        wh = (base[:, None] * shape[None, :] + rng.integers(0, 30, size=(n, SLOTS))).astype(np.int64)
        keep = np.ones((n, SLOTS), dtype=bool)
        k = np.arange(n)
        # 0.2 % of meters: the whole day at zero (one zero run each)
        zero = rng.random(n) < 0.002
        wh[zero] = 0
        # 0.5 % (not zero days): one spike of 100 × the base plus 13 kWh: above the 50 kW
        # safety floor (a day is too little history for the meter's own statistics)
        spike = (rng.random(n) < 0.005) & ~zero
        spike_at = rng.integers(0, SLOTS, size=n)
        wh[k[spike], spike_at[spike]] = base[spike] * 100 + 13_000
        # 0.1 %: one negative value (never on a spike)
        neg = (rng.random(n) < 0.001) & ~zero & ~spike
        neg_at = rng.integers(0, SLOTS, size=n)
        wh[k[neg], neg_at[neg]] = -rng.integers(1, 50, size=int(neg.sum()))
        # 1 %: one gap of 1–24 slots inside the day (never touching the first or last slot, never
        # over a spike or negative value)
        gap = (rng.random(n) < 0.01) & ~spike & ~neg & ~zero
        glen = rng.integers(1, 25, size=n)
        gstart = rng.integers(1, SLOTS - 25, size=n)
        for i in np.nonzero(gap)[0]:
            keep[i, gstart[i]:gstart[i] + glen[i]] = False
        planted["missing_intervals"] += int(glen[gap].sum())
        planted["gap_events"] += int(gap.sum())
        planted["spikes"] += int(spike.sum())
        planted["zero_runs"] += int(zero.sum())
        planted["negative"] += int(neg.sum())
        rows = np.nonzero(keep.ravel())[0]
        planted["intervals"] += len(rows)
        meter_idx = rows // SLOTS
        slot_idx = rows % SLOTS
        names = pl.Series("m", [f"M{m:08d}" for m in mine])
        frame = pl.DataFrame({
            "meter_id": names.gather(pl.Series(meter_idx)),
            "ts": pl.Series(slot_idx.astype(np.int64) * 15 * 60_000_000
                            + int(start.timestamp()) * 1_000_000).cast(pl.Datetime("us", "UTC")),
            "minutes": pl.Series(np.full(len(rows), 15, dtype=np.int16)),
            "wh": pl.Series(wh.ravel()[rows]),
        }).with_columns(pl.lit("bench", pl.String).alias("batch_id"))
        out = root / f"day={DAY.isoformat()}" / f"group={g:02d}"
        out.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(out / "bench-00001.parquet", compression="lz4", statistics=True,
                            row_group_size=256 * 1024)
    return planted


def _generate_child(root: str, meters: int, queue: Any) -> None:
    queue.put(generate(Path(root), meters))


def _wait(child: Any, queue: Any) -> dict[str, int]:
    import queue as q

    while True:
        try:
            result: dict[str, int] = queue.get(timeout=2)
            child.join()
            return result
        except q.Empty:
            if not child.is_alive():
                raise SystemExit(f"the generator died (exit code {child.exitcode})") from None


def run_pipeline(root: Path) -> dict[str, Any]:
    """VEE and TOU over every meter group of the day; returns the figures and timings."""
    import polars as pl

    from dianfei.metering.vee import pipeline, tou
    from dianfei.metering.vee.config import VeeConfig

    cfg = VeeConfig()
    cal = tou.calendar(cfg.tou_calendar)
    totals: dict[str, int] = {}
    findings = estimates = tou_rows = 0
    for group_dir in sorted((root / f"day={DAY.isoformat()}").iterdir()):
        lf = pl.scan_parquet(sorted(str(p) for p in group_dir.glob("*.parquet")))
        res = pipeline.run(lf, cfg, TZ)
        for key, value in res.counts.items():
            totals[key] = totals.get(key, 0) + value
        findings += res.findings.height
        estimates += res.estimates.height
        metered = res.prepared.select("meter_id", "ts", "wh", pl.lit("metered").alias("source"),
                                      "day", "tod", "meter_day")
        est = res.estimates.select("meter_id", "ts", "wh", pl.lit("estimated").alias("source"))
        tou_rows += tou.daily_tou_frame(metered, est, cal=cal, tz=TZ).height
    return {"counts": totals, "findings": findings, "estimates": estimates, "tou_rows": tou_rows}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--meters", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="keep the generated day here")
    a = parser.parse_args()
    from bench.machine import describe

    root = a.dir or Path(tempfile.mkdtemp(prefix="dianfei-vee-"))
    try:
        t0 = time.perf_counter()
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(target=_generate_child, args=(str(root), a.meters, queue))
        child.start()
        planted = _wait(child, queue)
        gen_s = time.perf_counter() - t0

        t1 = time.perf_counter()
        got = run_pipeline(root)
        run_s = time.perf_counter() - t1
        ok = all(got["counts"][k] == v for k, v in planted.items())
        out = {"benchmark": "vee_tou_day", "meters": a.meters, "intervals": got["counts"]["intervals"],
               "seconds": round(run_s, 2),
               "intervals_per_s": round(got["counts"]["intervals"] / run_s),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               "generate_seconds": round(gen_s, 1), "findings": got["findings"],
               "estimates": got["estimates"], "tou_rows": got["tou_rows"],
               "figures": got["counts"], "planted": planted, "figures_match_planted": ok,
               "machine": describe()}
        print(json.dumps(out))
    finally:
        if a.dir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
