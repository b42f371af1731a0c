"""Payments (缴费): orders handed to channels, the inbox of everything channels send, posted
payments and their allocations to bills, late fees and credit.

Why four tables:
- ``payment_orders``: what we asked a channel to collect (out_trade_no); a notification must match
  its order's account and amount or it is refused.
- ``payment_inbox``: every notification or file line exactly as it arrived, stored before anything
  else, with the verdict. A forged notification is a row here with a refusal, nothing more: it is
  never unique on the channel's transaction id, so it cannot block the genuine one.
- ``payments``: verified payments, unique on (channel, transaction_id) — the database, not the
  code, makes a second delivery a no-op. Each posts one ledger entry of kind ``payment``.
- ``payment_allocations``: which bills and late fees a payment settled, and what was left as credit
  (预收). A refund or bank return reverses exactly these rows.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

ORDER_STATUSES = ("open", "paid", "closed")
PAYMENT_STATUSES = ("posted", "refunded", "returned")
ALLOCATION_TARGETS = ("bill", "late_fee", "credit")

INBOX_VERDICTS = ("pending", "posted", "duplicate", "acknowledged", "refused")

_ID = BigInteger().with_variant(Integer, "sqlite")


class PaymentOrder(Base):
    """A payment order (支付订单) created for a channel; its number is the channel's out_trade_no."""

    __tablename__ = "payment_orders"
    order_no: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), index=True)
    channel: Mapped[str] = mapped_column(String(12))
    #: fen the customer is asked to pay; a notification for another amount is refused
    amount: Mapped[int] = mapped_column(BigInteger)
    #: open → paid (a payment posted) or closed (expired or cancelled: later payments refused)
    status: Mapped[str] = mapped_column(String(8), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboxMessage(Base):
    """One notification, callback or statement line as received (收到的原始通知)."""

    __tablename__ = "payment_inbox"
    __table_args__ = (
        Index("ix_payment_inbox_verdict", "verdict", "received_at"),
        Index("ix_payment_inbox_channel_txn", "channel", "transaction_id"),
    )
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(12))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: request headers that carry proof (Wechatpay-*), JSON text; empty for form posts and files
    headers: Mapped[str] = mapped_column(Text, default="")
    #: empty once sealed (migration 0033): a notification names its payer (Alipay's
    #: buyer_logon_id — a phone or an e-mail —, buyer_id; the payer's openid inside WeChat Pay's
    #: envelope, readable with the APIv3 key this server holds)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    #: sha256 hex of the body as received (what the sealed copy is bound to)
    body_sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    #: the body (base64) sealed with the personal-data keyring, bound to channel and digest
    #: (db/pii.py ``INBOX_BODY``); None for an empty body
    body_enc: Mapped[str | None] = mapped_column(Text, default=None)
    #: pending until processed; posted, duplicate (already posted), acknowledged (a status we do
    #: not post, e.g. WAIT_BUYER_PAY) or refused
    verdict: Mapped[str] = mapped_column(String(12), default="pending")
    #: stable refusal code (bad_signature, unknown_order, amount_mismatch, …) when refused
    refusal: Mapped[str | None] = mapped_column(String(24))
    detail: Mapped[str | None] = mapped_column(Text)
    #: as read from the message, for the worklist; NOT unique (a forgery may claim any id)
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    payment_id: Mapped[str | None] = mapped_column(String(40))
    #: for the clarification worklist: who handles it and when it was resolved
    owner: Mapped[str | None] = mapped_column(String(40))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Payment(Base):
    """A verified payment (实收), posted once to the ledger."""

    __tablename__ = "payments"
    __table_args__ = (
        Index("uq_payments_channel_txn", "channel", "transaction_id", unique=True),
        Index("ix_payments_account", "account_id", "paid_at"),
        Index("ix_payments_business_date", "channel", "business_date"),
    )
    #: our id, "P" + channel + transaction id digest; the ledger entry's reference
    payment_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(12))
    #: the channel's id (trade_no, transaction_id, bank serial, counter receipt number)
    transaction_id: Mapped[str] = mapped_column(String(64))
    order_no: Mapped[str | None] = mapped_column(String(40))
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    #: fen, > 0
    amount: Mapped[int] = mapped_column(BigInteger)
    #: when the customer paid (the channel's time)
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the business date (Asia/Shanghai) of paid_at: the statement day it reconciles against
    business_date: Mapped[date] = mapped_column(Date)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: callback, statement (posted by reconciliation), bank_file, counter, import, demo
    source: Mapped[str] = mapped_column(String(12))
    #: posted; refunded or returned once reversed (the reversal is a new ledger entry)
    status: Mapped[str] = mapped_column(String(10), default="posted")


class CashierShift(Base):
    """A cashier's shift at a service-hall counter (营业厅收费班次), closed by counting the till."""

    __tablename__ = "cashier_shifts"
    shift_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    cashier: Mapped[str] = mapped_column(String(40))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: fen in the till at the start (找零备用金)
    opening_float: Mapped[int] = mapped_column(BigInteger)
    #: open → closed; a closed shift takes no more payments
    status: Mapped[str] = mapped_column(String(8), default="open")
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: fen the cashier counted at close, and what the receipts say should be there
    counted_cash: Mapped[int | None] = mapped_column(BigInteger)
    expected_cash: Mapped[int | None] = mapped_column(BigInteger)
    #: counted − expected (长款 > 0, 短款 < 0)
    difference: Mapped[int | None] = mapped_column(BigInteger)


class CounterReceipt(Base):
    """One payment taken at the counter: the receipt (收费凭证) behind a ``counter`` payment."""

    __tablename__ = "counter_receipts"
    __table_args__ = (Index("ix_counter_receipts_shift", "shift_id"),)
    receipt_no: Mapped[str] = mapped_column(String(48), primary_key=True)
    shift_id: Mapped[str] = mapped_column(String(40))
    payment_id: Mapped[str] = mapped_column(String(40))
    #: cash or card (card takings are not in the till)
    method: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInteger)
    #: cash handed over and change given (fen), for cash
    tendered: Mapped[int | None] = mapped_column(BigInteger)
    change: Mapped[int | None] = mapped_column(BigInteger)


class RefusalLogRow(Base):
    """Notifications that nobody proved the channel sent (bad signature, garbage, replays, too
    large, throttled): a capped log apart from the inbox, written by its own thread.

    Anyone can post to a callback URL, so what is kept here is bounded on purpose: per source at
    most a few rows a minute are kept one by one (body hash and size, never the body; the claimed
    transaction id filtered to printable ASCII), the rest are counted in one summary row per
    source, channel and reason (``count``), and the oldest rows beyond the cap are pruned. None of
    it ever shares a transaction with genuine postings.
    """

    __tablename__ = "payment_refusal_log"
    __table_args__ = (Index("ix_payment_refusal_log_last_at", "last_at"),)

    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(12))
    #: the client address the request came from (after trusted proxies)
    source: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(24))
    detail: Mapped[str | None] = mapped_column(String(200))
    claimed_transaction_id: Mapped[str | None] = mapped_column(String(64))
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    body_size: Mapped[int] = mapped_column(BigInteger, default=0)
    #: 1 for a row kept one by one; n for a summary of n refusals between first_at and last_at
    count: Mapped[int] = mapped_column(BigInteger, default=1)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)
