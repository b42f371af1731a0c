"""Tables of collector operations (C): contact-data flags (联系方式核实), contact checks, and the
good-payer credit rating (信用等级). Cross-department work lives in ``collection_tasks``
(models.CollectionTask: department, owner, outcome, escalation)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

_ID = BigInteger().with_variant(Integer, "sqlite")

#: why an account's contact data is in doubt
FLAG_REASONS = ("bounced", "wrong_contact", "missing_phone", "missing_email")
#: the contact field a reason puts in doubt
FLAG_FIELDS = {"bounced": None, "wrong_contact": "phone", "missing_phone": "phone",
               "missing_email": "email"}


class ContactFlag(Base):
    """An account whose phone or e-mail is in doubt (联系方式待核实): a bounced notice, a wrong
    contact met on a visit, or none on file. Unique on ``key`` (raised once per cause); at most
    one open flag per (account, field); closed by a verified update."""

    __tablename__ = "contact_flags"
    __table_args__ = (
        Index("uq_contact_flags_key", "key", unique=True),
        Index("uq_contact_flags_open", "account_id", "field", unique=True,
              sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'")),
        Index("ix_contact_flags_status", "status", "account_id"),
    )
    flag_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    #: the cause's idempotency key, e.g. "bounce:{outbox key}", "visit:{event key}"
    key: Mapped[str] = mapped_column(String(220))
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    #: bounced, wrong_contact, missing_phone, missing_email
    reason: Mapped[str] = mapped_column(String(20))
    #: phone or email
    field: Mapped[str] = mapped_column(String(8))
    #: open, verified
    status: Mapped[str] = mapped_column(String(10), default="open")
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the contact_update task that asks customer service to fix it
    task_id: Mapped[int | None] = mapped_column(BigInteger)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(64))
    #: JSON: the notice, channel, error, visit …
    detail: Mapped[str | None] = mapped_column(Text)


class ContactCheck(Base):
    """When an account's phone and e-mail were last verified with the customer (and by whom)."""

    __tablename__ = "contact_checks"
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    phone_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    phone_verified_by: Mapped[str | None] = mapped_column(String(64))
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    email_verified_by: Mapped[str | None] = mapped_column(String(64))


class CreditRating(Base):
    """An account's good-payer rating (信用等级) from its last 12 months, as of a day."""

    __tablename__ = "credit_ratings"
    # no index on the grade: nothing looks ratings up by grade, and the day's few thousand
    # regradings rewrote every page of one (migration 0048); the repeat defaulters, read every
    # day to pick their ladder, are a handful found through their own small index
    __table_args__ = (Index("ix_credit_ratings_repeat_defaulters", "account_id",
                            sqlite_where=text("repeat_defaulter"),
                            postgresql_where=text("repeat_defaulter")),)
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    #: A, B, C or D (incentives.toml)
    grade: Mapped[str] = mapped_column(String(2))
    points: Mapped[int] = mapped_column(Integer)
    on_time: Mapped[int] = mapped_column(Integer)
    late: Mapped[int] = mapped_column(Integer)
    broken: Mapped[int] = mapped_column(Integer)
    suspensions: Mapped[int] = mapped_column(Integer)
    #: a repeat defaulter (屡欠户) is dunned on the shorter ladder
    repeat_defaulter: Mapped[bool] = mapped_column(Boolean, default=False)
    as_of: Mapped[date] = mapped_column(Date)
    #: the day the account reached this grade
    since: Mapped[date] = mapped_column(Date)


class RatingQueue(Base):
    """Accounts whose rating facts changed in a way the day's rating cannot find by date: a
    payment recorded with an earlier business date (a bank file, an imported history). Written
    with the collection event, in its transaction; emptied by the rating that rates them."""

    __tablename__ = "credit_rating_queue"
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class RatingPass(Base):
    """The days the ratings were brought up to date: a full pass re-rates every open account; an
    incremental one (the next day, same rules) only the accounts whose facts could change."""

    __tablename__ = "credit_rating_passes"
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    #: digest of the rules (incentives.toml) the pass rated with: new rules force a full pass
    rules: Mapped[str] = mapped_column(String(64))
    full_pass: Mapped[bool] = mapped_column(Boolean)
    accounts: Mapped[int] = mapped_column(Integer)
