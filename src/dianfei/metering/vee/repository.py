"""Queries of VEE: reading the interval store, reads and meters; writing findings, estimates and
edits. All SQL of the package lives here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import polars as pl
from sqlalchemy import Connection, text

from dianfei.core.clock import start_of_day
from dianfei.db.bulk import write_frame
from dianfei.db.frames import read_frame
from dianfei.metering.vee.pipeline import DUPLICATE_SCHEMA, READ_SCHEMA

if TYPE_CHECKING:
    from dianfei.db.engine import Database


def tz_name(db: Database) -> str:
    return db.settings.timezone


def instants(db: Database, day_from: date | None, day_to: date | None) -> tuple[datetime | None,
                                                                              datetime | None]:
    """[start of day_from, start of the day after day_to) in the business zone, as UTC."""
    tz = ZoneInfo(tz_name(db))
    lo = start_of_day(day_from, tz) if day_from else None
    hi = start_of_day(day_to + timedelta(days=1), tz) if day_to else None
    return lo, hi


def window(column: str, lo: datetime | None, hi: datetime | None,
           params: dict[str, Any]) -> str:
    """`` AND column >= :lo AND column < :hi`` for the bounds that are given."""
    sql = ""
    if lo is not None:
        sql += f" AND {column} >= :lo"
        params["lo"] = lo
    if hi is not None:
        sql += f" AND {column} < :hi"
        params["hi"] = hi
    return sql


def intervals(db: Database, day_from: date | None = None, day_to: date | None = None,
              meter_ids: Sequence[str] | None = None) -> pl.LazyFrame:
    """Metered intervals from the store (meter_id, ts, minutes, wh, batch_id)."""
    from dianfei.metering import intervals as store

    return store.scan(db, day_from=day_from, day_to=day_to, meter_ids=meter_ids)


def context(db: Database, day_from: date | None,
            day_to: date | None) -> Callable[[pl.Series], tuple[pl.DataFrame, pl.DataFrame]]:
    """The rows around a window of days (``pipeline.run``'s ``context``): each meter's rows
    before ``day_from`` from its last non-zero reading on, and its first row after ``day_to``."""
    from dianfei.metering import intervals as store
    from dianfei.metering.vee.rules import CONTEXT_SCHEMA

    lo, hi = instants(db, day_from, day_to)
    installed: list[pl.DataFrame] = []  # read once, on first use (a run by meter group calls often)

    def since() -> pl.DataFrame:
        # no reading precedes a meter's installation day (the import refuses them)
        if not installed:
            installed.append(meters(db).filter(pl.col("installed_on").is_not_null())
                             .select("meter_id", pl.col("installed_on").cast(pl.Datetime("us"))
                                     .dt.replace_time_zone(tz_name(db))
                                     .dt.convert_time_zone("UTC").alias("since")))
        return installed[0]

    def around(meter_ids: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
        none = pl.DataFrame(schema=CONTEXT_SCHEMA)
        before = none
        if lo is not None:
            before = store.lead_in(db, lo, meter_ids, since())
        after = store.lead_out(db, hi, meter_ids) if hi is not None else none
        return before.cast(CONTEXT_SCHEMA), after.cast(CONTEXT_SCHEMA)

    return around


def duplicates(db: Database, day_from: date | None = None, day_to: date | None = None) -> pl.DataFrame:
    from dianfei.metering import intervals as store

    return store.duplicates(db, day_from=day_from, day_to=day_to).cast(DUPLICATE_SCHEMA)


def register_reads(db: Database, day_from: date | None = None, day_to: date | None = None,
                   meter_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """Register reads (0.01 units) in the window, widened by a day either side so that the
    reads bounding the window's intervals are there."""
    lo, hi = instants(db, day_from, day_to)
    params: dict[str, Any] = {}
    # a day either side: the reads that bound the window's first and last days
    sql = ("SELECT meter_id, read_at, register, value, source FROM register_reads WHERE 1 = 1"
           + window("read_at", lo - timedelta(days=1) if lo is not None else None,
                    hi + timedelta(days=1) if hi is not None else None, params))
    frame = read_frame(db.engine, sql, params, instants=("read_at",),
                       schema={"meter_id": pl.String, "register": pl.String, "value": pl.Int64,
                               "source": pl.String})
    if meter_ids is not None:
        frame = frame.filter(pl.col("meter_id").is_in(list(meter_ids)))
    return frame.select(list(READ_SCHEMA.names()))


def meters(db: Database) -> pl.DataFrame:
    """Every meter with its register digits, place in the network and dates."""
    sql = ("SELECT m.meter_id, m.digits, m.comm_address, m.installed_on, m.removed_on, "
           "c.region_id, c.station_id, c.customer_class AS meter_class FROM meters m "
           "LEFT JOIN accounts a ON a.account_id = m.account_id "
           "LEFT JOIN customers c ON c.customer_id = a.customer_id")
    return read_frame(db.engine, sql, dates=("installed_on", "removed_on"),
                      schema={"meter_id": pl.String, "digits": pl.Int64, "comm_address": pl.String,
                              "region_id": pl.String, "station_id": pl.String,
                              "meter_class": pl.String})


def estimates(db: Database, day_from: date | None = None, day_to: date | None = None,
              meter_ids: Sequence[str] | None = None, *,
              conn: Connection | None = None) -> pl.DataFrame:
    """Stored estimates (read on ``conn`` when given: it sees that transaction's own)."""
    lo, hi = instants(db, day_from, day_to)
    sql = ("SELECT meter_id, ts, minutes, wh, method, inputs, run_id FROM vee_estimates "
           "WHERE 1 = 1")
    params: dict[str, Any] = {}
    sql += window("ts", lo, hi, params)
    frame = read_frame(conn if conn is not None else db.engine, sql, params, instants=("ts",),
                       schema={"meter_id": pl.String, "minutes": pl.Int16, "wh": pl.Int64,
                               "method": pl.String, "inputs": pl.String, "run_id": pl.String})
    if meter_ids is not None:
        frame = frame.filter(pl.col("meter_id").is_in(list(meter_ids)))
    return frame


def edits(db: Database, day_from: date | None = None, day_to: date | None = None,
          meter_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """Every manual edit in the window, oldest first (the audit record)."""
    lo, hi = instants(db, day_from, day_to)
    sql = ("SELECT edit_id, meter_id, ts, minutes, old_wh, old_source, new_wh, reason, edited_by, "
           "edited_at FROM vee_edits WHERE 1 = 1")
    params: dict[str, Any] = {}
    sql += window("ts", lo, hi, params) + " ORDER BY edit_id"
    frame = read_frame(db.engine, sql, params, instants=("ts", "edited_at"),
                       schema={"edit_id": pl.Int64, "meter_id": pl.String, "minutes": pl.Int16,
                               "old_wh": pl.Int64, "old_source": pl.String, "new_wh": pl.Int64,
                               "reason": pl.String, "edited_by": pl.String})
    if meter_ids is not None:
        frame = frame.filter(pl.col("meter_id").is_in(list(meter_ids)))
    return frame


def stored_findings(db: Database) -> pl.DataFrame:
    return read_frame(db.engine, "SELECT rule, meter_id, ts, ref, value_wh, detail, run_id "
                      "FROM vee_findings ORDER BY rule, meter_id, ts, ref", instants=("ts",),
                      schema={"rule": pl.String, "meter_id": pl.String, "ref": pl.String,
                              "value_wh": pl.Int64, "detail": pl.String, "run_id": pl.String})


def insert_new(conn: Connection, table: str, frame: pl.DataFrame, key: Sequence[str], *,
               copy_to: str | None = None) -> int:
    """Insert the rows of ``frame`` whose ``key`` is not in ``table`` yet; returns how many.

    Idempotency by the unique index: rows go to a temporary table (COPY on PostgreSQL), then
    ``INSERT … SELECT … ON CONFLICT DO NOTHING`` — never check-then-insert. ``copy_to``: a
    table that gets every row of ``frame`` too, copied from the staged rows in SQL (a second
    bulk write from Python would cost as much as the first).
    """
    if frame.height == 0:
        return 0
    cols = ", ".join(frame.columns)
    stage = f"tmp_{table}"
    conn.execute(text(f"DROP TABLE IF EXISTS {stage}"))
    conn.execute(text(f"CREATE TEMPORARY TABLE {stage} AS SELECT {cols} FROM {table} WHERE 1 = 0"))
    try:
        write_frame(conn, stage, frame)
        result = conn.execute(text(
            f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} WHERE true "
            f"ON CONFLICT ({', '.join(key)}) DO NOTHING"))
        added = int(result.rowcount or 0)
        if copy_to is not None:
            conn.execute(text(f"INSERT INTO {copy_to} ({cols}) SELECT {cols} FROM {stage}"))
        return added
    finally:
        conn.execute(text(f"DROP TABLE {stage}"))


def insert_run(conn: Connection, row: dict[str, Any]) -> None:
    conn.execute(text("INSERT INTO vee_runs (run_id, started_at, finished_at, settings, "
                      "findings_added, estimates_added, scope) VALUES (:run_id, :started_at, "
                      ":finished_at, :settings, :findings_added, :estimates_added, :scope)"),
                 _naive(conn, row))


def _naive(conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """Instants as naive UTC text/values, as UTCDateTime stores them."""
    from datetime import UTC

    out = {}
    for k, v in row.items():
        if isinstance(v, datetime):
            v = v.astimezone(UTC).replace(tzinfo=None)
            if conn.dialect.name == "sqlite":
                v = v.strftime("%Y-%m-%d %H:%M:%S.%f")
        out[k] = v
    return out


def insert_edit(conn: Connection, row: dict[str, Any]) -> int:
    result = conn.execute(text(
        "INSERT INTO vee_edits (meter_id, ts, minutes, old_wh, old_source, new_wh, reason, "
        "edited_by, edited_at) VALUES (:meter_id, :ts, :minutes, :old_wh, :old_source, :new_wh, "
        ":reason, :edited_by, :edited_at) RETURNING edit_id"), _naive(conn, row))
    return int(result.scalar_one())


# ------------------------------------------------------------------ what the nightly run examines


def pending(conn: Connection) -> tuple[list[str], list[date]]:
    """The import batches no run has examined yet, and the business days their rows fall on
    (interval files and within-import duplicates)."""
    from dianfei.metering import intervals as store

    fresh = "NOT EXISTS (SELECT 1 FROM vee_examined_batches e WHERE e.batch_id = {t}.batch_id)"
    batches: set[str] = set()
    days: set[date] = set()
    rows = conn.execute(text("SELECT f.batch_id, f.min_ts, f.max_ts FROM interval_files f WHERE "
                             + fresh.format(t="f")))
    for batch_id, lo, hi in rows:
        batches.add(str(batch_id))
        first, last = store.business_day(_utc(lo)), store.business_day(_utc(hi))
        days.update(first + timedelta(days=i) for i in range((last - first).days + 1))
    for batch_id, day in conn.execute(text(
            "SELECT DISTINCT d.batch_id, d.day FROM interval_duplicates d WHERE "
            + fresh.format(t="d"))):
        batches.add(str(batch_id))
        days.add(day if isinstance(day, date) else date.fromisoformat(str(day)))
    return sorted(batches), sorted(days)


def _utc(value: Any) -> datetime:
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def mark_examined(conn: Connection, batch_ids: Sequence[str], run_id: str, at: datetime) -> None:
    if not batch_ids:
        return
    frame = pl.DataFrame({"batch_id": list(batch_ids), "run_id": run_id,
                          "examined_at": pl.Series([at] * len(batch_ids))
                          .dt.convert_time_zone("UTC")})
    write_frame(conn, "vee_examined_batches", frame)
