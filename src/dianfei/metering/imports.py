"""``dianfei import customers|meters|reads|intervals FILE``: canonical files into the database
(档案与抄表数据导入).

CSV (UTF-8 with or without BOM, or GBK) and Parquet, chosen by the file's extension, both read
in chunks so a file larger than memory imports. Order matters: customers before meters, meters
before reads and intervals (a row naming an unknown customer or meter is rejected with its
reason). Every data row is accepted, rejected (quarantine table + ``FILE.rejected.csv``) or a
duplicate of what is stored; re-importing a file changes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from dianfei.core.clock import Clock
from dianfei.core.crypto import mask_address, mask_id_number, mask_name, mask_phone
from dianfei.core.errors import ValidationError
from dianfei.db.pii import CUSTOMER_PHONE
from dianfei.metering.csvread import DEFAULT_CHUNK_BYTES, RESERVED, CsvFile, codec_for
from dianfei.metering.ingest import (
    LINE,
    RAW,
    Counts,
    IngestResult,
    IntervalLoader,
    Mask,
    ReadsLoader,
    RejectSink,
    check_interval_minutes,
    rejected_columns,
    run_batch,
)
from dianfei.metering.parsing import DETAIL, REASON, flag, quoted, require_text, start_reasons

if TYPE_CHECKING:
    import polars as pl

    from dianfei.db.engine import Database

KINDS = ("customers", "meters", "reads", "intervals")
REQUIRED: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id", "name", "customer_class", "region", "address", "phone",
                  "tariff_id", "low_income", "protected", "payment_mode", "opened_on"),
    "meters": ("meter_id", "customer_id", "multiplier", "digits", "installed_on"),
    "reads": ReadsLoader.COLUMNS,
    "intervals": IntervalLoader.COLUMNS,
}
#: columns a customers file may leave out (empty values allowed too)
OPTIONAL_CUSTOMER = ("address", "phone", "low_income", "protected", "payment_mode")
#: how a rejected customers row shows its fields in clear (quarantine ``raw`` and ``detail``,
#: ``FILE.rejected.csv``): personal ones masked, the rest as they are; any other column of the
#: file gets its long numbers masked (the sealed row keeps everything, see RejectSink)
PERSONAL_CUSTOMER: dict[str, Mask | None] = {
    **dict.fromkeys(REQUIRED["customers"]),
    "name": mask_name, "address": mask_address, "phone": mask_phone,
    "id_number": mask_id_number,
}
DEFAULT_PARQUET_ROWS = 1_000_000


def rejected_path(path: Path) -> Path:
    return path.with_name(path.name + ".rejected.csv")


#: the zone of times without an offset in a file, unless ``--timezone`` says otherwise
DEFAULT_TIMEZONE = "Asia/Shanghai"

#: what the first bytes of a file that is not text say it is
_MAGIC = ((b"PK\x03\x04", "a ZIP archive or an Excel workbook (.xlsx); save the sheet as CSV"),
          (b"\xd0\xcf\x11\xe0", "an old Excel/Office file (.xls); save the sheet as CSV"),
          (b"\x1f\x8b", "gzip-compressed; unpack it first"),
          (b"%PDF", "a PDF document"),
          (b"PAR1", "a Parquet file; name it .parquet"),
          (b"SQLite format 3", "an SQLite database"),
          (b"\xff\xfe", "UTF-16 text; save it as UTF-8 or GBK"),
          (b"\xfe\xff", "UTF-16 text; save it as UTF-8 or GBK"))


def check_file_kind(path: Path, parquet: bool) -> None:
    """Refuse a file that is not what its name says, naming what it is: a binary file given
    as CSV (an Excel workbook, an archive, …), or a Parquet name on a file that is not one."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8192)
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}") from None
    if parquet:
        if head and not head.startswith(b"PAR1"):
            raise ValidationError(f"{path}: not a Parquet file (it does not start with PAR1)")
        return
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise ValidationError(f"{path}: a binary file, not CSV text — {what}")
    # a stray NUL in a data line is that line's fault (rejected with its reason); NULs in the
    # header line, or many of them, mean the file is not text at all
    nul = head.find(b"\x00")
    first_line = head.find(b"\n")
    if nul >= 0 and ((first_line < 0 or nul < first_line)
                     or head.count(b"\x00") >= max(8, len(head) // 10)):
        raise ValidationError(f"{path}: a binary file, not CSV text (NUL bytes from offset {nul})")


def import_file(db: Database, kind: str, path: Path, *, clock: Clock, encoding: str = "utf-8",
                interval_minutes: int = 15, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                chunk_rows: int = DEFAULT_PARQUET_ROWS,
                timezone: str | None = DEFAULT_TIMEZONE) -> IngestResult:
    """Import one canonical file; see the module docstring. ``timezone``: the zone of
    timestamps without an offset (None: they are rejected)."""
    if kind not in KINDS:
        raise ValidationError(f"unknown import kind {kind!r} (expected {', '.join(KINDS)})")
    if kind == "intervals":
        check_interval_minutes(interval_minutes)
    make_loader: Any = None
    if kind == "customers":
        codec_for(encoding)
        if path.is_file():
            make_loader = _customers_loader(db)
    elif kind == "meters":
        make_loader = MetersLoader.make
    res = import_table_file(
        db, kind, path, required=REQUIRED[kind],
        optional=OPTIONAL_CUSTOMER if kind == "customers" else (), make_loader=make_loader,
        clock=clock, encoding=encoding, chunk_bytes=chunk_bytes, chunk_rows=chunk_rows,
        interval_minutes=interval_minutes if kind == "intervals" else None, timezone=timezone,
        personal=PERSONAL_CUSTOMER if kind == "customers" else None)
    if kind == "reads" and res.new_reads is not None and res.new_reads.height:
        # a file is judged like a live reading: a read no meter could have registered is held
        # for a person before it can move a prepaid balance (vee review releases it)
        from dataclasses import replace

        from dianfei.metering.vee.plausibility import hold_implausible

        res = replace(res, held=hold_implausible(db, clock, res.new_reads))
    return res


def import_table_file(db: Database, kind: str, path: Path, *, required: tuple[str, ...],
                      make_loader: Any, clock: Clock, optional: tuple[str, ...] = (),
                      encoding: str = "utf-8", chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                      chunk_rows: int = DEFAULT_PARQUET_ROWS,
                      interval_minutes: int | None = None,
                      timezone: str | None = DEFAULT_TIMEZONE,
                      personal: dict[str, Mask | None] | None = None) -> IngestResult:
    """The file half of every import: open a CSV (UTF-8/GBK) or Parquet file, check its header,
    stream its chunks through ``make_loader(conn, batch_id, sink)`` in one batch (import_batches,
    quarantine, ``FILE.rejected.csv``). Other packages' imports (billing's bills, payments'
    payments) use it through ``metering.service`` with their own loader. ``personal``: the
    fields with personal data and their masks (rejected rows sealed, shown masked)."""
    codec_for(encoding)
    if not path.is_file():
        raise ValidationError(f"no such file: {path}")
    if chunk_bytes < 1 or chunk_rows < 1:
        raise ValidationError("chunk sizes must be positive")
    if timezone is not None:
        check_timezone(timezone)
    suffix = path.suffix.lower()
    check_file_kind(path, suffix in (".parquet", ".pq"))
    reader: Any
    if suffix in (".parquet", ".pq"):
        reader = ParquetSource(path, chunk_rows)
    elif suffix in (".csv", ".txt", ".tsv") or suffix == "":
        reader = CsvFile(path, encoding=encoding, chunk_bytes=chunk_bytes)
    else:
        raise ValidationError(f"{path}: unknown file type {suffix!r} (use .csv or .parquet)")
    chunks = reader.chunks()
    first = next(chunks, None)  # reads the header (and checks the file opens)
    header = reader.header
    missing = [c for c in required if c not in header and c not in optional]
    if missing:
        raise ValidationError(f"{path}: missing column(s) {', '.join(missing)} "
                              f"(the header has: {', '.join(header) or 'nothing'})")

    def all_chunks() -> Iterator[pl.DataFrame]:
        if first is not None:
            yield _complete(first, required)
        for c in chunks:
            yield _complete(c, required)

    return run_batch(db, kind=kind, origin="file", clock=clock, chunks=all_chunks(),
                     fields=header, file_name=str(path), csv_path=rejected_path(path),
                     interval_minutes=interval_minutes,
                     sha256=reader.sha256, make_loader=make_loader, timezone=timezone,
                     personal=personal)


def check_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"--timezone: unknown time zone {name!r} (e.g. Asia/Shanghai)") from None


def allowed_rejections(spec: str, rows: int) -> int:
    """``--max-rejected``: ``N`` rows or ``P%`` of the file's data rows (rounded down)."""
    from decimal import Decimal, InvalidOperation

    text_ = spec.strip()
    try:
        if text_.endswith("%"):
            share = Decimal(text_[:-1])
            if not 0 <= share <= 100:
                raise InvalidOperation
            return int(share * rows // 100)
        count = int(text_)
        if count < 0:
            raise ValueError
        return count
    except (InvalidOperation, ValueError):
        raise ValidationError(f"--max-rejected must be a count (e.g. 10) or a share of the rows "
                              f"(e.g. 0.5%), got {spec!r}") from None


def _complete(chunk: pl.DataFrame, required: tuple[str, ...]) -> pl.DataFrame:
    """Optional columns absent from the file → empty (null) columns."""
    import polars as pl

    absent = [c for c in required if c not in chunk.columns]
    if not absent:
        return chunk
    return chunk.with_columns([pl.lit(None, pl.String).alias(c) for c in absent])


@dataclass
class ParquetSource:
    """A Parquet file read by record batches (bounded memory); ``line`` = 1-based row number."""

    path: Path
    chunk_rows: int
    header: list[str] = field(default_factory=list)

    def sha256(self) -> str:
        h = hashlib.sha256()
        with self.path.open("rb") as fh:
            while block := fh.read(8 << 20):
                h.update(block)
        return h.hexdigest()

    def chunks(self) -> Iterator[pl.DataFrame]:
        """Polars' Parquet reader in batches of ``chunk_rows`` (several times faster than
        PyArrow's ``iter_batches`` here, typed columns kept as they are); files it cannot
        read (e.g. a time zone it does not know) go through PyArrow."""
        import polars as pl
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(self.path).metadata
            schema = meta.schema.to_arrow_schema()
        except (pa.ArrowException, OSError) as exc:
            raise ValidationError(f"{self.path}: not a readable Parquet file ({exc})") from None
        names = {n: n.strip().lower() for n in schema.names}
        self.header = [v for v in names.values() if v not in RESERVED and not v.startswith("_")]
        keep = [k for k, v in names.items() if v in self.header]
        if not _polars_reads(schema):
            yield from self._arrow_chunks(keep, names)
            return
        lf = (pl.scan_parquet(self.path).select(keep).rename({k: names[k] for k in keep})
              .with_row_index(LINE, offset=1))
        row = 1
        try:
            for frame in lf.collect_batches(chunk_size=self.chunk_rows, maintain_order=True):
                n = frame.height
                if n == 0:
                    continue
                yield frame.with_columns(
                    pl.col(LINE).cast(pl.Int64), pl.lit(None, pl.String).alias(REASON),
                    pl.lit(None, pl.String).alias(DETAIL))
                row += n
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise ValidationError(f"{self.path}: cannot read Parquet row {row} on ({exc})") from None
        if row - 1 != meta.num_rows:  # a reader that stops early must never drop rows silently
            raise ValidationError(f"{self.path}: read {row - 1} of {meta.num_rows} rows")

    def _arrow_chunks(self, keep: list[str], names: dict[str, str]) -> Iterator[pl.DataFrame]:
        """PyArrow's reader; zoned timestamps are relabelled UTC (an Arrow timestamp with a
        zone holds UTC instants already, the zone is only how to show them)."""
        import polars as pl
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise ValidationError(f"{self.path}: not a readable Parquet file ({exc})") from None
        row = 1
        try:
            for batch in pf.iter_batches(batch_size=self.chunk_rows, columns=keep):
                cols = []
                for c in batch.columns:
                    if pa.types.is_timestamp(c.type) and c.type.tz is not None:
                        c = c.cast(pa.timestamp(c.type.unit, tz="UTC"))
                    cols.append(c)
                frame = pl.from_arrow(pa.RecordBatch.from_arrays(cols, names=batch.schema.names))
                assert isinstance(frame, pl.DataFrame)
                frame = frame.rename({k: names[k] for k in keep})
                n = frame.height
                frame = frame.with_columns(
                    pl.int_range(row, row + n, dtype=pl.Int64).alias(LINE),
                    pl.lit(None, pl.String).alias(REASON), pl.lit(None, pl.String).alias(DETAIL))
                row += n
                yield frame
        except pa.ArrowException as exc:
            raise ValidationError(f"{self.path}: cannot read Parquet row {row} on ({exc})") from None


def _polars_reads(schema: Any) -> bool:
    """Whether Polars understands every zoned timestamp of ``schema`` (it refuses zones such as
    ``+05:30`` that are not in its zone database)."""
    import polars as pl
    import pyarrow as pa

    for f in schema:
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            try:
                pl.from_arrow(pa.array([], f.type))
            except pl.exceptions.PolarsError:
                return False
    return True


# --------------------------------------------------------------------------- customers


def _customers_loader(db: Database) -> Any:
    from dianfei.db.pii import cipher_for
    from dianfei.tariffs.service import load_catalogue

    tariffs = set(load_catalogue(db.settings.billing.tariff_dir).ids())
    cipher = cipher_for(db)

    def make(conn: Connection, batch_id: str, sink: RejectSink) -> CustomersLoader:
        return CustomersLoader(conn, sink, tariffs, cipher)

    return make


_TRUE = ("1", "true", "t", "yes", "y", "是")
_FALSE = ("0", "false", "f", "no", "n", "否", "")


def as_text(chunk: pl.DataFrame) -> pl.DataFrame:
    """Master-data columns as stripped text (Parquet may bring booleans, dates, integers)."""
    import polars as pl

    chunk = chunk.with_columns([pl.col(c).cast(pl.String).str.strip_chars()
                                for c, t in chunk.schema.items()
                                if c not in (LINE,) and t != pl.String])
    if RAW not in chunk.columns:
        fields = [c for c in chunk.columns if c not in (LINE, REASON, DETAIL)]
        chunk = chunk.with_columns(pl.concat_str([pl.col(c).fill_null("") for c in fields],
                                                 separator=",").alias(RAW))
    return chunk


def _flag_bool(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    import polars as pl

    low = pl.col(name).fill_null("").str.to_lowercase()
    frame = flag(frame, ~low.is_in(list(_TRUE + _FALSE)), "bad_flag",
                 pl.lit(f"{name} must be 0 or 1: ") + quoted(name))
    return frame.with_columns(low.is_in(list(_TRUE)).alias(f"_{name}"))


def flag_date(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    import polars as pl

    text = pl.col(name).fill_null("").str.replace_all("/", "-", literal=True)
    parsed = text.str.to_date("%Y-%m-%d", strict=False)
    frame = frame.with_columns(parsed.alias(f"_{name}"))
    frame = flag(frame, pl.col(name).is_null() | (pl.col(name) == ""), "missing_value",
                 f"{name} is empty")
    return flag(frame, pl.col(f"_{name}").is_null(), "bad_date",
                pl.lit(f"{name} is not a date YYYY-MM-DD: ") + quoted(name))


@dataclass
class CustomersLoader:
    """customers.csv → customers, accounts (= customer id), service points, tariff assignments.

    ``region`` names an existing region by id or by name; an unknown one is created with the
    text as both id and name. The tariff must exist in the tariff catalogue.
    """

    conn: Connection
    sink: RejectSink
    tariffs: set[str]
    cipher: Any
    counts: Counts = field(default_factory=Counts)
    _regions: dict[str, str] | None = None

    def feed(self, chunk: pl.DataFrame) -> None:
        import polars as pl

        from dianfei.customers.service import (
            CUSTOMER_CLASSES,
            PAYMENT_MODES,
            add_customers,
            add_regions,
            region_keys,
        )

        chunk = as_text(chunk)
        f = start_reasons(chunk)
        f = require_text(f, "customer_id", max_len=32)
        for name in ("name", "address", "phone"):
            # a row copied from FILE.rejected.csv shows 张*, 138****5678: never data to store
            f = flag(f, pl.col(name).fill_null("").str.contains("**", literal=True),
                     "masked_value", f"{name} is masked (copied from a .rejected.csv?): take "
                     "it from the original file or `dianfei quarantine BATCH --reveal`")
        f = require_text(f, "name", max_len=200)
        f = f.with_columns(pl.col("customer_class").fill_null("").str.to_lowercase()
                           .alias("_class"),
                           pl.col("payment_mode").fill_null("").str.to_lowercase()
                           .replace("", "postpaid").alias("_mode"))
        f = flag(f, ~pl.col("_class").is_in(list(CUSTOMER_CLASSES)), "unknown_customer_class",
                 pl.lit(f"customer_class must be one of {', '.join(CUSTOMER_CLASSES)}: ")
                 + quoted("customer_class"))
        f = require_text(f, "region", max_len=32)
        f = flag(f, ~pl.col("tariff_id").fill_null("").is_in(sorted(self.tariffs)),
                 "unknown_tariff", pl.lit("no tariff ") + quoted("tariff_id")
                 + pl.lit(" in the tariff catalogue"))
        f = _flag_bool(f, "low_income")
        f = _flag_bool(f, "protected")
        f = flag(f, ~pl.col("_mode").is_in(list(PAYMENT_MODES)), "unknown_payment_mode",
                 pl.lit("payment_mode must be postpaid or prepaid: ") + quoted("payment_mode"))
        f = flag(f, ~pl.col("phone").fill_null("").str.contains(r"^[0-9+\- ()]{0,24}$"),
                 "bad_phone", pl.lit("phone is not a phone number: ") + quoted("phone"))
        f = flag(f, pl.col("address").fill_null("").str.contains(r"[\x00-\x08\x0b-\x1f]"),
                 "bad_characters", "address contains control characters")
        f = flag_date(f, "opened_on")

        cols = rejected_columns(chunk)
        good = f.filter(pl.col(REASON).is_null()).sort(LINE)
        rejected = [f.filter(pl.col(REASON).is_not_null()).select(cols)]
        duplicates = 0
        # within the chunk: the first row of a customer id counts
        good = good.with_columns(pl.col(LINE).first().over("customer_id").alias("_first"))
        later = good.filter(pl.col(LINE) != pl.col("_first"))
        good = good.filter(pl.col(LINE) == pl.col("_first"))
        rows = good.select(
            "customer_id", "name", pl.col("_class").alias("customer_class"), "region",
            pl.col("address").replace("", None), pl.col("phone").replace("", None),
            "tariff_id", pl.col("_low_income").alias("low_income"),
            pl.col("_protected").alias("protected"), pl.col("_mode").alias("payment_mode"),
            pl.col("_opened_on").alias("opened_on"))
        if self._regions is None:
            self._regions = region_keys(self.conn)
        new_regions = sorted({r for r in rows["region"].to_list() if r not in self._regions})
        if new_regions:
            add_regions(self.conn, pl.DataFrame({"region_id": new_regions, "name": new_regions}))
            self._regions.update({r: r for r in new_regions})
        rows = rows.with_columns(pl.col("region").replace_strict(self._regions, default=None)
                                 .alias("region_id")).drop("region")
        stored = self._stored(rows["customer_id"].to_list())
        verdict: list[str | None] = []
        for rec in rows.iter_rows(named=True):
            old = stored.get(rec["customer_id"])
            verdict.append(None if old is None else _differences(rec, old))
        rows = rows.with_columns(pl.Series("_verdict", verdict, dtype=pl.String))
        good = good.with_columns(rows["_verdict"])
        new = rows.filter(pl.col("_verdict").is_null())
        same = good.filter(pl.col("_verdict") == "")
        differ = good.filter(pl.col("_verdict").is_not_null() & (pl.col("_verdict") != ""))
        rejected.append(flag(differ, pl.lit(True), "conflicts_with_stored",
                             pl.lit("stored customer differs in ") + pl.col("_verdict"))
                        .select(cols))
        duplicates += same.height
        # later rows of a customer id in this chunk: compare with the first
        first_vals = good.select(pl.col(LINE).alias("_first"), pl.col("_raw").alias("_first_raw"))
        later = later.join(first_vals, on="_first", how="left")
        later_same = later.filter(same_fields(chunk))
        duplicates += later_same.height
        later_diff = later.filter(~same_fields(chunk))
        rejected.append(flag(later_diff, pl.lit(True), "conflicts_within_batch",
                             pl.lit("line ") + pl.col("_first").cast(pl.String)
                             + pl.lit(" of this file has other data for this customer"))
                        .select(cols))
        add_customers(self.conn, self.cipher, new.drop("_verdict"))
        rej = pl.concat(rejected, how="vertical_relaxed")
        self.sink.add(rej)
        self.counts.add(chunk.height, new.height, rej.height, duplicates)

    def _stored(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        from dianfei.customers.service import customers_by_id

        out = customers_by_id(self.conn, ids)
        for rec in out.values():
            rec["phone"] = self.cipher.decrypt(rec.pop("phone_enc"),
                                               CUSTOMER_PHONE.context(rec["customer_id"]))
        return out

    def finish(self) -> None:
        pass


def same_fields(chunk: pl.DataFrame) -> pl.Expr:
    """A later row equal to the first one of its key: same raw text after trimming spaces."""
    import polars as pl

    norm = pl.col(RAW).str.replace_all(r"\s*,\s*", ",").str.strip_chars()
    first = pl.col("_first_raw").str.replace_all(r"\s*,\s*", ",").str.strip_chars()
    return norm == first


def _differences(new: dict[str, Any], old: dict[str, Any]) -> str:
    """Names of the fields where a file row differs from the stored record ('' if none)."""
    diffs = []
    for key, value in new.items():
        if key not in old:
            continue
        stored = old[key]
        if isinstance(value, bool):
            stored = bool(stored) if stored is not None else None
        elif isinstance(value, date):
            stored = date.fromisoformat(str(stored)[:10]) if stored is not None else None
        elif isinstance(value, int):
            stored = int(stored) if stored is not None else None
        if value != stored:
            diffs.append(key)
    return ", ".join(diffs)


# --------------------------------------------------------------------------- meters


@dataclass
class MetersLoader:
    """meters.csv → meters on the service point of the customer's account (account id =
    customer id). Optional columns: comm_address (12-digit DL/T 645 address), registers
    (e.g. "total;peak;valley"), removed_on is not imported."""

    conn: Connection
    sink: RejectSink
    counts: Counts = field(default_factory=Counts)

    @classmethod
    def make(cls, conn: Connection, batch_id: str, sink: RejectSink) -> MetersLoader:
        return cls(conn, sink)

    def feed(self, chunk: pl.DataFrame) -> None:
        import polars as pl

        from dianfei.customers.service import add_meters, meters_by_id, service_points_of
        from dianfei.metering.models import REGISTERS

        chunk = as_text(chunk)
        f = start_reasons(chunk)
        f = require_text(f, "meter_id", max_len=32)
        f = require_text(f, "customer_id", max_len=32)
        for name, default, lo, hi in (("multiplier", "1", 1, 1_000_000), ("digits", "6", 4, 10)):
            text = pl.col(name).fill_null("").replace("", default)
            num = text.cast(pl.Int64, strict=False)
            f = f.with_columns(num.alias(f"_{name}"))
            f = flag(f, num.is_null(), "bad_number",
                     pl.lit(f"{name} is not a whole number: ") + quoted(name))
            f = flag(f, (num < lo) | (num > hi), "value_out_of_range",
                     pl.lit(f"{name} must be {lo}..{hi}: ") + quoted(name))
        f = flag_date(f, "installed_on")
        if "comm_address" in f.columns:
            f = flag(f, ~pl.col("comm_address").fill_null("").str.contains(r"^([0-9]{12})?$"),
                     "bad_comm_address", pl.lit("comm_address must be 12 digits: ")
                     + quoted("comm_address"))
            f = f.with_columns(pl.col("comm_address").replace("", None).alias("_addr"))
        else:
            f = f.with_columns(pl.lit(None, pl.String).alias("_addr"))
        if "registers" in f.columns:
            regs = (pl.col("registers").fill_null("").str.to_lowercase()
                    .str.replace_all(r"[;|/ ]+", ",").str.strip_chars(","))
            f = f.with_columns(pl.when(regs == "").then(pl.lit("total")).otherwise(regs)
                               .alias("_registers"))
            f = flag(f, ~pl.col("_registers").str.split(",").list.eval(
                pl.element().is_in(list(REGISTERS))).list.all(), "unknown_register",
                pl.lit("registers must be among " + ", ".join(REGISTERS) + ": ")
                + quoted("registers"))
        else:
            f = f.with_columns(pl.lit("total").alias("_registers"))
        ids = f.filter(pl.col(REASON).is_null())["customer_id"].unique().to_list()
        sps = service_points_of(self.conn, ids)
        f = f.with_columns(pl.col("customer_id").replace_strict(sps, default=None,
                                                                return_dtype=pl.String)
                           .alias("_sp"))
        f = flag(f, pl.col("_sp").is_null(), "unknown_customer",
                 pl.lit("no customer ") + quoted("customer_id")
                 + pl.lit(" (import customers.csv first)"))

        cols = rejected_columns(chunk)
        good = f.filter(pl.col(REASON).is_null()).sort(LINE)
        rejected = [f.filter(pl.col(REASON).is_not_null()).select(cols)]
        good = good.with_columns(pl.col(LINE).first().over("meter_id").alias("_first"))
        later = good.filter(pl.col(LINE) != pl.col("_first"))
        good = good.filter(pl.col(LINE) == pl.col("_first"))
        rows = good.select("meter_id", pl.col("_sp").alias("service_point_id"),
                           pl.col("customer_id").alias("account_id"),
                           pl.col("_addr").alias("comm_address"),
                           pl.col("_multiplier").cast(pl.Int32).alias("multiplier"),
                           pl.col("_digits").cast(pl.Int32).alias("digits"),
                           pl.col("_registers").alias("registers"),
                           pl.col("_installed_on").alias("installed_on"))
        stored = meters_by_id(self.conn, rows["meter_id"].to_list())
        verdict: list[str | None] = []
        for rec in rows.iter_rows(named=True):
            old = stored.get(rec["meter_id"])
            if old is None:
                verdict.append(None)
                continue
            cmp = {k: v for k, v in rec.items() if k != "service_point_id"}
            if "comm_address" not in chunk.columns:
                cmp.pop("comm_address")
            if "registers" not in chunk.columns:
                cmp.pop("registers")
            verdict.append(_differences(cmp, old))
        v = pl.Series("_verdict", verdict, dtype=pl.String)
        rows = rows.with_columns(v)
        good = good.with_columns(v)
        new = rows.filter(pl.col("_verdict").is_null()).drop("_verdict")
        same = good.filter(pl.col("_verdict") == "")
        differ = good.filter(pl.col("_verdict").is_not_null() & (pl.col("_verdict") != ""))
        rejected.append(flag(differ, pl.lit(True), "conflicts_with_stored",
                             pl.lit("stored meter differs in ") + pl.col("_verdict"))
                        .select(cols))
        first_vals = good.select(pl.col(LINE).alias("_first"), pl.col("_raw").alias("_first_raw"))
        later = later.join(first_vals, on="_first", how="left")
        later_same = later.filter(same_fields(chunk))
        later_diff = later.filter(~same_fields(chunk))
        rejected.append(flag(later_diff, pl.lit(True), "conflicts_within_batch",
                             pl.lit("line ") + pl.col("_first").cast(pl.String)
                             + pl.lit(" of this file has other data for this meter"))
                        .select(cols))
        add_meters(self.conn, new)
        rej = pl.concat(rejected, how="vertical_relaxed")
        self.sink.add(rej)
        self.counts.add(chunk.height, new.height, rej.height, same.height + later_same.height)

    def finish(self) -> None:
        pass
