"""Arrears-risk features and scores on Spark: :func:`dianfei.risk.service.score_part` per
partition of accounts, the riskiest's reasons on the driver (:func:`give_reasons`) — the scores
of ``score_frame``, for every account. Which rows are whose, and why a partition's scores are
everyone's, is risk's (``dianfei/risk/partitions.py``); this is the plumbing: cut, stage, run
one task per partition, read back.

The driver cuts the history into ``partitions`` parts by a hash of the account id and writes each
part's frames as Parquet into a staging directory (``{data_dir}/spark-staging``: shared storage
on a cluster, docs/scaling.md); each task gets one part's directory, reads it with Polars, scores
it and writes its scores beside it; the driver reads them once the whole job has succeeded and
deletes the staging directory. So the history never passes through the driver's JVM heap (an
RDD of the parts pickled did, and 300,000 accounts' history ran a 2g heap out), and nothing is
stored — the day's scores file, the warnings — unless every partition was scored.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from dianfei.core.errors import DianfeiError
from dianfei.core.faults import kill_point
from dianfei.risk.service import (
    REASONS_FOR,
    SCORES_SCHEMA,
    Found,
    History,
    ModelText,
    Part,
    ScoreBackend,
    account_part,
    give_reasons,
    routed,
    score_part,
    split_parts,
    truncate,
)
from dianfei.scale.session import SparkSettings, job_failed, spark_session

if TYPE_CHECKING:
    from dianfei.core.settings import Settings


def spark_scorer(settings: Settings) -> ScoreBackend:
    """``daily_scores``' Spark backend, its session started now: a Spark that cannot run here is
    refused before anything is read or written."""
    spark_session(settings)

    def on_spark(history: History, as_of: date, found: Found | None) -> pl.DataFrame:
        return spark_score_frame(settings, history, as_of, found)

    return on_spark


@dataclass(frozen=True)
class PartJob:
    """What every task of one scoring job needs besides its part."""

    as_of: date
    #: "none" or "all": the riskiest's reasons are the driver's
    reasons: str
    #: the broadcast ModelText (None: the points score)
    model: Any
    #: names the job (its model in a worker's cache, its staging directory)
    job_id: str
    #: where the task writes its part's scores
    out_dir: str
    #: the crash tests' fault point, read on the driver (an executor's environment is the
    #: cluster's, not the caller's)
    fault: str | None = None


#: per Python worker: the model of the job it last rebuilt one for (a worker runs many tasks;
#: the boosters are parsed once per worker, not once per partition)
_models: dict[str, Found] = {}


def model_of(job: PartJob) -> Found | None:
    if job.model is None:
        return None
    if job.job_id not in _models:
        text: ModelText = job.model.value
        _models.clear()
        _models[job.job_id] = text.found()
    return _models[job.job_id]


def stage_parts(items: list[Part], staging: Path) -> list[tuple[int, str]]:
    """Each part's frames as Parquet under ``staging/part-<n>/``, written under a temporary name
    and renamed (a task never reads a half-written part); (part, its directory) per part."""
    tmp = staging.with_name(staging.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for part, frames in items:
        where = tmp / f"part-{part}"
        where.mkdir(parents=True)
        for name, frame in frames.items():
            frame.write_parquet(where / f"{name}.parquet", statistics=False)
    tmp.mkdir(parents=True, exist_ok=True)
    tmp.rename(staging)
    return [(part, str(staging / f"part-{part}")) for part, _ in items]


def read_part(where: str) -> dict[str, pl.DataFrame]:
    return {p.stem: pl.read_parquet(p) for p in sorted(Path(where).glob("*.parquet"))}


def score_staged(item: tuple[int, str], job: PartJob) -> dict[str, Any]:
    """The task: one part read, scored and its scores written; what it did and how long it
    took (per-partition throughput, the figures behind docs/benchmarks.md's projection)."""
    part, where = item
    t0, c0 = time.perf_counter(), time.process_time()
    frames = read_part(where)
    found = model_of(job)
    t1, c1 = time.perf_counter(), time.process_time()
    scores = score_part(frames, job.as_of, found, job.reasons)
    seconds, cpu = time.perf_counter() - t1, time.process_time() - c1
    if job.fault:
        _arm(job.fault)
        kill_point("spark.partition_scored")  # the crash test kills the task here
    out = Path(job.out_dir) / f"part-{part}.parquet"
    tmp = out.with_suffix(".tmp")
    scores.write_parquet(tmp, statistics=False)
    os.replace(tmp, out)  # a retried task writes the same file whole again
    return {"part": part, "accounts": scores.height, "read_s": t1 - t0, "score_s": seconds,
            "score_cpu_s": cpu, "read_cpu_s": c1 - c0}


def spark_score_frame(settings: Settings, history: History, as_of: date, found: Found | None,
                      *, reasons: str = "high", reasons_for: int = REASONS_FOR,
                      partitions: int | None = None,
                      timings: list[dict[str, Any]] | None = None) -> pl.DataFrame:
    """:func:`score_frame` on Spark: the same columns and rows (in account order). Raises
    ``SparkUnavailable`` when Spark cannot start, ``SparkJobFailed`` when the job fails; writes
    nothing but its staging directory, deleted either way. ``timings``, when given, receives
    each partition's task figures."""
    if reasons not in ("high", "all", "none"):
        raise ValueError(f"reasons must be high, all or none, not {reasons!r}")
    spark = spark_session(settings)
    parts = partitions or SparkSettings.from_settings(settings).default_partitions()
    h = truncate(history, as_of)
    items = split_parts(routed(h, lambda a: account_part(a, parts)))
    sc = spark.sparkContext
    job_id = uuid.uuid4().hex
    staging = Path(settings.data_dir) / "spark-staging" / f"risk-{as_of}-{job_id}"
    model = None if found is None else sc.broadcast(ModelText.of(found))
    job = PartJob(as_of=as_of, reasons="all" if reasons == "all" else "none", model=model,
                  job_id=job_id, out_dir=str(staging / "scores"), fault=_fault_spec())
    try:
        staged = stage_parts(items, staging / "parts")
        (staging / "scores").mkdir()
        try:
            done = (sc.parallelize(staged, max(1, len(staged)))
                    .map(functools.partial(score_staged, job=job)).collect())
        except Exception as exc:  # the job's own failure, said in words an operator can act on
            raise job_failed(exc, f"risk scoring as of {as_of}") from exc
        if sorted(d["part"] for d in done) != [p for p, _ in items]:
            raise DianfeiError(f"risk scoring as of {as_of}: Spark returned the partitions "
                               f"{sorted(d['part'] for d in done)} of {len(items)}; nothing "
                               "stored: run it again")
        got = [pl.read_parquet(staging / "scores" / f"part-{d['part']}.parquet") for d in done]
    finally:
        if model is not None:
            model.destroy()
        shutil.rmtree(staging, ignore_errors=True)
    scores = pl.concat([pl.DataFrame(schema=SCORES_SCHEMA), *got]).sort("account_id")
    if found is not None and reasons == "high":
        scores = give_reasons(scores, h, as_of, found, reasons_for)
    if timings is not None:
        timings.extend(sorted(done, key=lambda d: int(d["part"])))
    return scores


def _fault_spec() -> str | None:
    from dianfei.core.faults import ENV

    return os.environ.get(ENV)


def _arm(spec: str) -> None:
    """The driver's fault point in this worker's environment (read again when it changed)."""
    from dianfei.core import faults

    if os.environ.get(faults.ENV) != spec:
        os.environ[faults.ENV] = spec
        faults.reset()
