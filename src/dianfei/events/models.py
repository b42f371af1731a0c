"""Events and their deliveries: the persistent bus of the money core.

An event is written by the transaction that causes it (a payment posted, a bill cancelled …), so
it exists exactly when its cause committed. At the same moment one ``event_deliveries`` row is
written per consumer subscribed to the event's type; a consumer claims its pending rows, handles
them and marks them handled in ONE transaction with its own effects. That is why no consumer
keeps a high-water position on event ids: on PostgreSQL ids are taken when a transaction starts
writing and become visible when it commits, so a transaction that commits late would hide below
a position already passed. A pending delivery row is found whatever order transactions commit in.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

_ID = BigInteger().with_variant(Integer, "sqlite")


class Event(Base):
    """One thing that happened (payment posted, payment reversed, debit reversed, …)."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_account", "account_id", "event_id"),)
    event_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    #: payment_posted, payment_reversed, debit_reversed, credit_applied, bills_issued, …
    type: Mapped[str] = mapped_column(String(32))
    #: idempotency key: the same cause never publishes twice (e.g. ``payment_posted:{payment}``)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    account_id: Mapped[str | None] = mapped_column(String(32))
    customer_id: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the business date (Asia/Shanghai) of occurred_at
    business_date: Mapped[date] = mapped_column(Date)
    #: fen, when the event is about an amount (payment, reversal)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    #: what the account owes right after the event (fen, ≤ 0 when nothing is owed)
    balance_after: Mapped[int | None] = mapped_column(BigInteger)
    #: the event's own facts, JSON text
    payload: Mapped[str] = mapped_column(Text, default="{}")


class EventDelivery(Base):
    """One event for one consumer: pending until the consumer marks it handled."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        # the pending rows of a consumer, oldest first: what a claim reads
        Index("ix_event_deliveries_pending", "consumer", "event_id",
              sqlite_where="handled_at IS NULL", postgresql_where="handled_at IS NULL"),
    )
    event_id: Mapped[int] = mapped_column(_ID, primary_key=True)
    #: the package that follows the event: collections (later notify, risk, reporting)
    consumer: Mapped[str] = mapped_column(String(24), primary_key=True)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: failed attempts; a failing event is retried on the next claim
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
