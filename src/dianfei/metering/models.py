"""Register reads (抄表示数)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

REGISTERS = ("total", "sharp", "peak", "flat", "valley", "kvarh", "demand_kw")
READ_SOURCES = ("ami", "manual", "estimated")


class RegisterRead(Base):
    """One register value at one instant, as the meter showed it (before the multiplier).

    ``value`` is in 0.01 units (kWh, kvarh, kW). Cumulative registers roll over at
    10**digits; ``demand_kw`` is the period's maximum demand, not cumulative.
    """

    __tablename__ = "register_reads"
    __table_args__ = (
        # one value per (instant, meter, register), instant first: reads arrive in time order
        # (a day's frozen reads, a month's), so they append to the end of this index instead of
        # touching one page per meter; the readers of a window of time (bill run, collections,
        # VEE) range over it
        Index("uq_register_reads_at_meter_register", "read_at", "meter_id", "register",
              unique=True),
        # a meter's reads (the bill run's look-back for meters without a recent read); a TOU
        # meter's registers of one instant sit side by side
        Index("ix_register_reads_meter_at", "meter_id", "read_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32))
    read_at: Mapped[datetime] = mapped_column(UTCDateTime)
    register: Mapped[str] = mapped_column(String(12))
    value: Mapped[int] = mapped_column(BigInteger)
    #: ami, manual or estimated — a bill built on an estimated read says so
    source: Mapped[str] = mapped_column(String(10))
    #: the import batch that stored it (None for reads stored directly, e.g. by the simulator)
    batch_id: Mapped[str | None] = mapped_column(String(40), default=None)


IMPORT_KINDS = ("customers", "meters", "reads", "intervals")
BATCH_STATUSES = ("running", "finished", "failed")


class ImportBatch(Base):
    """One import (导入批次): a file, or one delivery from a live source (DL/T 645 poll, MQTT).

    Counts always satisfy ``accepted + rejected + duplicates == data_rows``. A batch that died
    half-way stays ``running`` (or ``failed``) and none of its interval files are catalogued, so
    nothing of it is visible.
    """

    __tablename__ = "import_batches"
    __table_args__ = (Index("ix_import_batches_sha256", "sha256"),)
    batch_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: customers, meters, reads or intervals
    kind: Mapped[str] = mapped_column(String(12))
    #: "file" for ``dianfei import``; "dlt645", "mqtt", … for live sources
    origin: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str | None] = mapped_column(Text)
    #: sha256 of the file's bytes: finds earlier imports of the very same file
    sha256: Mapped[str | None] = mapped_column(String(64))
    interval_minutes: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10))
    data_rows: Mapped[int] = mapped_column(BigInteger, default=0)
    accepted: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    duplicates: Mapped[int] = mapped_column(BigInteger, default=0)
    #: why a failed batch failed (e.g. the file is not valid UTF-8 at line 12)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class QuarantinedRow(Base):
    """A rejected input row (隔离区), kept with its line number, reason and raw text.

    Nothing in a file is dropped silently: a row that is not stored is either a duplicate of
    stored data or is here (and in ``FILE.rejected.csv``).
    """

    __tablename__ = "import_quarantine"
    __table_args__ = (Index("ix_import_quarantine_batch", "batch_id", "line"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(40))
    #: line in the file (header = line 1); for Parquet and frames, the 1-based data row number
    line: Mapped[int] = mapped_column(BigInteger)
    #: stable code, e.g. unknown_meter, timestamp_without_offset, conflicts_with_stored
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[str] = mapped_column(Text, default="")


class IntervalFile(Base):
    """Catalogue of the interval store (负荷曲线/区间电量): one Parquet file per batch, chunk,
    business day and meter group. Only catalogued files are visible to readers, and a batch's
    files are catalogued in the transaction that finishes the batch."""

    __tablename__ = "interval_files"
    __table_args__ = (Index("ix_interval_files_day_group", "day", "meter_group"),
                      Index("uq_interval_files_path", "path", unique=True),
                      Index("ix_interval_files_batch", "batch_id"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    #: the business day (Asia/Shanghai) of every ``ts`` in the file
    day: Mapped[date] = mapped_column(Date)
    #: ``metering.intervals.meter_group(meter_id)`` ("group" is an SQL keyword)
    meter_group: Mapped[int] = mapped_column(Integer)
    #: relative to ``{data_dir}/intervals``
    path: Mapped[str] = mapped_column(Text)
    batch_id: Mapped[str] = mapped_column(String(40))
    rows: Mapped[int] = mapped_column(BigInteger)
    min_ts: Mapped[datetime] = mapped_column(UTCDateTime)
    max_ts: Mapped[datetime] = mapped_column(UTCDateTime)


class IntervalDuplicate(Base):
    """A second-or-later row for the same (meter, interval) received within one import.

    The first value is the one stored; this keeps the others for VEE (identical vs conflicting
    duplicates). Re-importing rows already stored by an earlier import does not land here.
    """

    __tablename__ = "interval_duplicates"
    __table_args__ = (Index("ix_interval_duplicates_day", "day"),
                      Index("ix_interval_duplicates_meter_ts", "meter_id", "ts"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(40))
    line: Mapped[int] = mapped_column(BigInteger)
    meter_id: Mapped[str] = mapped_column(String(32))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    day: Mapped[date] = mapped_column(Date)
    #: the duplicate's value, watt-hours
    wh: Mapped[int] = mapped_column(BigInteger)
    #: the value stored (the first received), watt-hours
    first_wh: Mapped[int] = mapped_column(BigInteger)
