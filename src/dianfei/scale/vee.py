"""VEE and time-of-use totals on Spark: one task per meter group of the interval store (or per
part of one, when more partitions are asked for than there are groups).

The store is already cut by meter group (``month=…/group=GG/…``, ``intervals.py``), and every
VEE rule and the TOU split are per meter, so a meter group is a partition whose results need no
other: each task reads its group's files (and its group's rows of the mixed ``group=all`` files)
and runs the same columnar functions as the local path — ``pipeline.run`` and
``tou.daily_tou_frame`` — on the per-meter context the driver ships with it (its meters, register
reads, within-import duplicates, kept profiles, the rows around a window; for TOU its estimates
and edits). No rule is written twice.

``[spark] partitions`` (``DIANFEI_SPARK_PARTITIONS``; default twice the master's cores) above
the store's 16 groups cuts each group into parts by the bits of the meter's CRC-32 above those
of its group (:func:`meter_part`): a task then reads its group's files and keeps its part's
meters — more, smaller tasks (a task holds all the rows of its meters of the window).

The driver adds the figures up and concatenates findings and estimates in the pipeline's order
(``service.combine``); ``service.run_vee`` then writes them in one transaction exactly as after
a local pass. A task that fails (after Spark's retries) fails the job before anything is written:
:class:`~dianfei.scale.session.SparkJobFailed`, and the stored results are those of before.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dianfei.core.errors import DianfeiError
from dianfei.scale.session import job_failed, spark_session

if TYPE_CHECKING:
    import polars as pl
    from pyspark.sql import SparkSession

    from dianfei.core.clock import Clock
    from dianfei.db.engine import Database
    from dianfei.metering.vee.config import VeeConfig
    from dianfei.metering.vee.service import Computed, RunOutcome, VeePass
    from dianfei.metering.vee.tou import TouCalendar

T = TypeVar("T")
R = TypeVar("R")


class GroupTaskError(DianfeiError):
    """A meter group's task failed: raised in the executor with the group and the cause, so
    that the driver's :class:`SparkJobFailed` says which group and why (Spark's own first line
    is only "An exception was thrown from the Python worker")."""

    code = "spark_task_failed"
    http_status = 500


def _in_task(files: GroupFiles, what: str, fn: Callable[[], R]) -> R:
    try:
        return fn()
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300]
        part = f" (part {files.part + 1} of {files.parts})" if files.parts > 1 else ""
        raise GroupTaskError(f"{what} of meter group {files.group:02d}{part}: "
                             f"{type(exc).__name__}: {detail}") from exc


def meter_part(meter_ids: pl.Series, parts: int) -> pl.Series:
    """The part of its meter group each meter falls in when a group is cut into ``parts``
    tasks: the CRC-32 of its id (as ``meter_group``) without the group's bits, modulo
    ``parts`` — independent of the group, stable for a given ``parts``."""
    import polars as pl

    from dianfei.metering import intervals as store

    if parts == 1:
        return pl.Series(meter_ids.name, [0] * meter_ids.len(), dtype=pl.Int32)
    mapping = {m: (zlib.crc32(m.encode("utf-8")) // store.GROUPS) % parts
               for m in meter_ids.unique().to_list()}
    return meter_ids.replace_strict(mapping, return_dtype=pl.Int32)


def parts_per_group(db: Database) -> int:
    """How many tasks each meter group is cut into: enough for the configured partitions."""
    from dianfei.metering import intervals as store
    from dianfei.scale.session import SparkSettings

    return max(1, math.ceil(SparkSettings.from_settings(db.settings).default_partitions()
                            / store.GROUPS))


@dataclass(frozen=True)
class GroupFiles:
    """Where one meter group's rows are: its own files and the mixed ones, under ``root``, and
    the ``ts`` bounds of the window (None: unbounded); the task keeps the meters of ``part``
    (of ``parts``, :func:`meter_part`)."""

    group: int
    root: str
    own: tuple[str, ...]
    mixed: tuple[str, ...]
    lo: datetime | None
    hi: datetime | None
    part: int = 0
    parts: int = 1

    @property
    def key(self) -> tuple[int, int]:
        return self.group, self.part

    def scan(self) -> pl.LazyFrame:
        import polars as pl

        from dianfei.metering import intervals as store

        rows = store.scan_group(Path(self.root), self.own, self.mixed, self.group, self.lo,
                                self.hi)
        if self.parts == 1:
            return rows
        ids = rows.select(pl.col("meter_id").unique()).collect()["meter_id"]
        mine = ids.filter(meter_part(ids, self.parts) == self.part)
        return rows.filter(pl.col("meter_id").is_in(mine.implode()))


@dataclass(frozen=True)
class VeeTask:
    """One meter group's VEE pass: its files and the per-meter context of its meters."""

    files: GroupFiles
    cfg: VeeConfig
    tz: str
    meters: pl.DataFrame
    duplicates: pl.DataFrame
    reads: pl.DataFrame | None
    profile: pl.DataFrame | None
    #: the rows before and after a window (``rules.CONTEXT_SCHEMA``), None for the whole history
    around: tuple[pl.DataFrame, pl.DataFrame] | None
    with_findings: bool
    with_estimates: bool


@dataclass(frozen=True)
class TouTask:
    """One meter group's daily TOU totals: its files, stored estimates and edits."""

    files: GroupFiles
    estimates: pl.DataFrame
    edits: pl.DataFrame
    cal: TouCalendar
    tz: str


@dataclass(frozen=True)
class TaskStats:
    """What one task did: its group and part, the metered intervals it read, its seconds (in
    the task, from reading its files to its results: the per-partition throughput)."""

    group: int
    part: int
    intervals: int
    seconds: float


@dataclass(frozen=True)
class _Done:
    stats: TaskStats
    counts: dict[str, int]
    findings: pl.DataFrame
    estimates: pl.DataFrame


def _vee_task(task: VeeTask) -> _Done:
    """Runs in a Spark executor's Python worker."""
    return _in_task(task.files, "VEE", lambda: _vee(task))


def _vee(task: VeeTask) -> _Done:
    import polars as pl

    from dianfei.metering.vee import pipeline

    t0 = time.perf_counter()
    context = None
    if task.around is not None:
        before, after = task.around

        def context(ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
            mine = ids.implode()
            return (before.filter(pl.col("meter_id").is_in(mine)),
                    after.filter(pl.col("meter_id").is_in(mine)))

    res = pipeline.run(
        task.files.scan(), task.cfg, task.tz, duplicates=task.duplicates.lazy(),
        reads=task.reads.lazy() if task.reads is not None else None, meters=task.meters.lazy(),
        with_findings=task.with_findings, with_estimates=task.with_estimates,
        profile=task.profile.lazy() if task.profile is not None else None, context=context)
    stats = TaskStats(task.files.group, task.files.part, res.counts.get("intervals", 0),
                      time.perf_counter() - t0)
    return _Done(stats, res.counts, res.findings, res.estimates)


def _tou_task(task: TouTask) -> tuple[TaskStats, pl.DataFrame]:
    """Runs in a Spark executor's Python worker."""
    return _in_task(task.files, "TOU totals", lambda: _tou(task))


def _tou(task: TouTask) -> tuple[TaskStats, pl.DataFrame]:
    from dianfei.metering.vee import tou
    from dianfei.metering.vee.service import effective_frame

    t0 = time.perf_counter()
    eff = effective_frame(task.files.scan(), task.estimates, task.edits)
    out = tou.daily_tou_frame(eff, cal=task.cal, tz=task.tz)
    metered = int(eff.filter(eff["source"] == "metered").height)
    return TaskStats(task.files.group, task.files.part, metered, time.perf_counter() - t0), out


def run_job(spark: SparkSession, tasks: Sequence[T], fn: Callable[[T], R], what: str) -> list[R]:
    """One Spark task per element of ``tasks`` (never merged: a task is a meter group or a
    part of one); the
    results in the order of ``tasks``. A failed job is a :class:`SparkJobFailed`."""
    if not tasks:
        return []
    try:
        return spark.sparkContext.parallelize(list(tasks), len(tasks)).map(fn).collect()
    except Exception as exc:  # Py4J carries the executor's traceback: job_failed says it short
        raise job_failed(exc, what) from exc


def group_files(db: Database, day_from: date | None, day_to: date | None,
                parts: int = 1) -> list[GroupFiles]:
    """Every meter group's files of the business days (as ``intervals.scan`` selects them),
    once per part of the group."""
    import polars as pl

    from dianfei.metering import intervals as store

    cat = store.window_files(db, day_from, day_to)
    lo, hi = store.window_bounds(day_from, day_to)
    root = str(store.store_root(db))
    mixed = tuple(cat.filter(pl.col("meter_group") == store.MIXED_GROUP)["path"].to_list())
    return [GroupFiles(g, root, tuple(cat.filter(pl.col("meter_group") == g)["path"].to_list()),
                       mixed, lo, hi, part, parts)
            for g in range(store.GROUPS) for part in range(parts)]


Key = tuple[int, int]


def by_part(frame: pl.DataFrame | None, parts: int) -> Callable[[Key], pl.DataFrame | None]:
    """``frame``'s rows of one (meter group, part) by ``meter_id``, partitioned once."""
    from dianfei.metering import intervals as store

    if frame is None:
        return lambda key: None
    empty = frame.clear()
    cut: dict[Key, pl.DataFrame] = {}
    if frame.height:
        ids = frame["meter_id"]
        keyed = frame.with_columns(store.group_column(ids).alias("_g"),
                                   meter_part(ids, parts).alias("_p"))
        cut = {(int(k[0]), int(k[1])): part.drop("_g", "_p")
               for k, part in keyed.group_by("_g", "_p", maintain_order=True)}
    return lambda key: cut.get(key, empty)


def _window_context(db: Database, p: VeePass, parts: int
                    ) -> Callable[[Key], tuple[pl.DataFrame, pl.DataFrame] | None]:
    """The rows around the window of every meter with rows in it, by meter group: computed on
    the driver (it searches the catalogue span by span, ``intervals.lead_in``), per meter, so
    one search for all meters gives each group's part exactly."""
    if p.context is None:
        return lambda key: None
    from dianfei.metering.vee import repository

    ids = (repository.intervals(db, p.day_from, p.day_to).select("meter_id").unique()
           .collect()["meter_id"].sort())
    before, after = p.context(ids)
    b, a = by_part(before, parts), by_part(after, parts)

    def around(key: Key) -> tuple[pl.DataFrame, pl.DataFrame]:
        mine_b, mine_a = b(key), a(key)
        assert mine_b is not None and mine_a is not None
        return mine_b, mine_a

    return around


@dataclass
class SparkRunner:
    """A :data:`dianfei.metering.vee.service.Runner` on Spark; ``stats`` holds the last job's
    tasks (the benchmark's per-partition throughput)."""

    spark: SparkSession
    stats: list[TaskStats] = field(default_factory=list)

    def __call__(self, db: Database, p: VeePass) -> Computed:
        from dianfei.metering.vee import profiles, service

        parts = parts_per_group(db)
        meters, dups = by_part(p.meters, parts), by_part(p.duplicates, parts)
        reads = by_part(p.reads, parts)
        profile = by_part(profiles.kept(db) if p.windowed else None, parts)
        around = _window_context(db, p, parts)
        tasks = []
        for files in group_files(db, p.day_from, p.day_to, parts):
            key = files.key
            m, d = meters(key), dups(key)
            assert m is not None and d is not None
            tasks.append(VeeTask(files, p.cfg, p.tz, m, d, reads(key), profile(key), around(key),
                                 p.with_findings, p.with_estimates))
        done = run_job(self.spark, tasks, _vee_task, "VEE")
        self.stats = [d.stats for d in done]
        return service.combine([service.Computed(d.counts, d.findings, d.estimates)
                                for d in done])


def run_vee(db: Database, clock: Clock, *, day_from: date | None = None,
            day_to: date | None = None, runner: SparkRunner | None = None) -> RunOutcome:
    """``service.run_vee`` computed on Spark. The session is started (or refused:
    :class:`SparkUnavailable`) before anything is read or written."""
    from dianfei.metering.vee import service

    runner = runner or SparkRunner(spark_session(db.settings))
    return service.run_vee(db, clock, day_from=day_from, day_to=day_to, runner=runner)


def run_pending(db: Database, clock: Clock) -> dict[str, Any]:
    """``service.run_pending`` (the nightly job) computed on Spark."""
    from dianfei.metering.vee import service

    return service.run_pending(db, clock, runner=SparkRunner(spark_session(db.settings)))


def daily_tou(db: Database, day_from: date, day_to: date, *,
              stats: list[TaskStats] | None = None) -> pl.DataFrame:
    """``service.daily_tou`` computed on Spark, one task per meter group; identical rows.
    ``stats``: filled with the tasks' :class:`TaskStats`."""
    import polars as pl

    from dianfei.metering.vee import repository, service, tou

    spark = spark_session(db.settings)
    cal, tz = service.tou_calendar(db), repository.tz_name(db)
    parts = parts_per_group(db)
    est = by_part(repository.estimates(db, day_from, day_to), parts)
    ed = by_part(repository.edits(db, day_from, day_to), parts)
    tasks = []
    for files in group_files(db, day_from, day_to, parts):
        e, d = est(files.key), ed(files.key)
        assert e is not None and d is not None
        tasks.append(TouTask(files, e, d, cal, tz))
    done = run_job(spark, tasks, _tou_task, "TOU totals")
    if stats is not None:
        stats[:] = [s for s, _ in done]
    found = [frame for _, frame in done if frame.height]
    if not found:
        return pl.DataFrame(schema=tou.DAILY_TOU_SCHEMA)
    return pl.concat(found).sort("meter_id", "day")
