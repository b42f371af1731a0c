"""The service-ticket register (工单): complaints (投诉), inquiries, requests and feedback of
customers, with the satisfaction score of the follow-up survey (回访满意度).

A minimal register, enough for the complaint rate and satisfaction to be counted from real rows:
who, what category, when it was opened and decided, and the score the customer gave (1–5) when
a survey was made. The full ticket workflow (assignment, SLA clocks, escalation, ``dianfei
ticket …`` commands) belongs to the ticket issue and will extend this table.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

#: complaint (投诉) is what the complaint rate counts; the others are kept for the same register
TICKET_CATEGORIES = ("complaint", "inquiry", "request", "feedback")


class Ticket(Base):
    """One customer contact that needs an answer (一张工单)."""

    __tablename__ = "service_tickets"
    __table_args__ = (
        Index("ix_service_tickets_opened", "opened_at"),
        Index("ix_service_tickets_customer", "customer_id", "opened_at"),
        CheckConstraint("satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5",
                        name="satisfaction_1_to_5"),
    )
    ticket_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                           primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    #: complaint, inquiry, request, feedback
    category: Mapped[str] = mapped_column(String(12))
    #: what the customer said (free text, no PII beyond what the customer wrote)
    summary: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: when the ticket was answered and closed; None while open
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the customer's score in the follow-up survey, 1 (very dissatisfied) … 5 (very satisfied);
    #: None when no survey was made (never a guessed value)
    satisfaction: Mapped[int | None] = mapped_column(Integer)
