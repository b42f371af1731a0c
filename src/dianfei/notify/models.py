"""Tables of the notify package (通知): the outbox, its delivery attempts, contacts and opt-outs.

The outbox (通知发件箱) is the only way a notice leaves dianfei. A caller (collections, billing,
payments) *enqueues* a row under an idempotency key in its own transaction; ``dispatch`` later
sends what is due. A row moves ``queued → sending → sent (→ delivered)`` or ends ``failed``,
``opted_out`` or ``suppressed``; every try is a row in ``notify_attempts``. Nothing is deleted:
the outbox is also the account's notice timeline (通知记录), which a supply stop must be able to
prove (《供电营业规则》 art. 66–67: the stop notice must reach the customer 3–7 days before).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

_ID = BigInteger().with_variant(Integer, "sqlite")

#: every status an outbox row can carry
STATUSES = ("queued", "sending", "sent", "delivered", "failed", "opted_out", "suppressed")


class OutboxMessage(Base):
    """One notice to one customer on one channel (一条通知)."""

    __tablename__ = "notify_outbox"
    __table_args__ = (
        # enqueue is idempotent on the caller's key: the same key never makes a second notice
        Index("uq_notify_outbox_key", "key", unique=True),
        # dispatch reads what is due; the timeline reads by account
        Index("ix_notify_outbox_due", "status", "next_attempt_at"),
        Index("ix_notify_outbox_account", "account_id", "queued_at"),
        # rate limits count today's sends per customer and channel
        Index("ix_notify_outbox_customer", "customer_id", "channel", "claimed_at"),
        # collections reads what was sent since its last look
        Index("ix_notify_outbox_updated", "updated_at"),
    )
    outbox_id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    #: the caller's idempotency key, e.g. "dunning:C00001:2026-10:reminder:sms"
    key: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    #: reminder, final_reminder, stop_notice, pre_stop, prepay_warning, cutoff_notice,
    #: reconnected, payment_receipt, bill_forecast (see service.NOTICES)
    notice: Mapped[str] = mapped_column(String(24))
    #: sms, email, wechat, letter
    channel: Mapped[str] = mapped_column(String(10))
    #: zh-CN or en; None = the contact's preference at send time, else the default
    locale: Mapped[str | None] = mapped_column(String(10))
    #: the template variables as JSON (amounts already yuan strings); never phone numbers
    context: Mapped[str] = mapped_column(Text)
    #: queued, sending, sent, delivered, failed, opted_out, suppressed
    status: Mapped[str] = mapped_column(String(12))
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the caller's earliest send time (e.g. a pre-stop notice 30 minutes before the stop)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: when dispatch may next try: not_before, then pushed by quiet hours, rate limits, backoff
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: attempts started so far (a row in notify_attempts each)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: when the last attempt marked the row 'sending' (rate limits count these)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the last error code and message, or why the row was suppressed / opted out
    last_error: Mapped[str | None] = mapped_column(Text)
    #: what the provider calls it: SMS BizId, e-mail Message-ID, the letter's PDF path
    provider_ref: Mapped[str | None] = mapped_column(Text)
    #: a letter that replaces an undeliverable legally required notice names the original row
    fallback_of: Mapped[int | None] = mapped_column(ForeignKey("notify_outbox.outbox_id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeliveryAttempt(Base):
    """One try at sending an outbox row (投递记录): when, and what came back."""

    __tablename__ = "notify_attempts"
    __table_args__ = (Index("uq_notify_attempts_outbox_no", "outbox_id", "attempt_no", unique=True),)
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("notify_outbox.outbox_id"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: None while in flight; then sent, retry, failed or unknown (the process stopped mid-send)
    outcome: Mapped[str | None] = mapped_column(String(10))
    #: the provider's error code (e.g. isv.BUSINESS_LIMIT_CONTROL) or ours (timeout, smtp_550)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    provider_ref: Mapped[str | None] = mapped_column(Text)


class Contact(Base):
    """How a customer wants to be reached beyond the phone on the customer record (联系方式)."""

    __tablename__ = "notify_contacts"
    customer_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: personal data, encrypted at rest (core.crypto.PiiCipher); shown masked
    email_enc: Mapped[str | None] = mapped_column(Text)
    #: the customer's openid with the utility's WeChat official account (公众号)
    wechat_openid: Mapped[str | None] = mapped_column(String(64))
    #: zh-CN or en
    locale: Mapped[str | None] = mapped_column(String(10))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OptOut(Base):
    """A customer's refusal of a channel (退订). Honoured for every notice except those the law
    requires, which fall back to a letter (see docs/notify.md). Withdrawn, never deleted."""

    __tablename__ = "notify_opt_outs"
    __table_args__ = (
        # at most one standing opt-out per customer and channel
        Index("uq_notify_opt_outs_active", "customer_id", "channel", unique=True,
              sqlite_where=text("withdrawn_at IS NULL"),
              postgresql_where=text("withdrawn_at IS NULL")),
    )
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    customer_id: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    opted_out_at: Mapped[datetime] = mapped_column(UTCDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


__all__ = ["STATUSES", "Base", "Contact", "DeliveryAttempt", "OptOut", "OutboxMessage"]
