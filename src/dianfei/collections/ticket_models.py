"""The service-ticket register (工单): complaints (投诉), inquiries, requests and feedback of
customers, with the satisfaction score of the follow-up survey (回访满意度).

Who, what category, when it was opened and decided, and the score the customer gave (1–5) when
a survey was made — what the complaint rate and satisfaction count. The workflow of
:mod:`dianfei.collections.tickets` adds the account, the bill, notice or visit it is about, a
status, the SLA deadline (decision within N working days), escalation to a supervisor when the
deadline passes, and the decision with who made it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

#: every complaint category (投诉) counts in the complaint rate
COMPLAINT_CATEGORIES = ("complaint", "notice_complaint", "collector_complaint")
#: the categories of the register: complaints, inquiries, requests, feedback, and the field-work
#: ones (a disputed bill 电费争议, a question about the meter 表计疑问, a service request)
TICKET_CATEGORIES = ("complaint", "inquiry", "request", "feedback", "billing_dispute",
                     "meter_question", "service", "notice_complaint", "collector_complaint")
#: open → decided; open → escalated (SLA passed, a supervisor's) → decided
TICKET_STATUSES = ("open", "escalated", "decided")


class Ticket(Base):
    """One customer contact that needs an answer (一张工单)."""

    __tablename__ = "service_tickets"
    __table_args__ = (
        Index("ix_service_tickets_opened", "opened_at"),
        Index("ix_service_tickets_customer", "customer_id", "opened_at"),
        Index("uq_service_tickets_request", "request_id", unique=True),
        Index("ix_service_tickets_account", "account_id", "ticket_id"),
        # the daily run's escalation and the snapshot's disputed bills read the undecided ones
        Index("ix_service_tickets_undecided", "status", "sla_due_at",
              sqlite_where=text("status != 'decided'"),
              postgresql_where=text("status != 'decided'")),
        CheckConstraint("satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5",
                        name="satisfaction_1_to_5"),
    )
    ticket_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                           primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    #: one of TICKET_CATEGORIES
    category: Mapped[str] = mapped_column(String(24))
    #: what the customer said (free text, no PII beyond what the customer wrote)
    summary: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: when the ticket was answered and closed; None while open
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the customer's score in the follow-up survey, 1 (very dissatisfied) … 5 (very satisfied);
    #: None when no survey was made (never a guessed value)
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    #: open, escalated, decided
    status: Mapped[str] = mapped_column(String(10), server_default="open")
    #: the caller's idempotency key (None for tickets recorded without one)
    request_id: Mapped[str | None] = mapped_column(String(64))
    account_id: Mapped[str | None] = mapped_column(String(32))
    #: what the ticket is about: a bill, a notice (its notify key), a visit
    bill_id: Mapped[str | None] = mapped_column(String(64))
    notice_key: Mapped[str | None] = mapped_column(String(120))
    visit_id: Mapped[int | None] = mapped_column(BigInteger)
    opened_by: Mapped[str | None] = mapped_column(String(64))
    #: the SLA: decided by this instant (N working days of the collections calendar)
    sla_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: whom it was escalated to (a role or a user name)
    escalated_to: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(64))
