"""Tables of the daily worklists (催费工作清单): who works which account on which day, and the
collections roster of collectors (on duty, languages, daily capacity, sign-in name).

Why a collections-owned roster rather than columns on ``customers.collectors``: a collector's
identity (name, station) is customer master data, loaded with the population and owned by
``customers``; whether they are on duty today, the languages they speak, how many accounts they
can work a day and which user signs in as them are collections' working facts, changed by a
collections supervisor. Keeping them here leaves the customers package and its loaders alone.
A collector without a roster row is active, speaks no listed language and has the default
capacity of ``assignment.toml``.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime


class WorklistEntry(Base):
    """One account on one collector's list for one day. The primary key (day, account_id) is
    what makes an account sit on exactly one list a day. The rank is not stored: it is the
    order of ``expected`` within (day, collector), so a reassignment never renumbers rows."""

    __tablename__ = "worklist_entries"
    __table_args__ = (Index("ix_worklist_entries_collector", "day", "collector_id"),)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    collector_id: Mapped[str] = mapped_column(String(32))
    station_id: Mapped[str | None] = mapped_column(String(32))
    region_id: Mapped[str | None] = mapped_column(String(32))
    #: fen overdue when the list was built, and days since the oldest overdue due date
    amount_overdue: Mapped[int] = mapped_column(BigInteger)
    days_overdue: Mapped[int] = mapped_column(Integer)
    #: probability the customer pays (0–1, from the risk score), and the age factor applied
    pay_probability: Mapped[float] = mapped_column(Float)
    #: expected recovery in fen: probability × amount × age factor (the ranking key)
    expected: Mapped[int] = mapped_column(BigInteger)
    #: why the account ranks where it does, in words
    reason: Mapped[str] = mapped_column(Text)
    #: the assignment rule that chose the collector (or "own collector", "station least loaded")
    rule: Mapped[str] = mapped_column(String(80))
    #: the open collector-bound task kinds that put the account on the list (comma-separated)
    task_kinds: Mapped[str] = mapped_column(String(120))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the collector before the last reassignment or balancing move (null when never moved)
    moved_from: Mapped[str | None] = mapped_column(String(32))


class CollectorRoster(Base):
    """Collections' working facts about a collector (see the module docstring)."""

    __tablename__ = "collector_roster"
    collector_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: languages spoken, comma-separated codes (zh, yue, bo, ug, en …)
    languages: Mapped[str | None] = mapped_column(Text)
    #: accounts a day (null: the default of assignment.toml)
    daily_capacity: Mapped[int | None] = mapped_column(Integer)
    #: the user who signs in as this collector (users.username), unique
    username: Mapped[str | None] = mapped_column(String(64), unique=True)
