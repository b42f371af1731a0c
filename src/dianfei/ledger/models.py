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
    #: the audit record that covers this row (its batch's digest, see ``dianfei.audit``)
    audit_batch: Mapped[int | None] = mapped_column(BigInteger)


ITEM_KINDS = ("bill", "late_fee", "credit")


#: the columns of ``ix_open_items_period``: a bill item by its period and reference, with its
#: kept clearing state (what ``payments.repository``'s period sums read; covering on both
#: databases — SQLite has no INCLUDE, so they are key columns)
PERIOD_INDEX = ("period", "reference", "item_kind", "amount", "cleared", "last_cleared_at",
                "paid_in_full_at")


class OpenItem(Base):
    """An open item (未清项) of an account: what it owes per bill and late fee, and its credit.

    Kept in the transaction that posts the ledger rows changing it (debit, reversal, payment,
    clearing), never recomputed: dunning, late fees and ``account show`` read these rows, and
    ``ledger check`` proves they equal what the ledger and the clearings derive.

    - a debit (bill, late fee) is an item with its ledger reference; ``open_amount`` is what is
      still unpaid (0 once cleared; the row stays as history);
    - credit (预收) is an item per payment, reference ``CR:{payment}``, with a NEGATIVE
      ``open_amount``: the part of that payment no debit took yet. It clears the next debit it
      meets, so an account never holds credit and an open debit at once.
    """

    __tablename__ = "open_items"
    __table_args__ = (
        Index("ix_open_items_account", "account_id"),
        # what a snapshot reads: only the items that are still open (or credit)
        Index("ix_open_items_open", "account_id", "due_on",
              sqlite_where="open_amount <> 0", postgresql_where="open_amount <> 0"),
        Index("ix_open_items_credit", "account_id",
              sqlite_where="open_amount < 0", postgresql_where="open_amount < 0"),
        # what ``dianfei kpi`` reads of a period's bill items, together and without the table
        # (a reference is the customer, then the period: a period's items lie on nearly every
        # page of the primary key, and their rows wherever their last update put them)
        Index("ix_open_items_period", *PERIOD_INDEX),
    )
    #: the ledger reference of the debit (bill id, ``LF:{bill}:{day}``) or ``CR:{payment}``
    reference: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32))
    #: bill, late_fee or credit
    item_kind: Mapped[str] = mapped_column(String(8))
    #: the bill (for a late fee: the bill it accrued on); the payment id for credit
    bill_id: Mapped[str | None] = mapped_column(String(40))
    #: the date from which a debit is overdue; None for credit
    due_on: Mapped[date | None] = mapped_column(Date)
    #: fen; the debit's amount as posted (credit: 0)
    amount: Mapped[int] = mapped_column(BigInteger)
    #: fen still open: > 0 owed, < 0 credit available, 0 cleared
    open_amount: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # -- a bill's clearing state (item_kind bill; 0/None otherwise), kept with its clearings in
    # the posting's transaction (``items.write``) so that the KPIs read one row per bill instead
    # of folding its clearings; ``ledger check`` proves it equals what the clearings derive
    #: fen: the sum of the clearings to this bill (``payment_allocations`` rows allocated_to
    #: bill with this bill id), refunds and reversals included
    cleared: Mapped[int] = mapped_column(BigInteger, server_default="0")
    #: the latest ``allocated_at`` of those clearings (None: never cleared)
    last_cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the ``allocated_at`` of the last clearing that brought their running sum (in
    #: (allocated_at, id) order) from below ``amount`` to at least it (None: never reached); the
    #: bill is paid in full while ``cleared`` ≥ ``amount``
    paid_in_full_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: the period of the item's bill (``bills.period``) for a bill item whose bill is stored;
    #: None otherwise (late fees, credit). Written with the row (``items.write``,
    #: ``items.insert_debits``), never changed (a bill's period never changes); checked by
    #: ``ledger check``
    period: Mapped[str | None] = mapped_column(String(7))


class Clearing(Base):
    """A clearing row (销账): part of a payment applied to a bill or a late fee, or kept as credit.

    Credit later used by a new debit is two rows at the time it is used: ``credit`` −x and
    ``bill`` +x, so the rows of a payment always sum to its amount. A refund or a cancelled bill
    is undone by rows of the opposite amount, never by editing.
    """

    __tablename__ = "payment_allocations"
    __table_args__ = (
        Index("ix_payment_allocations_payment", "payment_id"),
        Index("ix_payment_allocations_bill", "bill_id"),
        Index("ix_payment_allocations_account", "account_id", "allocated_at"),
        Index("ix_payment_allocations_item", "item_reference"),
        # late fees read what reached bills today
        Index("ix_payment_allocations_allocated_at", "allocated_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    payment_id: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[str] = mapped_column(String(32))
    #: bill, late_fee or credit
    allocated_to: Mapped[str] = mapped_column(String(8))
    #: the bill settled (for a late fee: the bill it accrued on); None for credit
    bill_id: Mapped[str | None] = mapped_column(String(40))
    #: the ledger reference of the debit settled (bill id or late fee reference)
    item_reference: Mapped[str | None] = mapped_column(String(64))
    #: fen; negative only to reverse (refund, return, cancelled bill) or to move credit onto a debit
    amount: Mapped[int] = mapped_column(BigInteger)
    #: when the money reached the item: the payment's paid_at, or when credit was applied
    allocated_at: Mapped[datetime] = mapped_column(UTCDateTime)
