"""Ledger entries: the only record of what a customer owes.

Entries are never updated or deleted (database triggers refuse it). A correction is a new entry:
a ``reversal`` points at the entry it reverses and carries its amount negated. Amounts are fen:
positive = the customer owes more (bill, late fee, debit adjustment), negative = the customer owes
less (payment, credit adjustment, write-off).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

ENTRY_KINDS = ("bill", "payment", "late_fee", "adjustment", "write_off", "reversal")


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        # one entry of a kind per external reference: a bill is debited once, a payment posted once
        Index("uq_ledger_entries_kind_reference", "kind", "reference", unique=True),
        Index("ix_ledger_entries_account", "account_id", "entry_id"),
    )
    entry_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                          primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    #: bill, payment, late_fee, adjustment, write_off, reversal
    kind: Mapped[str] = mapped_column(String(12))
    #: fen; + owed by the customer, − credited to the customer
    amount: Mapped[int] = mapped_column(BigInteger)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: the business date (Asia/Shanghai) the entry belongs to
    business_date: Mapped[date] = mapped_column(Date)
    #: for debits: the date from which it is overdue (aging counts days past this)
    due_on: Mapped[date | None] = mapped_column(Date)
    #: the bill id, payment id, … this entry books; unique per kind
    reference: Mapped[str] = mapped_column(String(64))
    #: a reversal names the entry it reverses; each entry can be reversed at most once
    reverses_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_entries.entry_id"), unique=True
    )
    reason: Mapped[str | None] = mapped_column(Text)
