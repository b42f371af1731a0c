"""The bill run on Spark: pricing and writing per partition of accounts, each written once.

The driver does what the local run does up to pricing — candidates, reads, consumption,
estimates, the accounts refused before rating — with the same code (``billing.service``). It
then cuts the accounts into contiguous ranges (partitions), ships each range's rows to a Spark
task as Arrow, and each task runs :func:`billing.service.price_accounts` (the pure function the
local run calls on every account) and :func:`billing.service.write_chunk` (the local run's own
chunk writer) in one database transaction.

Exactly once: the transaction first inserts the partition's row in ``bill_run_partitions``
(run, job, partition). A retried task (the worker died, the node was lost) or a speculative
copy of the same job finds that row — on PostgreSQL it waits on the other attempt's insert
until that commits or rolls back — and writes nothing; a live bill's unique index stands behind
it. A job that fails outright leaves the run ``running`` with whole partitions written and
nothing half-written; the next ``bill run`` (either backend) resumes it over the accounts still
unbilled, as a new job.
"""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dianfei.core.errors import DianfeiError

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from dianfei.billing.service import BillRun, BillRunResult, PartitionedBackend
    from dianfei.core.clock import Period
    from dianfei.core.settings import Settings
    from dianfei.db.engine import Database
    from dianfei.tariffs.service import TariffCatalogue, TariffVersion

#: the summary each task returns (one row per partition)
SUMMARY_SCHEMA = ("part int, accounts long, billed long, exceptions long, amount long, "
                  "kwh long, attempt int, written boolean, price_s double, write_s double")


def partition_ranges(account_ids: pl.Series, partitions: int) -> pl.DataFrame:
    """account_id → part: contiguous ranges of the sorted ids, as even as the count allows (a
    range keeps a partition's index inserts together, as the local run's chunks do)."""
    import polars as pl

    ids = account_ids.unique().sort()
    n = max(1, min(partitions, ids.len()))
    return pl.DataFrame({"account_id": ids}).with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) * n // pl.len()).cast(pl.Int32).alias("part"))


def spark_backend(settings: Settings) -> PartitionedBackend:
    """The bill run's Spark backend, its session started now: a Spark that cannot run here is
    refused before the run starts (nothing read, nothing written)."""
    from dianfei.scale.session import spark_session

    spark_session(settings)
    return bill_on_spark


def bill_on_spark(db: Database, run: BillRun, per_meter: pl.DataFrame,
                  pre_exceptions: pl.DataFrame, catalogue: TariffCatalogue, period: Period,
                  in_force: dict[str, TariffVersion], posted_at: datetime, expected: int,
                  result: BillRunResult) -> None:
    """Price and write ``per_meter``'s accounts and ``pre_exceptions`` in Spark tasks; add
    what was written to ``result`` (kwh). ``expected``: the accounts this invocation must
    account for (billed or excepted) — checked per partition before any write and in total
    after the job."""
    import polars as pl

    from dianfei.billing.service import RunDates
    from dianfei.scale.session import SparkSettings, job_failed, spark_session

    spark = spark_session(db.settings)
    cfg = SparkSettings.from_settings(db.settings)
    rows = _rows(per_meter, pre_exceptions)
    accounts = rows["account_id"].n_unique()
    if accounts != expected:  # never bill silently short: stop before writing anything
        raise AssertionError(f"bill run {run.run_id}: {accounts} accounts to bill or except "
                             f"of {expected} candidates")
    if accounts == 0:
        return
    t0 = time.perf_counter()
    parts = partition_ranges(rows["account_id"], cfg.default_partitions())
    n_parts = int(parts["part"].max()) + 1  # type: ignore[arg-type]
    labels = spread_labels(n_parts)
    # Int32: the labels were chosen by the hash of an int (a long hashes differently)
    rows = rows.join(parts.with_columns(pl.col("part").replace_strict(labels,
                                                                      return_dtype=pl.Int32)),
                     on="account_id", how="left")
    schema = dict(rows.schema)
    task = _PartitionTask(settings=db.settings, run=RunDates.of(run), catalogue=catalogue,
                          period=period, in_force=in_force, posted_at=posted_at,
                          job_id=uuid.uuid4().hex, schema=schema, fault=_fault_spec())
    # shipped through a staging directory beside the interval store (shared storage on a
    # cluster): Spark reads Parquet in the JVM, where createDataFrame from Arrow went through
    # Python row checks (10.9 s for 100,000 accounts' rows against 0.3 s this way)
    staging = db.settings.data_dir / "spark-staging" / f"{run.run_id}-{task.job_id}"
    try:
        write_staging(rows, staging)
        frame = spark.read.parquet(str(staging))
        t1 = time.perf_counter()
        try:
            summary = (frame.repartition(n_parts, "part").groupBy("part")
                       .applyInArrow(_as_function(task), SUMMARY_SCHEMA).toArrow())
        except Exception as exc:
            raise job_failed(exc, f"bill run {run.run_id}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.timings["spark_ship_s"] = t1 - t0
    result.timings["spark_job_s"] = time.perf_counter() - t1
    done = pl.from_arrow(summary)
    assert isinstance(done, pl.DataFrame)
    if done.height != n_parts or int(done["accounts"].sum()) != accounts:
        raise DianfeiError(f"bill run {run.run_id}: Spark returned {done.height} of {n_parts} "
                           f"partitions, {int(done['accounts'].sum())} of {accounts} accounts; "
                           "the run stays open: run it again to finish")
    result.kwh += int(done["kwh"].sum())
    result.timings["spark_partitions"] = float(n_parts)
    result.timings["spark_retried_partitions"] = float(done.filter(~pl.col("written")).height)
    # task time, summed over partitions (core-seconds) and the slowest partition
    result.timings["spark_price_core_s"] = float(done["price_s"].sum())
    result.timings["spark_write_core_s"] = float(done["write_s"].sum())
    result.timings["spark_slowest_partition_s"] = float(
        (done["price_s"] + done["write_s"]).max())  # type: ignore[arg-type]


def spread_labels(n: int) -> dict[int, int]:
    """Partition i → the label to ship it under, one per Spark partition. Spark places a group
    by ``pmod(hash(label), n)`` (:func:`spark_hash_int`): labels 0..n-1 would collide (two
    partitions of accounts in one task, a core idle, and a task retried for each of its
    partitions); these labels fall one in each of the n Spark partitions, so a task is one
    partition of accounts."""
    if n in _labels:
        return _labels[n]
    by_slot: dict[int, int] = {}
    label = 0
    while len(by_slot) < n:
        by_slot.setdefault(spark_hash_int(label) % n, label)
        label += 1
    _labels[n] = {i: by_slot[i] for i in range(n)}
    return _labels[n]


def spark_hash_int(value: int, seed: int = 42) -> int:
    """Spark's ``hash()`` of an int column: Murmur3 x86 32-bit of the 4 bytes, seed 42 (what
    its hash partitioning uses), as a signed 32-bit int. Computed here because asking Spark
    costs a job (6 s when it is the session's first)."""
    mask = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    k1 = (value & mask) * 0xCC9E2D51 & mask
    k1 = rotl(k1, 15) * 0x1B873593 & mask
    h1 = rotl((seed & mask) ^ k1, 13)
    h1 = (h1 * 5 + 0xE6546B64) & mask
    h1 ^= 4
    h1 ^= h1 >> 16
    h1 = h1 * 0x85EBCA6B & mask
    h1 ^= h1 >> 13
    h1 = h1 * 0xC2B2AE35 & mask
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 & 0x80000000 else h1


#: labels by partition count (Spark's hash does not change within a process)
_labels: dict[int, dict[int, int]] = {}


def _as_function(task: _PartitionTask) -> Any:
    """A plain function: PySpark picks the kind of a grouped Arrow function from its type
    hints, which a callable object does not carry."""
    import pyarrow as pa

    def bill_partition(table: pa.Table) -> pa.Table:
        return task(table)

    # real classes, not the strings ``from __future__ import annotations`` leaves behind
    bill_partition.__annotations__ = {"table": pa.Table, "return": pa.Table}
    return bill_partition


def write_staging(rows: pl.DataFrame, staging: Path) -> None:
    """The rows as Parquet files (a few per partition), written under a temporary name and
    renamed: Spark never reads a half-written staging directory."""
    import polars as pl

    tmp = staging.with_name(staging.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # Spark has no unsigned integers and no column of type null; the task casts back
    fit: dict[str, pl.DataType] = {
        c: pl.Int64() for c, t in rows.schema.items() if t.is_unsigned_integer()}
    fit |= {c: pl.String() for c, t in rows.schema.items() if t == pl.Null}
    for (part,), group in rows.cast(fit).group_by("part"):  # type: ignore[arg-type]
        group.write_parquet(tmp / f"part-{part}.parquet", statistics=False)
    tmp.rename(staging)


def _rows(per_meter: pl.DataFrame, pre_exceptions: pl.DataFrame) -> pl.DataFrame:
    """One frame to ship: the per-meter rows, and the refused accounts as rows with a reason."""
    import polars as pl

    refused = pre_exceptions.select(
        "account_id", pl.col("reason").cast(pl.String), pl.col("detail").cast(pl.String))
    return pl.concat([per_meter.with_columns(pl.lit(None, pl.String).alias("reason"),
                                             pl.lit(None, pl.String).alias("detail")),
                      refused], how="diagonal_relaxed")


def _fault_spec() -> str | None:
    """The crash tests' fault point, read on the driver and sent with the tasks (an executor's
    environment is the cluster's, not the caller's)."""
    import os

    from dianfei.core.faults import ENV

    return os.environ.get(ENV)


class _PartitionTask:
    """What a Spark task runs on one partition of accounts (pickled with its arguments)."""

    def __init__(self, *, settings: Any, run: Any, catalogue: Any, period: Any,
                 in_force: dict[str, Any], posted_at: datetime, job_id: str,
                 schema: dict[str, Any], fault: str | None) -> None:
        self.settings, self.run, self.catalogue, self.period = settings, run, catalogue, period
        self.in_force, self.posted_at, self.job_id = in_force, posted_at, job_id
        self.schema, self.fault = schema, fault

    def __call__(self, table: pa.Table) -> pa.Table:
        import polars as pl
        import pyarrow as pa

        from dianfei.billing.service import price_accounts, write_partition
        from dianfei.core.faults import kill_point

        t0 = time.perf_counter()
        rows = pl.from_arrow(table)
        assert isinstance(rows, pl.DataFrame)
        # Spark hands timestamps back in its session zone and integers widened: the schema the
        # driver shipped is the one the pricing code was written for
        rows = rows.select([pl.col(c).cast(t) for c, t in self.schema.items()])
        part = int(rows["part"][0])
        refused = rows.filter(pl.col("reason").is_not_null()).select(
            "account_id", "reason", "detail")
        per_meter = rows.filter(pl.col("reason").is_null()).drop("reason", "detail", "part")
        frames = price_accounts(per_meter, refused, self.catalogue, self.period, self.in_force,
                                self.run)
        accounts = rows["account_id"].n_unique()
        if frames.bills.height + frames.exceptions.height != accounts:
            raise AssertionError(  # before any write, as the local run checks
                f"bill run {self.run.run_id} partition {part}: {frames.bills.height} billed + "
                f"{frames.exceptions.height} excepted of {accounts} accounts")
        if self.fault:
            _arm(self.fault)
            kill_point("spark.partition_priced")  # the crash test kills the task here
        t1 = time.perf_counter()
        summary = write_partition(_database(self.settings), self.run, self.job_id, part,
                                  accounts, frames, self.posted_at, _attempt())
        # per-partition throughput, the figures behind docs/scaling.md's projection
        summary["price_s"], summary["write_s"] = t1 - t0, time.perf_counter() - t1
        if self.fault and summary["written"]:
            kill_point("spark.partition_written")  # the crash test kills the task here
        return pa.table({k: [v] for k, v in summary.items()}, schema=pa.schema([
            ("part", pa.int32()), ("accounts", pa.int64()), ("billed", pa.int64()),
            ("exceptions", pa.int64()), ("amount", pa.int64()), ("kwh", pa.int64()),
            ("attempt", pa.int32()), ("written", pa.bool_()), ("price_s", pa.float64()),
            ("write_s", pa.float64())]))


_databases: dict[str, Database] = {}


def _database(settings: Any) -> Database:
    """One engine per executor process and database (a Python worker is reused across tasks)."""
    from dianfei.db.engine import open_database

    db = _databases.get(settings.database_url)
    if db is None:
        db = _databases[settings.database_url] = open_database(settings, migrate_schema=False)
    return db


def _attempt() -> int:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    return int(ctx.attemptNumber()) if ctx is not None else 0


def _arm(spec: str) -> None:
    import os

    from dianfei.core import faults

    if os.environ.get(faults.ENV) != spec:
        os.environ[faults.ENV] = spec
        faults.reset()
