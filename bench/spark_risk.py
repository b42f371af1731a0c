"""Risk features and scores, local (Polars in this process) against Spark (``local[N]``), on the
same synthetic history, and what one Spark partition scores per second and per CPU-second.

    python -m bench.spark_risk --accounts 100000 --months 13

The history is the synthetic county's (``bench.riskdata``, as ``bench.risk`` builds it); the
model is trained beforehand on a 20,000-account county (not timed), as in ``bench.risk
--what scoring``; ``--rules`` scores with the points instead. Timed:

- local: :func:`score_frame` (features as of the last issue date, scores, reasons for the
  riskiest of the high band), wall and CPU seconds of this process;
- spark: :func:`spark_score_frame` end to end (cutting the history into partitions on the
  driver, shipping each part to its task, the job, collecting the scores, the driver's final ranking
  for the reasons), twice: the first job of a session pays for starting the Python workers
  and warming the JVM; the session's own start is timed apart;
- per partition: the same tasks again, each timing its own :func:`score_part` (the function the
  scoring task runs) with ``perf_counter`` and the worker's ``process_time`` (every thread of
  the worker: Polars uses several) — accounts per second of a task and per CPU-second, the
  figures a projection to more accounts and cores starts from.

The two backends' scores are compared (``equals``) and the run fails if they differ. Prints one
JSON line; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
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
    from dianfei.risk.engine import (
        REASONS_FOR,
        riskiest_high,
        score_frame,
        truncate,
        with_reasons,
    )
    from dianfei.risk.features import features
    from dianfei.risk.model import ArrearsModel, TrainConfig, train
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
    spark = spark_session(settings)
    out["spark_session_start_s"] = round(time.perf_counter() - t0, 2)
    runs = []
    for _ in range(2):
        load0 = _load()
        c0, t0 = time.process_time(), time.perf_counter()
        scores = spark_risk.spark_score_frame(settings, history, as_of, found, partitions=parts)
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
    items = spark_risk.split_parts(spark_risk.routed(past,
                                                     lambda a: spark_risk.account_part(a, parts)))
    out["driver_split"] = {"wall_s": round(time.perf_counter() - t0, 2),
                           "cpu_s": round(time.process_time() - c0, 2)}
    if found is not None:
        # … and the reasons of everyone's riskiest, from their own rows
        c0, t0 = time.process_time(), time.perf_counter()
        ids = riskiest_high(local, REASONS_FOR)
        feats = features(spark_risk.history_of_accounts(past, ids), as_of)
        with_reasons(local, feats, found[1], ids)
        out["driver_reasons"] = {"accounts": ids.len(),
                                 "wall_s": round(time.perf_counter() - t0, 2),
                                 "cpu_s": round(time.process_time() - c0, 2)}
    _progress(f"driver steps: {out['driver_split']} {out.get('driver_reasons')}")

    # the tasks again, each timing the function the scoring task runs
    model = None if found is None else spark.sparkContext.broadcast(
        spark_risk.ModelSpec.of(found))
    # as spark_score_frame's tasks: scores without reasons (the driver gives the riskiest theirs)
    job = spark_risk.PartJob(as_of=as_of, reasons="none", model=model, model_key="bench")

    def timed(part: spark_risk.Part) -> dict[str, Any]:
        found_there = spark_risk.model_of(job)  # the model parsed outside the timing, as cached
        c, t = time.process_time(), time.perf_counter()
        scored = spark_risk.score_part(part[1], job, found_there)
        return {"part": part[0], "accounts": scored.height,
                "rows": sum(f.height for f in part[1].values()),
                "seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c}

    load0 = _load()
    t0 = time.perf_counter()
    per = pl.DataFrame(spark.sparkContext.parallelize(items, len(items)).map(timed).collect())
    job_wall = time.perf_counter() - t0
    per = per.sort("part")
    total = per.select(pl.sum("accounts"), pl.sum("seconds"), pl.sum("cpu_seconds")).row(0)
    out["per_partition"] = {
        "loadavg_before": load0, "loadavg_after": _load(), "job_wall_s": round(job_wall, 2),
        "parts": per.select("part", "accounts", "rows", pl.col("seconds").round(2),
                            pl.col("cpu_seconds").round(2)).to_dicts(),
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
