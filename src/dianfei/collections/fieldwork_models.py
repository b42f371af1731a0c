"""Tables of collector field work (外勤催收): visits and calls with their outcome (走访/电话催收),
promises to pay (承诺缴费) and satisfaction surveys (回访满意度).

``collection_visits`` is insert-only (database triggers refuse UPDATE and DELETE): two collectors
recording on the same account at the same time both keep their row, in order, and a retried
request (same ``request_id``) finds the row it stored the first time.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, CheckConstraint, Date, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

_ID = BigInteger().with_variant(Integer, "sqlite")

#: what a visit or call ended with
OUTCOMES = ("paid", "promise", "dispute", "hardship", "wrong_contact", "vacant", "refused")
CHANNELS = ("visit", "call")
#: what a survey may be about
SURVEY_SUBJECTS = ("visit", "ticket", "reconnection")


class CollectionVisit(Base):
    """One visit or call by a collector (一次走访/电话) and what came of it."""

    __tablename__ = "collection_visits"
    __table_args__ = (
        Index("uq_collection_visits_request", "request_id", unique=True),
        Index("ix_collection_visits_account", "account_id", "visit_id"),
        Index("ix_collection_visits_collector", "collector_id", "at"),
    )
    visit_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    #: the caller's idempotency key: a retried request is stored once
    request_id: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    collector_id: Mapped[str] = mapped_column(String(32))
    #: visit or call
    channel: Mapped[str] = mapped_column(String(8))
    #: paid, promise, dispute, hardship, wrong_contact, vacant, refused
    outcome: Mapped[str] = mapped_column(String(16))
    #: when the visit or call took place
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: when it was recorded, and by whom (a user name)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(64))
    bill_id: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)


class PaymentPromise(Base):
    """A promise to pay (承诺缴费): an amount by a date. While open the ladder pauses; the daily
    run marks it kept (the ladder restarts) or broken (back on the ladder one level higher)."""

    __tablename__ = "payment_promises"
    __table_args__ = (
        Index("ix_payment_promises_open", "account_id",
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
        Index("ix_payment_promises_account", "account_id", "promise_id"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )
    promise_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    visit_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    #: payments posted from this instant on count towards the promise
    made_at: Mapped[datetime] = mapped_column(UTCDateTime)
    made_on: Mapped[date] = mapped_column(Date)
    #: the promised date: payments by the end of this business day count
    due_on: Mapped[date] = mapped_column(Date)
    #: fen promised
    amount: Mapped[int] = mapped_column(BigInteger)
    #: where the account stood on the ladder when the promise was made (None: not on it)
    ladder_at: Mapped[str | None] = mapped_column(String(40))
    level_at: Mapped[str | None] = mapped_column(String(40))
    #: open, kept, broken
    status: Mapped[str] = mapped_column(String(8), default="open")
    closed_on: Mapped[date | None] = mapped_column(Date)
    #: fen paid towards it when it closed
    paid: Mapped[int | None] = mapped_column(BigInteger)


class SatisfactionSurvey(Base):
    """The customer's score (1–5) after a visit, a ticket or a reconnection (回访满意度)."""

    __tablename__ = "satisfaction_surveys"
    __table_args__ = (
        Index("uq_satisfaction_surveys_request", "request_id", unique=True),
        Index("uq_satisfaction_surveys_subject", "subject", "subject_id", unique=True),
        Index("ix_satisfaction_surveys_at", "at"),
        CheckConstraint("score BETWEEN 1 AND 5", name="score_1_to_5"),
    )
    survey_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str | None] = mapped_column(String(32))
    #: visit, ticket or reconnection
    subject: Mapped[str] = mapped_column(String(16))
    #: visit_id, ticket_id or the stop case id of the reconnection
    subject_id: Mapped[int] = mapped_column(BigInteger)
    score: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(64))
