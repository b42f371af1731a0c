"""The one import path for meter data (抄表数据入库): files, DL/T 645 polls and MQTT all end here.

Every row of a batch ends in exactly one of three counts, and
``accepted + rejected + duplicates == rows`` is asserted for every chunk:

- **accepted**: stored — register reads in ``register_reads``, intervals in the Parquet store;
- **duplicates**: already stored with the same value (a replay, a re-imported file), or, for
  intervals, a second-or-later row for the same (meter, interval) within this batch (kept in
  ``interval_duplicates`` for VEE);
- **rejected**: with a stable reason code, to the quarantine table (and ``FILE.rejected.csv`` for
  files). Stored data is never overwritten: a different value for a stored (meter, register,
  instant) or (meter, interval) is rejected as ``conflicts_with_stored``.

Validation is done on whole columns (Polars): a chunk of a million rows is a handful of vectorised
passes. Each batch is recorded in ``import_batches`` (id, origin, file name and sha256, counts).

Non-file sources call :func:`ingest_reads` / :func:`ingest_intervals`; ``dianfei import`` feeds
the same loaders chunk by chunk (``metering.imports``).
"""

from __future__ import annotations

import csv
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from dianfei.core.clock import Clock
from dianfei.core.csvsafe import safe_frame
from dianfei.core.errors import RetryableError, ValidationError
from dianfei.core.faults import kill_point
from dianfei.metering import intervals as store
from dianfei.metering.parsing import (
    DETAIL,
    REASON,
    business_day,
    flag,
    parse_decimal_units,
    parse_instants,
    quoted,
    require_text,
    start_reasons,
)
from dianfei.metering.registers import READ_SOURCES, REGISTERS

if TYPE_CHECKING:
    import polars as pl

    from dianfei.core.crypto import PiiCipher
    from dianfei.db.engine import Database

__all__ = ["IngestResult", "ingest_intervals", "ingest_reads"]

#: an interval larger than this (kWh) is a unit mistake, not consumption
MAX_INTERVAL_KWH_DIGITS = 9
#: a register value with more integer digits than this cannot come from a meter
MAX_REGISTER_DIGITS = 12
LINE = "line"
RAW = "_raw"
BUSINESS_TZ_NAME = "Asia/Shanghai"


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    rejected: int
    duplicates: int
    batch_id: str
    #: accepted register reads below the previous read (line, what): flagged at import
    read_backwards: tuple[tuple[int, str], ...] = ()
    #: the register reads this batch stored (meter_id, read_at, register), for plausibility
    new_reads: Any = None
    #: of those, how many were held as implausible (a VEE finding ``implausible_read``)
    held: int = 0

    def to_json(self) -> dict[str, int]:
        out = {"accepted": self.accepted, "rejected": self.rejected,
               "duplicates": self.duplicates}
        if self.read_backwards:
            out["read_backwards"] = len(self.read_backwards)
        if self.held:
            out["held"] = self.held
        return out


# --------------------------------------------------------------------------- batches


def new_batch_id(clock: Clock) -> str:
    """Sortable by start time, unique by a random suffix: ``20260301T081500-1a2b3c4d``."""
    return f"{clock.now():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def start_batch(db: Database, *, kind: str, origin: str, clock: Clock,
                file_name: str | None = None, interval_minutes: int | None = None) -> str:
    """Record the batch as running, committed at once: a batch that dies stays visible as such."""
    batch_id = new_batch_id(clock)
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO import_batches (batch_id, kind, origin, file_name, sha256, "
            "interval_minutes, status, data_rows, accepted, rejected, duplicates, started_at) "
            "VALUES (:b, :k, :o, :f, NULL, :m, 'running', 0, 0, 0, 0, :t)"),
            {"b": batch_id, "k": kind, "o": origin[:64], "f": file_name, "m": interval_minutes,
             "t": _db_instant(conn, clock.now())})
    return batch_id


def finish_batch(conn: Connection, batch_id: str, counts: Counts, clock: Clock,
                 sha256: str | None = None) -> None:
    conn.execute(text(
        "UPDATE import_batches SET status = 'finished', data_rows = :n, accepted = :a, "
        "rejected = :r, duplicates = :d, sha256 = :s, finished_at = :t WHERE batch_id = :b"),
        {"n": counts.rows, "a": counts.accepted, "r": counts.rejected, "d": counts.duplicates,
         "s": sha256, "t": _db_instant(conn, clock.now()), "b": batch_id})


def fail_batch(db: Database, batch_id: str, error: str, clock: Clock) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(
            "UPDATE import_batches SET status = 'failed', error = :e, finished_at = :t "
            "WHERE batch_id = :b"),
            {"e": error[:2000], "t": _db_instant(conn, clock.now()), "b": batch_id})


def _db_instant(conn: Connection, instant: datetime) -> Any:
    from datetime import UTC

    naive = instant.astimezone(UTC).replace(tzinfo=None)
    return naive.strftime("%Y-%m-%d %H:%M:%S.%f") if conn.dialect.name == "sqlite" else naive


@dataclass
class Counts:
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0

    def add(self, rows: int, accepted: int, rejected: int, duplicates: int) -> None:
        # the import's central promise: every row is accounted for, exactly once
        assert accepted + rejected + duplicates == rows, (rows, accepted, rejected, duplicates)
        self.rows += rows
        self.accepted += accepted
        self.rejected += rejected
        self.duplicates += duplicates


# --------------------------------------------------------------------------- rejected rows


#: how one field's value is shown where it is written in clear (None: as it is)
Mask = Callable[[str | None], str | None]


class RejectSink:
    """Rejected rows → the quarantine table (in the import's transaction) and, for files,
    ``FILE.rejected.csv`` (the original columns, then ``line``, ``reason``, ``detail``).

    With ``personal`` (field → mask, None for a field kept as it is; the import's fields with
    personal data), the row's text is sealed with ``cipher`` into ``raw_enc`` and both the clear
    copy (``raw``, the CSV file) and the detail carry the masked values only; a column the
    import does not know has its long numbers masked (it may hold an ID or an account)."""

    def __init__(self, conn: Connection, batch_id: str, fields: list[str],
                 csv_path: Path | None = None, *, personal: Mapping[str, Mask | None] | None = None,
                 cipher: PiiCipher | None = None) -> None:
        if personal and cipher is None:
            raise ValueError("a sink of personal data needs the cipher")
        self.conn = conn
        self.batch_id = batch_id
        self.fields = fields
        self.csv_path = csv_path
        self.personal = personal or None
        self.cipher = cipher
        self._fh: Any = None
        self._writer: Any = None
        if csv_path is not None:
            tmp = csv_path.with_name(csv_path.name + ".tmp")
            self._tmp = tmp
            self._fh = tmp.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._fh)
            self._writer.writerow([*fields, "line", "reason", "detail"])

    def add(self, rejected: pl.DataFrame) -> None:
        """``rejected`` has ``line``, ``_reason``, ``_detail``, ``_raw`` and the field columns."""
        import polars as pl

        from dianfei.db.bulk import write_frame

        if rejected.height == 0:
            return
        if RAW not in rejected.columns:
            fields = [c for c in self.fields if c in rejected.columns]
            rejected = rejected.with_columns(pl.concat_str(
                [pl.col(c).cast(pl.String).fill_null("") for c in fields], separator=",")
                .alias(RAW))
        sealed: pl.Expr | pl.Series = pl.lit(None, pl.String)
        if self.personal is not None:
            rejected, sealed = self._masked(rejected)
        clean = [pl.col(c).cast(pl.String).str.replace_all("\x00", "\\x00", literal=True)
                 for c in (REASON, DETAIL, RAW)]
        write_frame(self.conn, "import_quarantine", rejected.select(
            pl.lit(self.batch_id).alias("batch_id"), pl.col(LINE).cast(pl.Int64),
            clean[0].str.slice(0, 40).alias("reason"), clean[1].fill_null("").alias("detail"),
            clean[2].fill_null("").alias("raw"), sealed.alias("raw_enc")))
        if self._writer is not None:
            cols = [(pl.col(c).cast(pl.String) if c in rejected.columns
                     else pl.lit(None, pl.String)).alias(c) for c in self.fields]
            out = rejected.select(*cols, pl.col(LINE).cast(pl.String),
                                  pl.col(REASON).alias("reason"),
                                  pl.col(DETAIL).fill_null("").alias("detail"))
            self._writer.writerows(safe_frame(out).iter_rows())

    def _masked(self, rejected: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
        """The rows with their fields, detail and raw text masked, and the raw text sealed (one
        token per row, bound to this batch and the row's line)."""
        import polars as pl

        from dianfei.core.crypto import mask_digit_runs
        from dianfei.db.pii import QUARANTINE_RAW

        assert self.personal is not None and self.cipher is not None
        fields = [c for c in self.fields if c in rejected.columns]
        masked: dict[str, list[str | None]] = {c: [] for c in fields}
        details: list[str | None] = []
        raws: list[str] = []
        tokens: list[str | None] = []
        for row in rejected.select(LINE, DETAIL, RAW, *fields).iter_rows(named=True):
            detail = row[DETAIL]
            shown: list[str] = []
            for c in fields:
                value = None if row[c] is None else str(row[c])
                mask = self.personal.get(c, mask_digit_runs)
                out = value if mask is None else mask(value)
                if value and out != value and detail:
                    # the detail may quote the value (whole, or its first 60 characters)
                    detail = detail.replace(value, out or "").replace(value[:60], out or "")
                masked[c].append(out)
                shown.append(out or "")
            details.append(detail)
            raws.append(",".join(shown))
            tokens.append(self.cipher.encrypt(
                row[RAW] or None, QUARANTINE_RAW.context(self.batch_id, row[LINE])))
        rejected = rejected.with_columns(
            *[pl.Series(c, v, dtype=pl.String) for c, v in masked.items()],
            pl.Series(DETAIL, details, dtype=pl.String), pl.Series(RAW, raws, dtype=pl.String))
        return rejected, pl.Series("raw_enc", tokens, dtype=pl.String)

    def close(self, ok: bool) -> Path | None:
        if self._fh is None:
            return None
        self._fh.close()
        assert self.csv_path is not None
        if ok:
            self._tmp.replace(self.csv_path)
            return self.csv_path
        self._tmp.unlink(missing_ok=True)
        return None


# --------------------------------------------------------------------------- meters


def _meter_facts(conn: Connection, meter_ids: pl.Series | None) -> pl.DataFrame:
    """installed_on, removed_on, digits and store group of the meters (all, or those named)."""
    import polars as pl

    facts = _meter_rows(conn, meter_ids)
    groups = (store.group_column(facts["meter_id"]) if facts.height
              else pl.Series("_group", [], pl.Int16))
    return facts.with_columns(groups.alias("_group"))


def _meters_for(loader: Any, meter_ids: pl.Series) -> pl.DataFrame:
    """The facts of the meters of a chunk: by IN-list for a few meters (a live poll), else all
    meters once per batch (one query is cheaper than many IN-lists, and later chunks reuse it)."""
    if loader.meters is not None:
        return cast("pl.DataFrame", loader.meters)
    if meter_ids.n_unique() <= 2_000:
        return _meter_facts(loader.conn, meter_ids)
    loader.meters = _meter_facts(loader.conn, None)
    return cast("pl.DataFrame", loader.meters)


def _meter_rows(conn: Connection, meter_ids: pl.Series | None) -> pl.DataFrame:
    import polars as pl

    from dianfei.db.frames import read_frame

    schema = {"meter_id": pl.String, "digits": pl.Int64}
    if meter_ids is not None:
        # ids with control characters are rejected anyway (and PostgreSQL refuses NUL)
        ids = [m for m in meter_ids.unique().drop_nulls().to_list()
               if isinstance(m, str) and m.isprintable() and 0 < len(m) <= 32]
        frames = []
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            names = {f"m{j}": m for j, m in enumerate(part)}
            frames.append(_select_frame(conn,
                "SELECT meter_id, installed_on, removed_on, digits FROM meters WHERE meter_id IN ("
                + ", ".join(f":{k}" for k in names) + ")", names))
        if frames:
            return pl.concat(frames) if len(frames) > 1 else frames[0]
        return pl.DataFrame(schema={"meter_id": pl.String, "installed_on": pl.Date,
                                    "removed_on": pl.Date, "digits": pl.Int64})
    return read_frame(conn.engine, "SELECT meter_id, installed_on, removed_on, digits FROM meters",
                      dates=("installed_on", "removed_on"), schema=schema)


def _select_frame(conn: Connection, sql: str, params: dict[str, Any]) -> pl.DataFrame:
    """A small query on the import's own connection, typed for the meter checks."""
    from datetime import date

    import polars as pl

    rows = conn.execute(text(sql), params).fetchall()

    def as_date(v: Any) -> date | None:
        if v is None or isinstance(v, date):
            return v
        return date.fromisoformat(str(v)[:10])

    return pl.DataFrame({
        "meter_id": [str(r[0]) for r in rows],
        "installed_on": [as_date(r[1]) for r in rows],
        "removed_on": [as_date(r[2]) for r in rows],
        "digits": [int(r[3]) for r in rows],
    }, schema={"meter_id": pl.String, "installed_on": pl.Date, "removed_on": pl.Date,
               "digits": pl.Int64})


def _check_meters(frame: pl.DataFrame, meters: pl.DataFrame, at: str) -> pl.DataFrame:
    """unknown_meter, before_installation, after_removal (business date of ``at``)."""
    import polars as pl

    frame = frame.join(meters.with_columns(pl.lit(True).alias("_known")), on="meter_id",
                       how="left", maintain_order="left")
    frame = business_day(frame, at, "_day")
    day = pl.col("_day")
    frame = flag(frame, pl.col("_known").is_null(), "unknown_meter",
                 pl.lit("no meter ") + pl.col("meter_id").str.slice(0, 40)
                 + pl.lit(" (import meters.csv first)"))
    frame = flag(frame, day < pl.col("installed_on"), "before_installation",
                 pl.lit("meter installed on ") + pl.col("installed_on").cast(pl.String))
    return flag(frame, pl.col("removed_on").is_not_null() & (day > pl.col("removed_on")),
                "after_removal", pl.lit("meter removed on ") + pl.col("removed_on").cast(pl.String))


def _normalise_text(frame: pl.DataFrame, names: tuple[str, ...]) -> pl.DataFrame:
    """Text columns as stripped strings (Parquet may bring integers for meter ids)."""
    import polars as pl

    cols = []
    for n in names:
        dtype = frame.schema[n]
        col = pl.col(n) if dtype == pl.String else pl.col(n).cast(pl.String)
        cols.append(col.str.strip_chars().alias(f"_{n}"))
    return frame.with_columns(cols)


class Loader(Protocol):
    counts: Counts

    def feed(self, chunk: pl.DataFrame) -> None: ...

    def finish(self) -> None: ...


# --------------------------------------------------------------------------- register reads


@dataclass
class ReadsLoader:
    """Register reads (抄表示数): value in 0.01 units, unique (meter, register, read_at)."""

    conn: Connection
    batch_id: str
    sink: RejectSink
    meters: pl.DataFrame | None = None
    counts: Counts = field(default_factory=Counts)
    #: the zone of times without an offset (None: they are rejected)
    timezone: str | None = None
    #: accepted reads below the previous read of their register (not a rollover): line, detail
    backwards: list[tuple[int, str]] = field(default_factory=list)
    #: the reads stored, chunk by chunk (meter_id, read_at, register): judged after the batch
    stored_keys: list[pl.DataFrame] = field(default_factory=list)
    _staged: bool = False

    COLUMNS = ("meter_id", "read_at", "register", "value", "source")

    def feed(self, chunk: pl.DataFrame) -> None:
        import polars as pl

        if chunk.height == 0:
            return
        f = start_reasons(chunk)
        f = _normalise_text(f, ("meter_id", "register", "source"))
        f = f.with_columns(pl.col("_register").str.to_lowercase(),
                           pl.col("_source").str.to_lowercase())
        f = require_text(f, "_meter_id", max_len=32, label="meter_id")
        f = parse_instants(f, "read_at", "_at", self.timezone)
        f = flag(f, ~pl.col("_register").is_in(list(REGISTERS)), "unknown_register",
                 pl.lit(f"register must be one of {', '.join(REGISTERS)}: ") + _q("_register"))
        f = flag(f, ~pl.col("_source").is_in(list(READ_SOURCES)), "unknown_source",
                 pl.lit(f"source must be one of {', '.join(READ_SOURCES)}: ") + _q("_source"))
        f = parse_decimal_units(f, "value", "_units", places=2,
                                max_int_digits=MAX_REGISTER_DIGITS, allow_negative=False)
        meters = _meters_for(self, f["_meter_id"])
        f = _check_meters(f.with_columns(pl.col("_meter_id").alias("meter_id")), meters, "_at")
        f = flag(f, (pl.col("_register") != "demand_kw")
                 & (pl.col("_units") >= pl.lit(10, pl.Int64).pow(pl.col("digits")) * 100),
                 "exceeds_register_digits",
                 pl.lit("the meter's register has ") + pl.col("digits").cast(pl.String)
                 + pl.lit(" integer digits: ") + _q("value"))

        good = f.filter(pl.col(REASON).is_null()).sort(LINE)
        bad = f.filter(pl.col(REASON).is_not_null())
        keys = ["meter_id", "_register", "_at"]
        first, later = _split_first(good, keys, "_units", "_first_units")
        same_later = later.filter(pl.col("_units") == pl.col("_first_units"))
        conflict_later = flag(later.filter(pl.col("_units") != pl.col("_first_units")),
                              pl.lit(True), "conflicts_within_batch",
                              pl.lit("line ") + pl.col("_first_line").cast(pl.String)
                              + pl.lit(" of this batch has another value for this read"))

        stored = self._match_stored(first)
        first = first.join(stored, on=LINE, how="left", maintain_order="left")
        dup_stored = first.filter(pl.col("_stored").is_not_null()
                                  & (pl.col("_stored") == pl.col("_units")))
        conflict_stored = flag(
            first.filter(pl.col("_stored").is_not_null() & (pl.col("_stored") != pl.col("_units"))),
            pl.lit(True), "conflicts_with_stored",
            pl.lit("stored value is ") + _units_text(pl.col("_stored"), 2))
        new = first.filter(pl.col("_stored").is_null())
        inserted = self._insert(new)
        if inserted:
            self._find_backwards()
            self.stored_keys.append(new.select("meter_id", pl.col("_at").alias("read_at"),
                                               pl.col("_register").alias("register")))

        cols = rejected_columns(chunk)
        rejected = pl.concat([bad.select(cols), conflict_later.select(cols),
                              conflict_stored.select(cols)], how="vertical_relaxed")
        self.sink.add(rejected)
        self.counts.add(chunk.height, inserted, rejected.height,
                        same_later.height + dup_stored.height)

    def _stage(self) -> None:
        if self._staged:
            return
        tail = " ON COMMIT DROP" if self.conn.dialect.name == "postgresql" else ""
        self.conn.execute(text(
            "CREATE TEMP TABLE IF NOT EXISTS _stage_reads (line BIGINT, meter_id VARCHAR(32), "
            "read_at TIMESTAMP, register VARCHAR(12), value BIGINT, source VARCHAR(10))" + tail))
        self._staged = True

    def _match_stored(self, first: pl.DataFrame) -> pl.DataFrame:
        """line → value already stored for the same (meter, register, read_at), if any."""
        import polars as pl

        from dianfei.db.bulk import write_frame

        self._stage()
        self.conn.execute(text("DELETE FROM _stage_reads"))
        write_frame(self.conn, "_stage_reads", first.select(
            pl.col(LINE).cast(pl.Int64), "meter_id", pl.col("_at").alias("read_at"),
            pl.col("_register").alias("register"), pl.col("_units").alias("value"),
            pl.col("_source").alias("source")))
        rows = self.conn.execute(text(
            "SELECT s.line, r.value FROM _stage_reads s JOIN register_reads r "
            "ON r.meter_id = s.meter_id AND r.register = s.register AND r.read_at = s.read_at"
        )).fetchall()
        return pl.DataFrame({LINE: [int(r[0]) for r in rows], "_stored": [int(r[1]) for r in rows]},
                            schema={LINE: first.schema[LINE], "_stored": pl.Int64})

    def _find_backwards(self) -> None:
        """Reads of this chunk below the read before them on the same cumulative register (a
        stopped, replaced or tampered meter: 示数倒走), unless the register wrapping at
        10**digits explains it with less than half a turn (a rollover). Stored — a read is a
        fact — and flagged now, not first at the bill run."""
        from dianfei.metering.vee.names import held_read

        rows = self.conn.execute(text(
            "SELECT s.line, s.meter_id, s.register, s.value, p.value, m.digits FROM _stage_reads s "
            "JOIN meters m ON m.meter_id = s.meter_id "
            "JOIN register_reads r ON r.meter_id = s.meter_id AND r.register = s.register "
            "AND r.read_at = s.read_at AND r.batch_id = :b "
            "JOIN register_reads p ON p.meter_id = s.meter_id AND p.register = s.register "
            "AND p.read_at = (SELECT MAX(q.read_at) FROM register_reads q WHERE "
            "q.meter_id = s.meter_id AND q.register = s.register AND q.read_at < s.read_at "
            # a read held as implausible (and not released) is no basis: the next real read
            # below it is not "backwards"
            f"AND NOT {held_read('q.meter_id', 'q.read_at')}) "
            "WHERE s.register <> 'demand_kw' AND s.value < p.value ORDER BY s.line"),
            {"b": self.batch_id}).fetchall()
        for line, meter, register, value, prev, digits in rows:
            wrap = 10 ** int(digits) * 100
            if int(value) + wrap - int(prev) < wrap // 2:
                continue  # a rollover
            self.backwards.append((int(line), f"{meter} {register} read {_units(int(value))} "
                                              f"after {_units(int(prev))}"))

    def _insert(self, new: pl.DataFrame) -> int:
        if new.height == 0:
            return 0
        try:
            result = self.conn.execute(text(
                "INSERT INTO register_reads (meter_id, read_at, register, value, source, batch_id) "
                "SELECT s.meter_id, s.read_at, s.register, s.value, s.source, :b "
                "FROM _stage_reads s WHERE NOT EXISTS (SELECT 1 FROM register_reads r "
                "WHERE r.meter_id = s.meter_id AND r.register = s.register "
                "AND r.read_at = s.read_at)"), {"b": self.batch_id})
        except IntegrityError:
            raise RetryableError("another import stored some of the same reads at the same "
                                 "time; run this import again (nothing of it was stored)") from None
        if result.rowcount != new.height:
            raise RetryableError("another import stored some of the same reads at the same time; "
                                 "run this import again (nothing of it was stored)")
        return new.height

    def finish(self) -> None:
        if self._staged and self.conn.dialect.name == "sqlite":
            self.conn.execute(text("DROP TABLE IF EXISTS _stage_reads"))


def rejected_columns(chunk: pl.DataFrame) -> list[str]:
    """What a rejected row carries: line, reason, detail, raw text (when the source has it;
    otherwise it is built from the fields for rejected rows only) and the original fields."""
    return [LINE, REASON, DETAIL, *([RAW] if RAW in chunk.columns else []),
            *[c for c in chunk.columns if c not in (LINE, RAW, REASON, DETAIL)]]


def _split_first(good: pl.DataFrame, keys: list[str], value: str,
                 first_value: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(first rows of each key in line order, later rows with the first row's value and line
    as ``first_value`` and ``_first_line``). ``good`` must be sorted by line."""
    import polars as pl

    is_first = pl.struct(keys).is_first_distinct() if len(keys) > 1 else \
        pl.col(keys[0]).is_first_distinct()
    good = good.with_columns(is_first.alias("_is_first"))
    first = good.filter(pl.col("_is_first")).drop("_is_first")
    later = good.filter(~pl.col("_is_first")).drop("_is_first")
    if later.height:
        later = later.join(first.select(*keys, pl.col(value).alias(first_value),
                                        pl.col(LINE).alias("_first_line")),
                           on=keys, how="left", maintain_order="left")
    else:
        later = later.with_columns(pl.col(value).alias(first_value),
                                   pl.col(LINE).alias("_first_line"))
    return first, later


def _q(name: str) -> pl.Expr:
    return quoted(name)


def _units(value: int) -> str:
    """0.01 kWh units as decimal text."""
    return f"{value // 100}.{value % 100:02d}"


def _units_text(units: pl.Expr, places: int) -> pl.Expr:
    """Integer units of 10**-places → decimal text, for messages."""
    import polars as pl

    scale = 10 ** places
    sign = pl.when(units < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.concat_str([sign, (units.abs() // scale).cast(pl.String), pl.lit("."),
                          (units.abs() % scale).cast(pl.String).str.pad_start(places, "0")])


# --------------------------------------------------------------------------- intervals


@dataclass
class IntervalLoader:
    """Interval energy (区间电量) into the Parquet store; see ``metering.intervals``."""

    conn: Connection
    root: Path
    batch_id: str
    interval_minutes: int
    sink: RejectSink
    meters: pl.DataFrame | None = None
    counts: Counts = field(default_factory=Counts)
    #: the zone of times without an offset (None: they are rejected)
    timezone: str | None = None
    written: list[store.StoredFile] = field(default_factory=list)
    off_grid: int = 0
    _chunk: int = 0
    _locked: bool = False

    COLUMNS = ("meter_id", "ts", "kwh")

    def feed(self, chunk: pl.DataFrame) -> None:
        import polars as pl

        if chunk.height == 0:
            return
        if not self._locked:
            store.lock_store(self.conn)
            self._locked = True
        self._chunk += 1
        f = start_reasons(chunk)
        # meter ids repeat in every row: validate and look up each distinct id once, then
        # carry a small integer code per row (``_m``) instead of joining on text
        f = self._with_meters(f)
        f = parse_instants(f, "ts", "_ts", self.timezone)
        f = parse_decimal_units(f, "kwh", "_wh", places=3,
                                max_int_digits=MAX_INTERVAL_KWH_DIGITS, allow_negative=True)
        f = _local_clock(f, "_ts")
        day = pl.col("_day")
        f = flag(f, pl.col("_known").is_null(), "unknown_meter",
                 pl.lit("no meter ") + pl.col("meter_id").str.slice(0, 40)
                 + pl.lit(" (import meters.csv first)"))
        f = flag(f, day < pl.col("installed_on"), "before_installation",
                 pl.lit("meter installed on ") + pl.col("installed_on").cast(pl.String))
        f = flag(f, pl.col("removed_on").is_not_null() & (day > pl.col("removed_on")),
                 "after_removal", pl.lit("meter removed on ") + pl.col("removed_on").cast(pl.String))
        cols = rejected_columns(chunk)
        ok = pl.col(REASON).is_null()
        bad = f.filter(~ok).select(cols)
        good = f.filter(ok).select(*cols, *[c for c in ("_ts", "_wh", "_group", "_day", "_local",
                                                        "_m") if c not in cols])
        if not good[LINE].is_sorted():
            good = good.sort(LINE)
        step = self.interval_minutes * 60_000_000
        self.off_grid += int(good.select((pl.col("_local") % step != 0).sum()).item() or 0)

        keys = ["meter_id", "_ts"]
        dups: list[pl.DataFrame] = []
        duplicates = 0
        rejected = [bad]
        if good.height:
            prior, own = self._existing(good)
            # a. against earlier imports: same value → duplicate, different → conflict
            if prior.height:
                good = good.join(prior.rename({"ts": "_ts", "wh": "_prior_wh"}), on=keys,
                                 how="left", maintain_order="left")
                vs_prior = good.filter(pl.col("_prior_wh").is_not_null())
                good = good.filter(pl.col("_prior_wh").is_null()).drop("_prior_wh")
                differ = vs_prior.filter(pl.col("_wh") != pl.col("_prior_wh"))
                differ = self._known_duplicates(differ)
                duplicates += vs_prior.height - differ.height
                rejected.append(flag(differ, pl.lit(True), "conflicts_with_stored",
                                     pl.lit("stored value is ") + _units_text(pl.col("_prior_wh"), 3)
                                     + pl.lit(" kWh")).select(cols))
            # b. against this batch's earlier chunks: duplicates within one import
            if own.height:
                good = good.join(own.rename({"ts": "_ts", "wh": "_first_wh"}), on=keys,
                                 how="left", maintain_order="left")
                vs_own = good.filter(pl.col("_first_wh").is_not_null())
                good = good.filter(pl.col("_first_wh").is_null()).drop("_first_wh")
                dups.append(vs_own)
            # c. within this chunk: the first row (in file order) is stored
            good, later = _split_first_by_code(good)
            if later.height:
                dups.append(later)
        within = pl.concat([d.select(LINE, "meter_id", "_ts", "_day", "_wh", "_first_wh")
                            for d in dups]) if dups else None
        if within is not None and within.height:
            from dianfei.db.bulk import write_frame

            write_frame(self.conn, "interval_duplicates", within.select(
                pl.lit(self.batch_id).alias("batch_id"), pl.col(LINE).cast(pl.Int64),
                "meter_id", pl.col("_ts").alias("ts"), pl.col("_day").alias("day"),
                pl.col("_wh").alias("wh"), pl.col("_first_wh").alias("first_wh")))
            duplicates += within.height
        self._write(good)
        rej = pl.concat(rejected, how="vertical_relaxed") if len(rejected) > 1 else bad
        self.sink.add(rej)
        self.counts.add(chunk.height, good.height, rej.height, duplicates)

    def _with_meters(self, f: pl.DataFrame) -> pl.DataFrame:
        """``meter_id`` stripped, its text checked, and the meter's facts (``_known``,
        ``installed_on``, ``removed_on``, ``_group``) — all computed per distinct id and
        gathered by the id's code ``_m`` (a fresh categorical per chunk)."""
        import polars as pl

        raw = f["meter_id"] if f.schema["meter_id"] == pl.String else f["meter_id"].cast(pl.String)
        cat = raw.cast(pl.Categorical(pl.Categories.random()))
        codes = cat.to_physical()
        uniq = cat.unique()
        size = _max_int(codes) + 1
        ids = pl.DataFrame({"_m": uniq.to_physical(), "meter_id": uniq.cast(pl.String)}
                           ).drop_nulls("_m")
        # ids that differ only by padding are one meter: one code (``_mk``) for duplicate keys
        ids = ids.with_columns(pl.col("meter_id").alias("_as_sent"),
                               pl.col("meter_id").str.strip_chars())
        ids = start_reasons(ids.with_columns(pl.col("_m").min().over("meter_id").alias("_mk")))
        ids = require_text(ids, "meter_id", max_len=32)
        meters = _meters_for(self, ids["meter_id"])
        ids = ids.join(meters.with_columns(pl.lit(True).alias("_known")), on="meter_id",
                       how="left")
        # a dense table indexed by code, so that each row's facts are one gather
        table = pl.DataFrame({"_m": pl.int_range(0, size, dtype=pl.UInt32, eager=True)}).join(
            ids.with_columns(pl.col("_m").cast(pl.UInt32)), on="_m", how="left",
            maintain_order="left")
        idx = codes.cast(pl.Int64)
        meter = ("_known", "installed_on", "removed_on", "_group")
        # the usual chunk: every id as sent is clean and valid, so a row's key code, id and
        # (no) reason are its own — gather only the meter's facts (a third of the gathers, and
        # no text column copied row by row)
        clean = bool(ids.select((pl.col("meter_id") == pl.col("_as_sent")).all()
                                & pl.col(REASON).is_null().all()).item())
        if clean:
            f = f.with_columns(codes.alias("_m"), raw.alias("meter_id"),
                               *[table[n].gather(idx).alias(n) for n in meter])
        else:
            facts = {name: table[name].gather(idx)
                     for name in ("_mk", "meter_id", REASON, DETAIL, *meter)}
            keep = pl.col(REASON).is_not_null()
            f = f.with_columns(
                facts["_mk"].alias("_m"), facts["meter_id"].alias("meter_id"),
                pl.when(keep).then(pl.col(REASON)).otherwise(facts[REASON]).alias(REASON),
                pl.when(keep).then(pl.col(DETAIL)).otherwise(facts[DETAIL]).alias(DETAIL),
                *[facts[n].alias(n) for n in meter])
        return f.with_columns(
            # an empty id has no code: missing_value like the text path says
            pl.when(pl.col(REASON).is_null() & pl.col("_m").is_null())
            .then(pl.lit("missing_value")).otherwise(pl.col(REASON)).alias(REASON),
            pl.when(pl.col(DETAIL).is_null() & pl.col("_m").is_null())
            .then(pl.lit("meter_id is empty")).otherwise(pl.col(DETAIL)).alias(DETAIL))

    def _existing(self, good: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Stored rows that may collide with ``good``: (earlier imports, this batch so far)."""
        lo, hi = good["_ts"].min(), good["_ts"].max()
        assert isinstance(lo, datetime) and isinstance(hi, datetime)
        groups = good["_group"].unique().to_list()
        wanted = set(groups)
        prior_files = store.catalogued_files(self.conn, groups, lo, hi)
        own_files = [f for f in self.written if (f.group in wanted or f.group == store.MIXED_GROUP)
                     and f.max_ts >= lo and f.min_ts <= hi]
        ids = good["meter_id"]
        prior = store.read_files(self.root, prior_files, ids, lo, hi)
        own = store.read_files(self.root, own_files, ids, lo, hi)
        # the store holds one row per (meter, ts) (the writer guarantees it), so the joins below
        # cannot multiply rows
        return prior.select("meter_id", "ts", "wh"), own.select("meter_id", "ts", "wh")

    def _known_duplicates(self, differ: pl.DataFrame) -> pl.DataFrame:
        """Drop rows that an earlier import already recorded as a within-import duplicate
        (re-importing a file that had conflicting duplicates counts them as duplicates again,
        not as conflicts)."""
        import polars as pl

        if differ.height == 0:
            return differ
        self.conn.execute(text(
            "CREATE TEMP TABLE IF NOT EXISTS _stage_intervals (line BIGINT, meter_id VARCHAR(32), "
            "ts TIMESTAMP, wh BIGINT)"))
        self.conn.execute(text("DELETE FROM _stage_intervals"))
        from dianfei.db.bulk import write_frame

        write_frame(self.conn, "_stage_intervals", differ.select(
            pl.col(LINE).cast(pl.Int64), "meter_id", pl.col("_ts").alias("ts"),
            pl.col("_wh").alias("wh")))
        rows = self.conn.execute(text(
            "SELECT DISTINCT s.line FROM _stage_intervals s JOIN interval_duplicates d "
            "ON d.meter_id = s.meter_id AND d.ts = s.ts AND d.wh = s.wh "
            "JOIN import_batches b ON b.batch_id = d.batch_id AND b.status = 'finished'"
        )).fetchall()
        self.conn.execute(text("DELETE FROM _stage_intervals"))
        known = {int(r[0]) for r in rows}
        if not known:
            return differ
        return differ.filter(~pl.col(LINE).is_in(sorted(known)))

    def _write(self, good: pl.DataFrame) -> None:
        """One file per (business month, meter group) of the chunk, written in parallel (the
        Parquet encoder releases the GIL); made durable by ``finish``."""
        import polars as pl

        if good.height == 0:
            return
        # one integer key per (month, group): the month of each distinct day (a chunk has a few
        # dozen) by lookup, not calendar arithmetic on every row; one key column partitions
        # several times faster than two
        days = good["_day"].unique().drop_nulls()
        first_of = {d: date(d.year, d.month, 1) for d in days.to_list()}
        month_no = {(d - _EPOCH).days: (m.year * 12 + m.month - 1) * store.GROUPS
                    for d, m in first_of.items()}
        out = good.select(
            (pl.col("_day").cast(pl.Int32).replace_strict(month_no, return_dtype=pl.Int32)
             + pl.col("_group").cast(pl.Int32)).alias("_part"), "_day", "meter_id",
            pl.col("_ts").alias("ts"), pl.lit(self.interval_minutes, pl.Int16).alias("minutes"),
            pl.col("_wh").alias("wh"), pl.lit(self.batch_id).alias("batch_id"))
        jobs = _partitions(out)
        self.written.extend(_pool().map(
            lambda job: store.write_partition(
                self.root, job[0].drop("_day"), month=date(job[1] // 12, job[1] % 12 + 1, 1),
                day=_first_day(job[0]), group=job[2], batch_id=self.batch_id,
                chunk=self._chunk, sync=False), jobs))

    def finish(self) -> None:
        # the batch's files are made durable together, then catalogued (made visible)
        store.sync_files(self.root, self.written)
        store.catalogue(self.conn, self.written)

    def discard(self) -> None:
        """Remove files of a batch that did not finish (they were never catalogued)."""
        for f in self.written:
            (self.root / f.path).unlink(missing_ok=True)
        self.written.clear()


_POOL: Any = None
_EPOCH = date(1970, 1, 1)


def _first_day(frame: pl.DataFrame) -> date:
    first = frame["_day"].min()
    assert isinstance(first, date)
    return first


def _partitions(out: pl.DataFrame) -> list[tuple[pl.DataFrame, int, int]]:
    """The files to write for a chunk's rows (``_part`` = month number × GROUPS + group):
    (rows, month number, group) — one per (month, group), except that a month of the chunk with
    fewer than ``store.MIXED_MAX_ROWS`` rows in all goes into one file of every group
    (``store.MIXED_GROUP``). A long history of few meters is a few hundred rows per meter and
    month: a file per group was ten files where one does, and on a file system where creating a
    file costs ~1 ms the files, not the rows, were most of such an import. File order is kept
    in every file: a history file comes meter by meter in time order, and a reader checks the
    order before it sorts."""
    import polars as pl

    month_of = (pl.col("_part") // store.GROUPS).alias("_month")
    jobs = []
    for (month,), rows in out.with_columns(month_of).partition_by(
            "_month", as_dict=True, include_key=False).items():
        groups = rows["_part"].unique()
        if groups.len() > 1 and rows.height < store.MIXED_MAX_ROWS:
            jobs.append((rows.drop("_part"), int(month), store.MIXED_GROUP))
            continue
        for (part,), frame in rows.partition_by("_part", as_dict=True,
                                                include_key=False).items():
            jobs.append((frame, int(month), int(part) % store.GROUPS))
    return jobs


def _pool() -> Any:
    """Threads for writing partition files (created once; at most 4: the disk, not the CPU,
    is what they wait for)."""
    global _POOL
    if _POOL is None:
        import os
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1) or 1,
                                   thread_name_prefix="interval-store")
    return _POOL


#: Asia/Shanghai has kept UTC+08:00 without daylight saving since 1991-09-15 (the last DST
#: change); later instants get their local time by adding 8 hours, earlier ones by the zone rules
_SHANGHAI_FIXED_FROM_US = int(datetime(1991, 9, 15, tzinfo=UTC).timestamp()) * 1_000_000
_HOUR_US = 3_600_000_000
_DAY_US = 86_400_000_000


def _local_clock(f: pl.DataFrame, source: str) -> pl.DataFrame:
    """``_local`` (business-zone wall clock as microseconds since the epoch) and ``_day`` (the
    business date) of the instants in ``source``."""
    import polars as pl

    lo = f[source].min()
    if BUSINESS_TZ_NAME == "Asia/Shanghai" and (lo is None or (
            isinstance(lo, datetime) and lo >= datetime.fromtimestamp(
                _SHANGHAI_FIXED_FROM_US / 1e6, tz=UTC))):
        local = pl.col(source).dt.epoch("us") + 8 * _HOUR_US
    else:
        local = (pl.col(source).dt.convert_time_zone(BUSINESS_TZ_NAME)
                 .dt.replace_time_zone(None).dt.epoch("us"))
    return f.with_columns(local.alias("_local")).with_columns(
        (pl.col("_local") // _DAY_US).cast(pl.Int32).cast(pl.Date).alias("_day"))


def _max_int(series: pl.Series) -> int:
    """The largest value of an integer series (0 when it has none)."""
    top = series.max()
    return int(top) if isinstance(top, int) else 0


def _split_first_by_code(good: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(first rows of each (meter, ts) in line order, later rows with ``_first_wh`` and
    ``_first_line``). The key is one integer: the chunk's meter code and the instant. Meter data
    rarely repeats itself, so a counting pass first proves "no duplicates" in most chunks —
    or, cheaper still, a history file in (meter, time) order proves it by its order alone."""
    import polars as pl

    if good.height < 2:
        return good, good.head(0).with_columns(pl.col("_wh").alias("_first_wh"),
                                               pl.col(LINE).alias("_first_line"))
    ts = good["_ts"].dt.epoch("us")
    lo, hi = _max_int(-ts) * -1, _max_int(ts)
    codes = good["_m"].cast(pl.Int64)
    n_codes = _max_int(codes) + 1
    key: pl.Series | None = None
    offsets = ts - lo
    for unit in (900_000_000, 60_000_000, 1_000_000, 1):
        # the coarsest time unit that every instant of the chunk is a whole multiple of
        if not ((offsets % unit) != 0).any():
            span = (hi - lo) // unit + 1
            if span * n_codes < 2**62:
                key = codes * span + offsets // unit
            break
    none = good.head(0).with_columns(pl.col("_wh").alias("_first_wh"),
                                     pl.col(LINE).alias("_first_line"))
    if key is not None and bool((key.diff().slice(1) > 0).all()):
        return good, none  # strictly ascending keys cannot repeat
    if key is not None and span * n_codes <= 4 * good.height + 1_000_000:
        import numpy as np  # only here: its import costs a command's start-up otherwise

        counts = np.bincount(key.to_numpy(), minlength=span * n_codes)
        if counts.max() <= 1:
            return good, none
    if key is None:
        return _split_first(good, ["_m", "_ts"], "_wh", "_first_wh")
    good = good.with_columns(key.alias("_key"))
    first, later = _split_first(good, ["_key"], "_wh", "_first_wh")
    return first.drop("_key"), later.drop("_key")


# --------------------------------------------------------------------------- entry points


def run_batch(db: Database, *, kind: str, origin: str, clock: Clock, chunks: Any,
              fields: list[str], file_name: str | None = None, csv_path: Path | None = None,
              interval_minutes: int | None = None, sha256: Any = None,
              make_loader: Any = None, timezone: str | None = None,
              personal: Mapping[str, Mask | None] | None = None) -> IngestResult:
    """Run one batch: a running batch record, then one transaction that stores the accepted
    rows, quarantines the rejected ones, catalogues interval files and finishes the record.
    ``personal``: the fields with personal data and their masks (see :class:`RejectSink`)."""
    cipher = None
    if personal:
        from dianfei.db.pii import cipher_for

        cipher = cipher_for(db)
    batch_id = start_batch(db, kind=kind, origin=origin, clock=clock, file_name=file_name,
                           interval_minutes=interval_minutes)
    loader: Any = None
    sink: RejectSink | None = None
    try:
        with db.engine.begin() as conn:
            sink = RejectSink(conn, batch_id, fields, csv_path, personal=personal,
                              cipher=cipher)
            if make_loader is not None:
                loader = make_loader(conn, batch_id, sink)
            elif kind == "reads":
                loader = ReadsLoader(conn, batch_id, sink, timezone=timezone)
            elif kind == "intervals":
                assert interval_minutes is not None
                loader = IntervalLoader(conn, store.store_root(db), batch_id, interval_minutes,
                                        sink, timezone=timezone)
            else:  # pragma: no cover - programming error
                raise ValueError(kind)
            for chunk in chunks:
                loader.feed(chunk)
                # the crash tests die here: rows of the file written, the batch not finished
                kill_point("import.chunk_fed")
            loader.finish()
            digest = sha256() if callable(sha256) else sha256
            finish_batch(conn, batch_id, loader.counts, clock, digest)
    except BaseException as exc:
        if isinstance(loader, IntervalLoader):
            loader.discard()
        if sink is not None:
            sink.close(False)
        fail_batch(db, batch_id, str(exc) or type(exc).__name__, clock)
        raise
    if sink is not None:
        sink.close(True)
    c = loader.counts
    kept = getattr(loader, "stored_keys", None)
    return IngestResult(c.accepted, c.rejected, c.duplicates, batch_id,
                        tuple(getattr(loader, "backwards", ())),
                        new_reads=_concat(kept) if kept else None)


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    import polars as pl

    return pl.concat(frames)


def _frame_chunk(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    import polars as pl

    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValidationError(f"frame lacks columns: {', '.join(missing)}")
    return frame.select(columns).with_row_index(LINE, offset=1).with_columns(
        pl.col(LINE).cast(pl.Int64))


def ingest_reads(db: Database, reads: pl.DataFrame, *, origin: str, clock: Clock) -> IngestResult:
    """Store register reads from a live source (DL/T 645 poll, MQTT) in one batch.

    ``reads``: ``meter_id`` Utf8, ``read_at`` Datetime(us, "UTC"), ``register`` Utf8, ``value``
    Utf8 (decimal kWh text, at most 2 places), ``source`` Utf8 (ami, manual, estimated). Replays
    count as duplicates; a different value for a stored read is rejected
    (``conflicts_with_stored``). Quarantined rows carry the row number (1-based) as ``line``.
    """
    chunk = _frame_chunk(reads, ReadsLoader.COLUMNS)
    return run_batch(db, kind="reads", origin=origin, clock=clock, chunks=[chunk],
                     fields=list(ReadsLoader.COLUMNS))


def ingest_intervals(db: Database, intervals: pl.DataFrame, *, interval_minutes: int,
                     origin: str, clock: Clock) -> IngestResult:
    """Store interval energy from a live source in one batch.

    ``intervals``: ``meter_id`` Utf8, ``ts`` Datetime(us, "UTC") (interval start), ``kwh`` Utf8
    (decimal text, at most 3 places; stored exactly as integer watt-hours).
    """
    check_interval_minutes(interval_minutes)
    chunk = _frame_chunk(intervals, IntervalLoader.COLUMNS)
    return run_batch(db, kind="intervals", origin=origin, clock=clock, chunks=[chunk],
                     fields=list(IntervalLoader.COLUMNS), interval_minutes=interval_minutes)


def check_interval_minutes(minutes: int) -> None:
    if minutes < 1 or minutes > 1440 or 1440 % minutes:
        raise ValidationError(f"--interval-minutes must divide a day (1, 5, 15, 30, 60, …), "
                              f"got {minutes}")
