"""Tables of channel statements, bank withholding and daily reconciliation (migration 0007).

- ``statement_files``: every statement, bank result and agent file exactly as received (the
  inbox for files), stored before it is parsed, with what became of it;
- ``withholding_mandates`` (代扣协议): which account may be debited at which bank account, from
  when to when; the bank account number is encrypted (PiiCipher) and only shown masked;
- ``bank_batches`` / ``bank_batch_lines``: the monthly debit batch sent to a bank and each
  line's answer (success, failed with a reason for dunning, returned after success);
- ``reconciliation_reports``: one per channel and day, overwritten by a re-run;
- ``reconciliation_discrepancies`` (待澄清事项): the clarification worklist, unique per
  channel, day, kind and reference so a re-run adds nothing.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

_ID = BigInteger().with_variant(Integer, "sqlite")

LINE_OUTCOMES = ("pending", "success", "failed", "returned")
DISCREPANCY_KINDS = (
    "missing_in_ledger",
    "missing_in_statement",
    "amount_mismatch",
    "duplicate",
    "refund_not_in_ledger",
    "unposted",
)


class StatementFile(Base):
    """A statement or bank/agent file as received (原始文件), kept whatever its fate."""

    __tablename__ = "statement_files"
    __table_args__ = (Index("uq_statement_files_digest", "kind", "channel", "sha256", unique=True),)
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    #: statement (Alipay/WeChat bill), bank_result, agent
    kind: Mapped[str] = mapped_column(String(12))
    channel: Mapped[str] = mapped_column(String(12))
    #: the bank or agent layout code, when there is one
    layout: Mapped[str | None] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: empty once sealed: a bank result or agent file names account holders and bank accounts
    body: Mapped[bytes] = mapped_column(LargeBinary)
    #: the file's bytes (base64) sealed with the personal-data keyring, bound to kind, channel
    #: and digest (db/pii.py ``STATEMENT_BODY``); None for an empty file
    body_enc: Mapped[str | None] = mapped_column(Text, default=None)
    #: received, processed, refused (unreadable or failed its integrity check)
    status: Mapped[str] = mapped_column(String(10), default="received")
    error: Mapped[str | None] = mapped_column(Text)


class WithholdingMandate(Base):
    """A withholding mandate (代扣协议): the customer lets the utility debit a bank account."""

    __tablename__ = "withholding_mandates"
    __table_args__ = (
        Index("uq_withholding_mandates_account", "account_id", "bank", "active_from", unique=True),
        Index("ix_withholding_mandates_bank", "bank", "active_from"),
    )
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(32))
    #: the bank's layout code (payments/layouts/*.toml)
    bank: Mapped[str] = mapped_column(String(40))
    #: the bank account number, AES-GCM encrypted (core.crypto.PiiCipher); shown masked only
    bank_account_enc: Mapped[str] = mapped_column(Text)
    #: the account holder's name as the bank knows it (户名); banks refuse a debit on a mismatch
    holder_name: Mapped[str] = mapped_column(Text)
    active_from: Mapped[date] = mapped_column(Date)
    #: last day the mandate may be used; None while it runs
    active_to: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BankBatch(Base):
    """One debit batch file (代扣批次) sent to a bank for a billing period."""

    __tablename__ = "bank_batches"
    __table_args__ = (Index("uq_bank_batches_period", "bank", "period", "attempt", unique=True),)
    batch_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    bank: Mapped[str] = mapped_column(String(40))
    period: Mapped[str] = mapped_column(String(7))
    #: 1 for the month's first batch; a re-debit of what is still open after the answer is 2, …
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    file_date: Mapped[date] = mapped_column(Date)
    count: Mapped[int] = mapped_column(Integer)
    #: fen
    total: Mapped[int] = mapped_column(BigInteger)
    #: exported (waiting for the bank's answer) or answered
    status: Mapped[str] = mapped_column(String(10), default="exported")


class BankBatchLine(Base):
    """One debit in a batch and the bank's answer for it."""

    __tablename__ = "bank_batch_lines"
    __table_args__ = (Index("ix_bank_batch_lines_account", "account_id", "outcome"),)
    batch_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    serial: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32))
    mandate_id: Mapped[int] = mapped_column(_ID)
    #: fen asked for (the account's open amount when the batch was made)
    amount: Mapped[int] = mapped_column(BigInteger)
    #: pending, success, failed (reason says why: insufficient_funds …), returned (退票/冲正)
    outcome: Mapped[str] = mapped_column(String(10), default="pending")
    result_code: Mapped[str | None] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(String(40))
    payment_id: Mapped[str | None] = mapped_column(String(40))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReconciliationReport(Base):
    """The reconciliation of one channel and business day (对账报告)."""

    __tablename__ = "reconciliation_reports"
    channel: Mapped[str] = mapped_column(String(12), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    statement_file_id: Mapped[int | None] = mapped_column(_ID)
    #: the statement's own totals agreed with its lines (渠道汇总 = 明细合计)
    settlement_ok: Mapped[bool] = mapped_column(Boolean)
    #: counts and fen totals per class, settlement check figures (JSON)
    figures: Mapped[str] = mapped_column(Text)


class Discrepancy(Base):
    """A line of the clarification worklist (对账差错待澄清): who handles it, how old, how solved."""

    __tablename__ = "reconciliation_discrepancies"
    __table_args__ = (
        Index("uq_reconciliation_discrepancies", "channel", "day", "kind", "ref", unique=True),
        Index("ix_reconciliation_discrepancies_open", "resolved_at", "owner"),
    )
    id: Mapped[int] = mapped_column(_ID, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(12))
    day: Mapped[date] = mapped_column(Date)
    #: missing_in_ledger (长款), missing_in_statement (短款), amount_mismatch, duplicate,
    #: refund_not_in_ledger, unposted (a bank/agent line that could not be posted)
    kind: Mapped[str] = mapped_column(String(24))
    transaction_id: Mapped[str] = mapped_column(String(64))
    #: what makes the row unique within channel, day and kind (transaction id, + line or refund)
    ref: Mapped[str] = mapped_column(String(100))
    statement_amount: Mapped[int | None] = mapped_column(BigInteger)
    ledger_amount: Mapped[int | None] = mapped_column(BigInteger)
    line: Mapped[int | None] = mapped_column(Integer)
    payment_id: Mapped[str | None] = mapped_column(String(40))
    order_no: Mapped[str | None] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(40))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)
