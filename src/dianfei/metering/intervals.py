"""The interval store (区间电量/负荷曲线): Parquet files partitioned by business month and meter
group, with a catalogue table in the database.

Layout: ``{data_dir}/intervals/month=YYYY-MM/group=GG/<batch_id>-<chunk>.parquet``; the month
is the Asia/Shanghai month of the interval start ``ts``, the group ``meter_group(meter_id)``.
Files hold ``meter_id, ts, minutes, wh, batch_id`` (wh = watt-hours, 0.001 kWh, exact
integers), sorted by (meter_id, ts) as the import delivered them. One partition per month (not
per day) keeps both shapes efficient: a wide day of a million meters is 16 files, and two years
of ten meters is 25 files instead of one per day (7,300): a month of an import chunk with fewer
rows than one row group (``MIXED_MAX_ROWS``) is one file for every group (``group=all``,
catalogued with group ``MIXED_GROUP``), which readers of any group open. The catalogue row of a
file names its first business ``day`` and its ``min_ts``/``max_ts``, so a reader of some days
opens only the files that overlap them and filters rows by ``ts`` (row-group statistics skip the
rest). Stores written before this layout (``day=YYYY-MM-DD/…``) are read the same way.

Rules the writer keeps so that readers need no clean-up:
- a (meter, ts) is stored once, by the first import that brought it; later rows for it are
  duplicates (same value), within-import duplicates (``interval_duplicates``) or conflicts
  (rejected, ``conflicts_with_stored``);
- a file is written to a temporary name and renamed into place (atomic), and only files named in
  the ``interval_files`` catalogue are visible; a batch's catalogue rows are inserted in the
  transaction that finishes the batch, so a crash never leaves a half-visible import;
- interval imports are serialised (an advisory lock on PostgreSQL, the write lock on SQLite), so
  two concurrent imports cannot both store the same (meter, ts).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, text

if TYPE_CHECKING:
    import polars as pl

    from dianfei.db.engine import Database

#: meters are spread over this many groups per month (file size vs file count)
GROUPS = 16
#: the catalogue's group of a file holding rows of several groups (``group=all``): what an
#: import writes for a month with fewer rows than ``MIXED_MAX_ROWS`` (one row group)
MIXED_GROUP = -1
MIXED_MAX_ROWS = 256 * 1024

INTERVAL_SCHEMA_NAMES = ("meter_id", "ts", "minutes", "wh", "batch_id")


def interval_schema() -> dict[str, Any]:
    import polars as pl

    return {"meter_id": pl.String, "ts": pl.Datetime("us", "UTC"), "minutes": pl.Int16,
            "wh": pl.Int64, "batch_id": pl.String}


def meter_group(meter_id: str) -> int:
    """The store partition of a meter: CRC-32 of its id modulo ``GROUPS`` (stable forever)."""
    return zlib.crc32(meter_id.encode("utf-8")) % GROUPS


_GROUP_CACHE: dict[str, int] = {}


def group_column(meter_ids: pl.Series) -> pl.Series:
    """``meter_group`` of every element, computed once per distinct meter (cached)."""
    import polars as pl

    uniq = meter_ids.unique().to_list()
    missing = [m for m in uniq if m not in _GROUP_CACHE]
    if len(_GROUP_CACHE) > 5_000_000:
        _GROUP_CACHE.clear()
    for m in missing:
        _GROUP_CACHE[m] = meter_group(m)
    mapping = {m: _GROUP_CACHE[m] for m in uniq}
    return meter_ids.replace_strict(mapping, return_dtype=pl.Int16)


def store_root(db: Database) -> Path:
    return Path(db.settings.data_dir) / "intervals"


def lock_store(conn: Connection) -> None:
    """Serialise interval imports for the rest of the caller's transaction."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('dianfei.interval_store'))"))
    else:
        # any write takes SQLite's single write lock until the transaction ends
        conn.execute(text("UPDATE import_batches SET status = status WHERE 1 = 0"))


@dataclass(frozen=True)
class StoredFile:
    """A file of the store (catalogued, or written by the running batch and not yet)."""

    day: date
    group: int
    path: str  # relative to store_root
    batch_id: str
    rows: int
    min_ts: datetime
    max_ts: datetime


def catalogued_files(conn: Connection, groups: Iterable[int], ts_from: datetime,
                     ts_to: datetime) -> list[StoredFile]:
    """Catalogued files of the given groups (and files of every group) holding rows in
    [ts_from, ts_to]."""
    from dianfei.db.frames import bind_params

    group_set = set(groups)
    if not group_set:
        return []
    # a file's first day is at most its rows' days, and no earlier than the month of ts_from
    first = business_day(ts_from).replace(day=1)
    sql = ("SELECT day, meter_group, path, batch_id, rows, min_ts, max_ts FROM interval_files "
           "WHERE day >= :d0 AND day <= :d1 AND max_ts >= :lo AND min_ts <= :hi")
    params = bind_params(conn, {"d0": first, "d1": business_day(ts_to), "lo": ts_from,
                                "hi": ts_to})
    out = []
    for row in conn.execute(text(sql), params):
        if int(row[1]) not in group_set and int(row[1]) != MIXED_GROUP:
            continue
        day = row[0] if isinstance(row[0], date) else date.fromisoformat(str(row[0]))
        lo, hi = _instant(row[5]), _instant(row[6])
        out.append(StoredFile(day, int(row[1]), str(row[2]), str(row[3]), int(row[4]), lo, hi))
    return out


def business_day(instant: datetime) -> date:
    """The store's (Asia/Shanghai) date of an instant."""
    from dianfei.core.clock import BUSINESS_TZ

    return instant.astimezone(BUSINESS_TZ).date()


def _instant(value: Any) -> datetime:
    from datetime import UTC

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def read_files(root: Path, files: Sequence[StoredFile], meter_ids: pl.Series | None = None,
               ts_from: datetime | None = None, ts_to: datetime | None = None) -> pl.DataFrame:
    """The rows of ``files`` (meter_id, ts, wh, batch_id), filtered by meter and time."""
    import polars as pl

    schema = interval_schema()
    if not files:
        return pl.DataFrame(schema=schema).select("meter_id", "ts", "wh", "batch_id")
    lf = pl.scan_parquet([str(root / f.path) for f in files], schema=schema)
    preds = []
    if ts_from is not None:
        preds.append(pl.col("ts") >= ts_from)
    if ts_to is not None:
        preds.append(pl.col("ts") <= ts_to)
    if meter_ids is not None:
        preds.append(pl.col("meter_id").is_in(meter_ids.unique().implode()))
    if preds:
        lf = lf.filter(*preds)
    return lf.select("meter_id", "ts", "wh", "batch_id").collect()


def write_partition(root: Path, frame: pl.DataFrame, *, month: date, day: date, group: int,
                    batch_id: str, chunk: int, sync: bool = True) -> StoredFile:
    """Write one partition file atomically (temporary name, fsync, rename). ``frame`` has the
    store's columns, all in business month ``month``; ``day`` is its first business day.

    ``sync=False`` leaves the fsync to the caller, who must call :func:`sync_files` before the
    file is catalogued (an uncatalogued file is invisible, so a crash in between loses nothing
    that was visible)."""
    folder = "all" if group == MIXED_GROUP else f"{group:02d}"
    rel = f"month={month:%Y-%m}/group={folder}/{batch_id}-{chunk:05d}.parquet"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(tmp, compression="lz4", statistics=True, row_group_size=256 * 1024)
    if sync:
        _fsync(tmp)
    os.replace(tmp, path)
    lo, hi = frame["ts"].min(), frame["ts"].max()
    assert isinstance(lo, datetime) and isinstance(hi, datetime)
    return StoredFile(day, group, rel, batch_id, frame.height, lo, hi)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_files(root: Path, files: Sequence[StoredFile]) -> None:
    """Make files written with ``sync=False`` durable, before they are catalogued.

    On Linux one ``syncfs(2)`` of the store's file system: a long history is hundreds or
    thousands of small files (two years of ten meters: 240), and an fsync each — one journal
    commit each — was a good part of such an import. syncfs also makes the renames durable,
    which an fsync of the file alone does not. Elsewhere each file is fsynced."""
    if not files:
        return
    syncfs = _syncfs()
    if syncfs is not None:
        import ctypes

        fd = os.open(root, os.O_RDONLY)
        try:
            if syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"syncfs of the interval store {root}: {os.strerror(err)}")
        finally:
            os.close(fd)
        return
    for f in files:
        _fsync(root / f.path)


def _syncfs() -> Any:
    """libc's ``syncfs`` (Linux), or None where there is none."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def catalogue(conn: Connection, files: Sequence[StoredFile]) -> None:
    """Make files visible (in the caller's transaction — the one that finishes the batch)."""
    import polars as pl

    from dianfei.db.bulk import write_frame

    if not files:
        return
    write_frame(conn, "interval_files", pl.DataFrame({
        "day": [f.day for f in files],
        "meter_group": [f.group for f in files],
        "path": [f.path for f in files],
        "batch_id": [f.batch_id for f in files],
        "rows": [f.rows for f in files],
        "min_ts": pl.Series([f.min_ts for f in files]).dt.convert_time_zone("UTC"),
        "max_ts": pl.Series([f.max_ts for f in files]).dt.convert_time_zone("UTC"),
    }, schema_overrides={"meter_group": pl.Int32, "rows": pl.Int64}))


def window_bounds(day_from: date | None, day_to: date | None) -> tuple[datetime | None,
                                                                    datetime | None]:
    """[start of ``day_from``, start of the day after ``day_to``) in the business zone: the
    ``ts`` bounds :func:`scan` filters rows by (None where a day is not given)."""
    from dianfei.core.clock import start_of_day

    lo = start_of_day(day_from) if day_from is not None else None
    hi = start_of_day(day_to + timedelta(days=1)) if day_to is not None else None
    return lo, hi


def window_files(db: Database, day_from: date | None = None,
                 day_to: date | None = None) -> pl.DataFrame:
    """The catalogued files (``meter_group``, ``path`` relative to :func:`store_root``) that may
    hold rows of the business days, in catalogue order: what :func:`scan` opens, and what a
    Spark task of one meter group is handed (its group's files and the mixed ones)."""
    import polars as pl

    from dianfei.db.frames import read_frame

    sql = "SELECT meter_group, path FROM interval_files WHERE 1 = 1"
    params: dict[str, Any] = {}
    lo, _ = window_bounds(day_from, day_to)
    if lo is not None:
        sql += " AND max_ts >= :lo"
        params["lo"] = lo
    if day_to is not None:
        sql += " AND day <= :d1"
        params["d1"] = day_to
    sql += " ORDER BY id"
    return read_frame(db.engine, sql, params, schema={"meter_group": pl.Int64, "path": pl.String})


def scan(db: Database, *, day_from: date | None = None, day_to: date | None = None,
         meter_ids: Sequence[str] | None = None) -> pl.LazyFrame:
    """The stored intervals as a lazy frame.

    Columns: ``meter_id`` Utf8, ``ts`` Datetime("us", "UTC") (interval start), ``minutes``
    Int16, ``wh`` Int64 (watt-hours; negative values as received), ``batch_id`` Utf8. Exactly
    one row per (meter_id, ts): the first value ever stored. ``day_from``/``day_to`` are business
    days (inclusive) of ``ts``: only the files overlapping them are opened, and their rows are
    filtered by ``ts``.
    """
    import polars as pl

    cat = window_files(db, day_from, day_to)
    lo, hi = window_bounds(day_from, day_to)
    if meter_ids is not None:
        groups = {meter_group(m) for m in meter_ids} | {MIXED_GROUP}
        cat = cat.filter(pl.col("meter_group").is_in(sorted(groups)))
    schema = interval_schema()
    if cat.height == 0:
        return pl.LazyFrame(schema=schema)
    root = store_root(db)
    lf = pl.scan_parquet([str(root / p) for p in cat["path"].to_list()], schema=schema)
    preds = []
    if lo is not None:
        preds.append(pl.col("ts") >= lo)
    if hi is not None:
        preds.append(pl.col("ts") < hi)
    if meter_ids is not None:
        preds.append(pl.col("meter_id").is_in(list(meter_ids)))
    return lf.filter(*preds) if preds else lf


def scan_group(root: Path, own: Sequence[str], mixed: Sequence[str], group: int,
               lo: datetime | None = None, hi: datetime | None = None) -> pl.LazyFrame:
    """The stored rows of one meter group in [lo, hi), as :func:`scan` gives them for that
    group's meters: the group's own files (``own``, paths relative to ``root``) hold only its
    meters; the mixed files (``group=all``) hold every group's, so only this group's rows are
    kept. What a Spark task of one group reads, without the database."""
    import polars as pl

    schema = interval_schema()
    parts = []
    if own:
        parts.append(pl.scan_parquet([str(root / p) for p in own], schema=schema))
    if mixed:
        lf = pl.scan_parquet([str(root / p) for p in mixed], schema=schema)
        # mixed files are small (under one row group each): their meter ids are read once
        ids = lf.select(pl.col("meter_id").unique()).collect()["meter_id"]
        mine = ids.filter(group_column(ids) == group)
        parts.append(lf.filter(pl.col("meter_id").is_in(mine.implode())))
    if not parts:
        return pl.LazyFrame(schema=schema)
    out = pl.concat(parts, how="vertical")
    preds = []
    if lo is not None:
        preds.append(pl.col("ts") >= lo)
    if hi is not None:
        preds.append(pl.col("ts") < hi)
    return out.filter(*preds) if preds else out


#: the first span a lead-in search looks back over (most meters draw something in the evening
#: before midnight, so a nightly run reads a quarter of the day before); each further step four
#: times as far
LEAD_IN_FIRST_SPAN = timedelta(hours=6)


def _context_frame(db: Database, files: Sequence[StoredFile], meter_ids: pl.Series,
                   lo: datetime, hi: datetime) -> pl.DataFrame:
    """Rows of ``meter_ids`` in [lo, hi) from ``files``: meter_id, ts, minutes, wh."""
    import polars as pl

    schema = interval_schema()
    cols = ("meter_id", "ts", "minutes", "wh")
    if not files:
        return pl.DataFrame(schema={k: schema[k] for k in cols})
    root = store_root(db)
    return (pl.scan_parquet([str(root / f.path) for f in files], schema=schema)
            .filter(pl.col("ts") >= lo, pl.col("ts") < hi,
                    pl.col("meter_id").is_in(meter_ids.implode()))
            .select(cols).collect())


def _store_bounds(db: Database) -> tuple[datetime, datetime] | None:
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT MIN(min_ts), MAX(max_ts) FROM interval_files")).one()
    if row[0] is None:
        return None
    return _instant(row[0]), _instant(row[1])


def lead_in(db: Database, before: datetime, meter_ids: pl.Series,
            installed: pl.DataFrame | None = None) -> pl.DataFrame:
    """Each meter's stored rows before ``before`` from its last non-zero reading on (all of its
    rows when it has none): what a run over a window starting at ``before`` needs to see a gap
    or a run of zeros that began earlier with its true start (``meter_id, ts, minutes, wh``, in
    meter and time order).

    Searched backwards a span at a time — six hours, then four times as far each step — and only for
    the meters not yet settled, so a daily run reads about the day before, not the history.
    ``installed`` (``meter_id, since``: the instant the meter's installation day began) settles
    a meter once the search passes it — the import refuses rows before installation — so a new
    meter does not send the search back to the store's first day."""
    import polars as pl

    found: list[pl.DataFrame] = []
    need = meter_ids.unique()
    bounds = _store_bounds(db)
    hi, span = before, LEAD_IN_FIRST_SPAN

    def unsettled(need: pl.Series, lo: datetime) -> pl.Series:
        if installed is None:
            return need
        done = installed.filter(pl.col("since") >= lo)["meter_id"]
        return need.filter(~need.is_in(done.implode()))

    need = unsettled(need, before)
    while bounds is not None and need.len() and hi > bounds[0]:
        lo = hi - span
        with db.engine.connect() as conn:
            files = catalogued_files(conn, {meter_group(m) for m in need.to_list()}, lo,
                                     hi - timedelta(microseconds=1))
        rows = _context_frame(db, files, need, lo, hi)
        last_nonzero = (rows.filter(pl.col("wh") != 0).group_by("meter_id")
                        .agg(pl.col("ts").max().alias("nz")))
        found.append(rows.join(last_nonzero, on="meter_id", how="left")
                     .filter(pl.col("nz").is_null() | (pl.col("ts") >= pl.col("nz")))
                     .drop("nz"))
        need = unsettled(need.filter(~need.is_in(last_nonzero["meter_id"].implode())), lo)
        hi, span = lo, span * 4
    if not found:
        return _context_frame(db, [], meter_ids, before, before)
    return pl.concat(found).sort("meter_id", "ts")


def lead_out(db: Database, after: datetime, meter_ids: pl.Series) -> pl.DataFrame:
    """Each meter's first stored row at or after ``after`` (``meter_id, ts, minutes, wh``): a
    gap that ends after a window is seen from inside it. Searched forwards like :func:`lead_in`."""
    import polars as pl

    found: list[pl.DataFrame] = []
    need = meter_ids.unique()
    bounds = _store_bounds(db)
    lo, span = after, LEAD_IN_FIRST_SPAN
    while bounds is not None and need.len() and lo <= bounds[1]:
        hi = lo + span
        with db.engine.connect() as conn:
            files = catalogued_files(conn, {meter_group(m) for m in need.to_list()}, lo,
                                     hi - timedelta(microseconds=1))
        first = (_context_frame(db, files, need, lo, hi).sort("meter_id", "ts")
                 .group_by("meter_id", maintain_order=True).first())
        found.append(first)
        need = need.filter(~need.is_in(first["meter_id"].implode()))
        lo, span = hi, span * 4
    if not found:
        return _context_frame(db, [], meter_ids, after, after)
    return pl.concat(found).sort("meter_id", "ts")


def duplicates(db: Database, *, day_from: date | None = None,
               day_to: date | None = None) -> pl.DataFrame:
    """Second-and-later rows for the same (meter_id, ts) received within one import:
    ``batch_id, meter_id, ts, wh, first_wh`` (``first_wh`` = the value stored). Conflicting
    duplicates are those with ``wh != first_wh``."""
    import polars as pl

    from dianfei.db.frames import read_frame

    sql = ("SELECT d.batch_id, d.meter_id, d.ts, d.wh, d.first_wh FROM interval_duplicates d "
           "JOIN import_batches b ON b.batch_id = d.batch_id WHERE b.status = 'finished'")
    params: dict[str, Any] = {}
    if day_from is not None:
        sql += " AND d.day >= :d0"
        params["d0"] = day_from
    if day_to is not None:
        sql += " AND d.day <= :d1"
        params["d1"] = day_to
    sql += " ORDER BY d.id"
    return read_frame(db.engine, sql, params, instants=("ts",),
                      schema={"batch_id": pl.String, "meter_id": pl.String, "wh": pl.Int64,
                              "first_wh": pl.Int64})
