"""Users, their API tokens and failed sign-ins.

Passwords are stored only as argon2id hashes; API tokens only as the sha256 of the token (a token
is 32 random bytes, so a fast hash is enough and a request costs one index lookup), each with its
expiry. Failed sign-ins are kept (without the password) to slow down guessing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime


class User(Base):
    """A person who signs in: staff with a role, or a customer tied to one customer."""

    __tablename__ = "users"
    user_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                         primary_key=True, autoincrement=True)
    #: the sign-in name, unique
    username: Mapped[str] = mapped_column(String(64), unique=True)
    #: admin, billing_clerk, cashier, collector, supervisor, auditor, customer (security.roles)
    role: Mapped[str] = mapped_column(String(24))
    #: the one customer a ``customer`` user may see (NULL for staff)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.customer_id"))
    #: argon2id hash of the password (never the password)
    password_hash: Mapped[str] = mapped_column(Text)
    #: a disabled user cannot sign in and its tokens stop working
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    """A bearer token handed out by ``POST /api/v1/auth/token`` (or a console session)."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_user", "user_id"),)
    #: sha256 hex of the token; the token itself is only ever in the caller's hands
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.user_id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the token is refused from this instant on
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: set when signed out; a revoked token is refused
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SignInFailure(Base):
    """A failed sign-in: counted per user name and per source address to rate-limit guessing."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_username", "username", "at"),
                      Index("ix_sign_in_failures_source", "source", "at"))
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    #: the caller's address (or ``cli``)
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
