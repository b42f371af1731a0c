"""Risk features and scores, local (Polars in this process) against Spark (``local[N]``), on the
same synthetic history, and what one Spark partition scores per second and per CPU-second.

    python -m bench.spark_risk --accounts 100000 --months 13

The history is the synthetic county's (``bench.riskdata``, as ``bench.risk`` builds it); the
model is trained beforehand on a 20,000-account county (not timed), as in ``bench.risk
--what scoring``; ``--rules`` scores with the points instead. Timed:

- local: :func:`score_frame` (features as of the last issue date, scores, reasons for the
  riskiest of the high band), wall and CPU seconds of this process;
- spark: :func:`spark_score_frame` end to end (cutting the history into partitions on the
  driver, staging them as Parquet, the job, reading the scores back, the driver's ranking and
  reasons), twice: the first job of a session pays for starting the Python workers and warming
  the JVM; the session's own start is timed apart. The driver's steps are then timed alone;
- per partition (the second job's tasks): each task times ``score_part`` (the local path's
  features and scorer on its part) with ``perf_counter`` and the worker's ``process_time``
  (every thread of the worker: Polars uses several) — accounts per second of a task and per
  CPU-second, the figures a projection to more accounts and cores starts from.

The two backends' scores are compared (``equals``) and the run fails if they differ. Prints one
JSON line; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _load() -> str:
    """The 1-, 5- and 15-minute load averages: other work shares this machine's cores."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(accounts: int, months: int, trees: int, partitions: int | None, rules: bool
        ) -> dict[str, Any]:
    import polars as pl

    from bench.machine import describe
    from bench.riskdata import ISSUE_DELAY, sim_history
    from dianfei.core.clock import Period
    from dianfei.core.settings import load_settings
    from dianfei.risk.engine import REASONS_FOR, score_frame, truncate
    from dianfei.risk.model import ArrearsModel, TrainConfig, train
    from dianfei.risk.partitions import account_part, give_reasons, routed, split_parts
    from dianfei.scale import risk as spark_risk
    from dianfei.scale.session import SparkSettings, spark_session

    start = Period(2025, 1)
    t0 = time.perf_counter()
    history, _ = sim_history(accounts, months, seed=11, start=start)
    built = time.perf_counter() - t0
    _progress(f"history built in {built:.1f} s")
    last = start
    for _ in range(months - 1):
        last = last.next()
    as_of = last.end_date + ISSUE_DELAY
    found = None
    if not rules:
        small, _ = sim_history(20_000, months, seed=11, start=start)
        model = train(truncate(small, as_of), as_of, TrainConfig(trees=trees))
        assert isinstance(model, ArrearsModel)
        found = ({"version": "bench"}, model)
        _progress("model of 20,000 accounts trained")
    settings = load_settings()
    cfg = SparkSettings.from_settings(settings)
    parts = partitions or cfg.default_partitions()
    out: dict[str, Any] = {
        "accounts": accounts, "months": months, "scorer": "rules" if rules else "lightgbm",
        "trees": None if rules else trees, "as_of": str(as_of), "bills": history.bills.height,
        "clearings": history.clearings.height, "master": cfg.master, "partitions": parts,
        "machine": describe(), "history_build_s": round(built, 1)}

    load0 = _load()
    c0, t0 = time.process_time(), time.perf_counter()
    local = score_frame(history, as_of, found)
    out["local"] = {"wall_s": round(time.perf_counter() - t0, 2),
                    "cpu_s": round(time.process_time() - c0, 2), "loadavg_before": load0,
                    "loadavg_after": _load()}
    _progress(f"local: {out['local']}")

    t0 = time.perf_counter()
    spark_session(settings)
    out["spark_session_start_s"] = round(time.perf_counter() - t0, 2)
    runs = []
    for _ in range(2):
        load0 = _load()
        c0, t0 = time.process_time(), time.perf_counter()
        timings: list[dict[str, Any]] = []
        scores = spark_risk.spark_score_frame(settings, history, as_of, found, partitions=parts,
                                              timings=timings)
        runs.append({"wall_s": round(time.perf_counter() - t0, 2),
                     "driver_cpu_s": round(time.process_time() - c0, 2),
                     "loadavg_before": load0, "loadavg_after": _load()})
        _progress(f"spark: {runs[-1]}")
        if not scores.equals(local):
            raise SystemExit("the Spark scores differ from the local ones")
    out["spark_first_job"], out["spark"] = runs
    out["identical"] = True
    out["high_band"] = int((local["band"] == "high").sum())
    out["with_reasons"] = int((local["reasons_en"] != "").sum())

    # the driver's own steps of spark_score_frame, one by one: cutting the history into parts …
    c0, t0 = time.process_time(), time.perf_counter()
    past = truncate(history, as_of)
    items = split_parts(routed(past, lambda a: account_part(a, parts)))
    out["driver_split"] = {"wall_s": round(time.perf_counter() - t0, 2),
                           "cpu_s": round(time.process_time() - c0, 2)}
    # … staging them as Parquet (shared storage on a cluster) …
    staging = Path(tempfile.mkdtemp(prefix="bench-risk-")) / "parts"
    c0, t0 = time.process_time(), time.perf_counter()
    spark_risk.stage_parts(items, staging)
    out["driver_stage"] = {"wall_s": round(time.perf_counter() - t0, 2),
                           "cpu_s": round(time.process_time() - c0, 2),
                           "mb": round(sum(f.stat().st_size for f in staging.rglob("*.parquet"))
                                       / 2**20, 1)}
    shutil.rmtree(staging.parent)
    if found is not None:
        # … and the reasons of everyone's riskiest, from their own rows
        c0, t0 = time.process_time(), time.perf_counter()
        give_reasons(local.with_columns(pl.lit("").alias("reasons_zh"),
                                        pl.lit("").alias("reasons_en")), past, as_of, found)
        out["driver_reasons"] = {"accounts": REASONS_FOR,
                                 "wall_s": round(time.perf_counter() - t0, 2),
                                 "cpu_s": round(time.process_time() - c0, 2)}
    _progress(f"driver steps: {out['driver_split']} {out['driver_stage']} "
              f"{out.get('driver_reasons')}")

    # the tasks of the second job, each timing the function it runs on its partition
    per = pl.DataFrame(timings).sort("part")
    total = per.select(pl.sum("accounts"), pl.sum("score_s"), pl.sum("score_cpu_s")).row(0)
    out["per_partition"] = {
        "parts": per.select("part", "accounts", *[pl.col(c).round(2) for c in (
            "read_s", "score_s", "score_cpu_s")]).to_dicts(),
        "accounts_per_task_second": round(total[0] / total[1]),
        "accounts_per_cpu_second": round(total[0] / total[2])}
    _progress(f"per partition: {out['per_partition']}")
    use = resource.getrusage(resource.RUSAGE_SELF)
    out["driver_peak_rss_gb"] = round(use.ru_maxrss / 2**20, 2)
    return out


def _progress(what: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {what}\n")
    sys.stderr.flush()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--months", type=int, default=13)
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=None,
                    help="partitions of accounts (default: [spark] partitions, else 2 × cores)")
    ap.add_argument("--rules", action="store_true", help="the points score instead of a model")
    a = ap.parse_args()
    print(json.dumps(run(a.accounts, a.months, a.trees, a.partitions, a.rules)))


if __name__ == "__main__":
    main()
