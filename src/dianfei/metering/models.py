"""Register reads (抄表示数)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime
from dianfei.metering.registers import READ_SOURCES as READ_SOURCES
from dianfei.metering.registers import REGISTERS as REGISTERS


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


class StationSupply(Base):
    """What a supply station's meter (台区总表) measured entering the station in one month
    (0.01 kWh): the supply side of the station's line loss (台区线损), against which the
    station's customers' metered energy is compared (risk's theft warnings). Imported with
    ``dianfei import stations`` (one row per station and month; docs/risk-insight.md)."""

    __tablename__ = "station_supply"
    station_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: YYYY-MM
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    #: 0.01 kWh, positive
    kwh: Mapped[int] = mapped_column(BigInteger)
    #: the import batch that stored it
    batch_id: Mapped[str | None] = mapped_column(String(40), default=None)


IMPORT_KINDS = ("customers", "meters", "reads", "intervals", "stations")
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
    stored data or is here (and in ``FILE.rejected.csv``). A row of an import with personal data
    (customers) is kept sealed in ``raw_enc`` (db/pii.py ``QUARANTINE_RAW``, bound to its batch
    and line) and masked in ``raw`` and ``detail`` (张*, 138****5678, 北京市朝阳区****);
    ``dianfei quarantine BATCH --reveal`` opens it.
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
    #: the row's text — masked where the import carries personal data
    raw: Mapped[str] = mapped_column(Text, default="")
    #: the row's text sealed (imports with personal data only; None otherwise)
    raw_enc: Mapped[str | None] = mapped_column(Text, default=None)


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


class ReadEstimate(Base):
    """How an estimated register read (估计读数) billed in place of a missing or invalid read was
    derived: the read it starts from plus the intervals since. The read itself is in
    ``register_reads`` (source ``estimated``); the next actual read trues it up, because the next
    bill starts from it (起码 = 上期止码)."""

    __tablename__ = "read_estimates"
    __table_args__ = (Index("uq_read_estimates_meter_at", "meter_id", "read_at", "register",
                            unique=True),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32))
    register: Mapped[str] = mapped_column(String(12))
    read_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the estimated register value, 0.01 units (before the multiplier, like every read)
    value: Mapped[int] = mapped_column(BigInteger)
    #: the read it starts from (the last read billed: an actual read, or an earlier estimate)
    from_value: Mapped[int] = mapped_column(BigInteger)
    from_at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_source: Mapped[str] = mapped_column(String(10))
    #: the intervals in [from_at, read_at) of this register's band, watt-hours
    interval_wh: Mapped[int] = mapped_column(BigInteger)
    intervals: Mapped[int] = mapped_column(Integer)
    #: of which VEE estimates (the coverage rule limits their share)
    estimated_intervals: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


GATEWAY_PROTOCOLS = ("dlt645",)


class MeterGateway(Base):
    """A gateway or concentrator (集中器 / 串口服务器) meters are reached through. A meter names its
    gateway in ``meters.gateway_id``; meters without one use the configured default gateway."""

    __tablename__ = "meter_gateways"
    gateway_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    #: dlt645 (DL/T 645-2007 over TCP)
    protocol: Mapped[str] = mapped_column(String(12), default="dlt645")
    #: DL/T 645 password / operator code of the meters behind it (8 hex digits each); None:
    #: the configured ones
    password: Mapped[str | None] = mapped_column(String(8))
    operator: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MeterClockCheck(Base):
    """A meter's own clock (DL/T 645 DI 04000101 date, 04000102 time) against the receive time:
    ``drift_s`` = meter − received, seconds (positive: the meter is ahead)."""

    __tablename__ = "meter_clock_checks"
    __table_args__ = (Index("ix_meter_clock_checks_meter_at", "meter_id", "received_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    meter_id: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    meter_time: Mapped[datetime] = mapped_column(UTCDateTime)
    drift_s: Mapped[int] = mapped_column(Integer)
    gateway_id: Mapped[str | None] = mapped_column(String(32))
