"""One-time sign-in codes of the customer portal (短信验证码登录) and their failed checks.

A code is stored only as a keyed hash (the PII keyring's look-up key), with its expiry, the
attempts made against it and when it was used: a code opens one session, once. The phone is
stored as its keyed look-up hash, never in clear.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

_ID = BigInteger().with_variant(Integer, "sqlite")


class OtpChallenge(Base):
    """A code sent (or, for a phone no customer has, pretended sent) to a phone."""

    __tablename__ = "portal_otp_challenges"
    __table_args__ = (Index("ix_portal_otp_challenges_phone", "phone_key", "created_at"),
                      Index("ix_portal_otp_challenges_source", "source", "created_at"))
    challenge_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    #: keyed hash of the phone (customers.phone_lookup's form)
    phone_key: Mapped[str] = mapped_column(String(80))
    #: the customer the code signs in; NULL when the phone is not (uniquely) a customer's
    customer_id: Mapped[str | None] = mapped_column(String(32))
    #: keyed hash of salt and code (never the code)
    code_hash: Mapped[str] = mapped_column(String(120))
    #: the caller's address
    source: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: wrong codes tried against this challenge
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: set when the code signed in (or a newer code replaced it): never usable again
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OtpFailure(Base):
    """A wrong (or expired, or unknown) code: counted per phone and per address."""

    __tablename__ = "portal_otp_failures"
    __table_args__ = (Index("ix_portal_otp_failures_phone", "phone_key", "at"),
                      Index("ix_portal_otp_failures_source", "source", "at"))
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    phone_key: Mapped[str] = mapped_column(String(80))
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
