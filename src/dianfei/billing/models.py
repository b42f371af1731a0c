"""Bills (电费账单), their lines, bill runs and the exceptions a run could not bill."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

BILL_STATUSES = ("issued", "cancelled")


class BillRun(Base):
    """One execution of the bill run for a period. A run killed half-way stays ``running`` and
    the next invocation resumes it with the same issue and due dates, so the result equals an
    uninterrupted run."""

    __tablename__ = "bill_runs"
    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), index=True)
    issued_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10))  # running, completed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    candidates: Mapped[int] = mapped_column(Integer, default=0)
    billed: Mapped[int] = mapped_column(Integer, default=0)
    exceptions: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)


class BillRunPartition(Base):
    """A partition of accounts a Spark bill run wrote (dianfei.scale.billing): inserted first in
    the partition's transaction, so a retried or speculative task of the same job writes
    nothing a second time."""

    __tablename__ = "bill_run_partitions"
    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: one per driver invocation: a resumed run is a new job over the accounts still unbilled
    job_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    accounts: Mapped[int] = mapped_column(Integer)
    billed: Mapped[int] = mapped_column(Integer)
    exceptions: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    kwh: Mapped[int] = mapped_column(BigInteger)
    #: the Spark task attempt that wrote it (0 the first)
    attempt: Mapped[int] = mapped_column(Integer)
    written_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Bill(Base):
    __tablename__ = "bills"
    __table_args__ = (
        # at most one live bill per account and period: a rerun can never bill anyone twice
        Index("uq_bills_live_account_period", "account_id", "period", unique=True,
              sqlite_where=text("status != 'cancelled'"),
              postgresql_where=text("status != 'cancelled'")),
        Index("ix_bills_period", "period"),
        # covering the prepaid bills basis a day of collections reads (migration 0040)
        Index("ix_bills_customer", "customer_id", "period", "status", "kwh", "read_to_at",
              "account_id"),
        # an account's bills whatever their status (the partial index above skips cancelled
        # ones, so asking by account alone read every bill)
        Index("ix_bills_account", "account_id", "period"),
    )
    #: "{account}-{YYYYMM}-{version}": deterministic, so a resumed run writes the same ids
    bill_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(7))
    version: Mapped[int] = mapped_column(Integer, default=1)
    run_id: Mapped[str | None] = mapped_column(String(32))
    issued_on: Mapped[date] = mapped_column(Date)
    due_on: Mapped[date] = mapped_column(Date)
    #: the bill's own charges in fen: the sum of its lines (no late fees, no previous balance)
    amount: Mapped[int] = mapped_column(BigInteger)
    #: billed energy in 0.01 kWh
    kwh: Mapped[int] = mapped_column(BigInteger)
    #: the energy (0.01 kWh) of the account's live bills of the calendar year before this bill's
    #: period, as the bill was rated with (annual tiers): the next period's is this + ``kwh``,
    #: one row instead of a sum over the year. Null when it is not known to be current — an
    #: imported bill, a bill from before migration 0045, or one whose year changed after it was
    #: rated (an earlier bill of the year cancelled, imported or billed later): the bill run
    #: then sums the year for that account
    ytd_kwh: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    tariff_id: Mapped[str] = mapped_column(String(64))
    #: effective_from of the tariff version used
    tariff_version: Mapped[str] = mapped_column(String(10))
    #: the bill rests on at least one estimated read (估抄)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the meter of a bill on one meter; null on a bill on several meters (see ``bill_meters``,
    #: one row per meter, and ``read_from_at``/``read_to_at`` then span all of them)
    meter_id: Mapped[str | None] = mapped_column(String(32))
    multiplier: Mapped[int] = mapped_column(Integer, default=1)
    read_from_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_from: Mapped[int | None] = mapped_column(BigInteger)
    read_to_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_to: Mapped[int | None] = mapped_column(BigInteger)
    #: issued or cancelled
    status: Mapped[str] = mapped_column(String(10), default="issued")
    #: set on a rebill: the bill it corrects
    replaces_bill_id: Mapped[str | None] = mapped_column(String(64))
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_reason: Mapped[str | None] = mapped_column(Text)


class BillLine(Base):
    """One itemised line: quantity × unit price = amount, rounded half-up to the fen."""

    __tablename__ = "bill_lines"
    bill_id: Mapped[str] = mapped_column(ForeignKey("bills.bill_id"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text)
    #: 0.01 units of ``unit``
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(10))
    #: 0.0001 yuan per unit
    unit_price: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    #: power-factor lines only: the power factor in hundredths and the percent in hundredths
    power_factor: Mapped[int | None] = mapped_column(Integer)
    percent: Mapped[int | None] = mapped_column(Integer)
    #: the meter an energy line (flat or time-of-use) was rated on; null on the account's own
    #: lines (tiers and increments on the total, basic charge, power factor, funds, allowance)
    meter_id: Mapped[str | None] = mapped_column(String(32))


class BillMeter(Base):
    """One meter of a bill on several meters (一户多表): its reads and kWh after the multiplier.

    A bill on one meter keeps these on the ``bills`` row itself (no row here).
    """

    __tablename__ = "bill_meters"
    __table_args__ = (Index("ix_bill_meters_meter", "meter_id"),)
    bill_id: Mapped[str] = mapped_column(ForeignKey("bills.bill_id"), primary_key=True)
    meter_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    multiplier: Mapped[int] = mapped_column(Integer)
    #: 0.01 kWh
    kwh: Mapped[int] = mapped_column(BigInteger)
    estimated: Mapped[bool] = mapped_column(Boolean)
    read_from_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_from: Mapped[int | None] = mapped_column(BigInteger)
    read_to_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_to: Mapped[int | None] = mapped_column(BigInteger)


class BillException(Base):
    """An account a run could not bill, with the reason (no read, invalid read, no tariff …).

    Never skipped silently: every candidate of a run is either billed or listed here.
    """

    __tablename__ = "bill_exceptions"
    __table_args__ = (
        Index("ix_bill_exceptions_period", "period", "account_id"),
        Index("uq_bill_exceptions_run_account", "run_id", "account_id", unique=True),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(7))
    account_id: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text)


class BillRender(Base):
    """A rendered bill document (账单文件): which file holds which bill in which format and
    language, and the hash of the content it was drawn from.

    Rendering a bill run again skips every bill whose content hash is unchanged and whose file
    is still there; a bill whose content changed (a payment since, a rebill) is drawn again
    and its row updated — so the file a customer is sent is always the bill as it stands.
    """

    __tablename__ = "bill_renders"
    __table_args__ = (Index("ix_bill_renders_period", "period", "format", "lang"),)
    bill_id: Mapped[str] = mapped_column(ForeignKey("bills.bill_id"), primary_key=True)
    #: pdf or html
    format: Mapped[str] = mapped_column(String(4), primary_key=True)
    #: zh-CN or en
    lang: Mapped[str] = mapped_column(String(5), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(7))
    #: SHA-256 of the document's content (its JSON without the reading day) and language
    content_hash: Mapped[str] = mapped_column(String(64))
    #: where the file is (under DATA_DIR/bills unless --out-dir said otherwise)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    rendered_at: Mapped[datetime] = mapped_column(UTCDateTime)
