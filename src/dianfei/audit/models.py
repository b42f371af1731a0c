"""The audit chain's tables.

``audit_records`` is append-only (database triggers refuse UPDATE and DELETE, as on the ledger);
each record's ``hash`` is ``sha256("{seq}\\n{prev_hash}\\n{body}")`` and ``prev_hash`` is the
hash of the record before, so editing, inserting or deleting a record breaks the chain at that
record. ``audit_head`` is one row: the last record's number and hash. Every append updates it,
which both serialises appenders (its row lock on PostgreSQL; SQLite serialises writers anyway)
and lets ``audit verify`` notice records deleted from the end of the chain.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dianfei.db.base import Base
from dianfei.db.types import UTCDateTime

#: the hash the first record follows
GENESIS = "0" * 64


class AuditRecord(Base):
    """One audited change (审计记录)."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_action", "action", "seq"),
        Index("ix_audit_records_subject", "subject", "seq"),
    )
    #: 1, 2, 3, … without gaps: the record's place in the chain
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    #: when the change was recorded (wall clock, UTC)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: who made the change: ``user:NAME``, ``cli:NAME``, ``system`` (copied from ``body``)
    actor: Mapped[str] = mapped_column(String(80))
    #: what changed, e.g. ``ledger.posting``, ``bill_run.chunk``, ``supply.suspended``
    action: Mapped[str] = mapped_column(String(48))
    #: the thing changed (account, bill, user, run …), or '' for a batch
    subject: Mapped[str] = mapped_column(String(120))
    #: the canonical JSON of the record (what the hash covers): at, actor, action, subject,
    #: detail; a ledger batch's detail carries ``ledger_batch``, ``ledger_rows``, ``ledger_digest``
    body: Mapped[str] = mapped_column(Text)
    #: the hash of the record before (``GENESIS`` for the first)
    prev_hash: Mapped[str] = mapped_column(String(64))
    #: sha256 hex of ``"{seq}\n{prev_hash}\n{body}"``
    hash: Mapped[str] = mapped_column(String(64))
    #: the ledger batch this record covers (ledger_entries.audit_batch), if any
    ledger_batch: Mapped[int | None] = mapped_column(BigInteger, index=True, unique=True)


class AuditHead(Base):
    """The chain's head: one row (id 1), updated by every append."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: the last record's seq (0: no record yet)
    seq: Mapped[int] = mapped_column(BigInteger)
    #: the last record's hash (``GENESIS`` when none)
    hash: Mapped[str] = mapped_column(String(64))
    #: the hash before the last record (kept so one UPDATE … RETURNING gives both)
    prev_hash: Mapped[str] = mapped_column(String(64))
