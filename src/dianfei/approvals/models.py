"""The approval requests: one row per change someone asked for that a second person decides.

``pending`` → ``executed`` (approved: the change was made in the approval's transaction),
``rejected`` (refused, with the checker's reason), ``expired`` (nobody decided in time) or
``withdrawn`` (a suspension order that no longer waits: the customer paid or agreed a plan).
``open_key`` (kind and subject) is set only while a request is pending and is unique, so one
subject never has two pending requests of one kind (a second ask answers 409 naming the first).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime


class ApprovalRequest(Base):
    __tablename__ = "approval_requests"
    __table_args__ = (
        Index("uq_approval_requests_open_key", "open_key", unique=True),
        Index("ix_approval_requests_state", "state", "kind", "request_id"),
        Index("ix_approval_requests_subject", "subject"),
    )
    request_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                            primary_key=True, autoincrement=True)
    #: waiver, write_off, bill_correction, suspension, tariff_change (approvals.kinds)
    kind: Mapped[str] = mapped_column(String(24))
    #: what it is about: a bill, a ledger reference, a stop case's account, a tariff id
    subject: Mapped[str] = mapped_column(String(64))
    #: the kind's parameters as JSON (validated when asked for, again when executed)
    payload: Mapped[str] = mapped_column(Text)
    #: fen the change is about when it moves money, as known when asked for (for reading only)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    #: pending, executed, rejected, expired, withdrawn (a suspension order that stopped waiting)
    state: Mapped[str] = mapped_column(String(10))
    #: the maker: a user name, or ``system:<rule>`` for a request a rule raised
    requested_by: Mapped[str] = mapped_column(String(80))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the checker (or ``system`` for an expiry) and when
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the checker's reason for a refusal
    decision_reason: Mapped[str | None] = mapped_column(Text)
    #: JSON: what the executed change did (amounts, entries, bills)
    result: Mapped[str | None] = mapped_column(Text)
    #: "kind:subject" while pending, NULL once decided
    open_key: Mapped[str | None] = mapped_column(String(96))
