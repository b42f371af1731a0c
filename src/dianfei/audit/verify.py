"""``audit verify``: walk the chain and recompute every ledger batch's digest.

What breaks, and how it is named (the first finding, by record number, is "the first broken
record"):

- a record whose hash does not match its number, previous hash and body: **edited**;
- a record whose ``prev_hash`` is not the hash of the record before it, or whose number is not
  the one after it: **inserted** (or the chain was re-linked there);
- a number missing from the sequence, or records missing from the end (the head names a later
  record than the last one stored): **deleted**;
- a record whose columns disagree with its body (someone edited ``action`` but not ``body``);
- a ledger batch whose rows no longer give the digest its record carries, or whose record is
  missing, or ledger rows that belong to no recorded batch: the ledger was edited behind the
  chain.

The chain proves that nothing was changed *inside* it; someone able to rewrite every record from
some point on and the head could rebuild a consistent chain, which is why the head's hash
(``audit head``) is worth copying somewhere else now and then (docs/security.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from dianfei.audit.chain import body_of, canonical, record_hash
from dianfei.audit.models import GENESIS


@dataclass(frozen=True)
class Finding:
    """One break: the record it names (``seq``; None when no record can be named) and why."""

    seq: int | None
    problem: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.problem}" if self.seq is not None else self.problem


@dataclass(frozen=True)
class Report:
    records: int
    ledger_batches: int
    ledger_rows: int
    head_seq: int
    head_hash: str
    findings: list[Finding]

    @property
    def intact(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        return self.findings[0] if self.findings else None


def _instant(value: Any) -> datetime:
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _check_body(seq: int, row: Any) -> str | None:
    """Why the record's columns and body disagree (None: they agree)."""
    try:
        body = json.loads(row.body)
    except ValueError:
        return "its body is not JSON (edited)"
    if not isinstance(body, dict) or canonical(body) != row.body:
        return "its body is not canonical JSON (edited)"
    try:
        again = body_of(at=datetime.fromisoformat(body["at"]), actor=body["actor"],
                        action=body["action"], subject=body["subject"], detail=body["detail"])
    except (KeyError, TypeError, ValueError):
        return "its body lacks at, actor, action, subject or detail (edited)"
    if again != row.body:
        return "its body is malformed (edited)"
    batch = body["detail"].get("ledger_batch") if isinstance(body["detail"], dict) else None
    if (row.actor != body["actor"] or row.action != body["action"]
            or row.subject != body["subject"] or _instant(row.recorded_at)
            != datetime.fromisoformat(body["at"]) or row.ledger_batch != batch):
        return "its columns differ from its body (edited)"
    return None


def _walk(conn: Connection, findings: list[Finding]) -> tuple[int, int, str, dict[int, Any]]:
    """Check the chain record by record; returns (records, head seq, head hash, ledger batches:
    batch → (seq, detail))."""
    head = conn.execute(text("SELECT seq, hash FROM audit_head WHERE id = 1")).first()
    head_seq, head_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS)
    if head is None:
        findings.append(Finding(None, "the chain head (audit_head) is missing"))
    expected, prev, count = 1, GENESIS, 0
    batches: dict[int, Any] = {}
    rows = conn.execute(text(
        "SELECT seq, recorded_at, actor, action, subject, body, prev_hash, hash, ledger_batch "
        "FROM audit_records ORDER BY seq")).yield_per(10_000)
    for row in rows:
        count += 1
        seq = int(row.seq)
        if seq != expected:
            if seq > expected:
                gone = (f"record {expected} is missing" if seq == expected + 1 else
                        f"records {expected}–{seq - 1} are missing")
                findings.append(Finding(expected, f"{gone} (deleted)"))
            else:
                findings.append(Finding(seq, "numbered out of sequence (inserted)"))
        elif row.prev_hash != prev:
            findings.append(Finding(seq, f"does not follow record {seq - 1}: its previous hash "
                                         "is not that record's hash (inserted or re-linked)"))
        if record_hash(seq, row.prev_hash, row.body) != row.hash:
            findings.append(Finding(seq, "its hash does not match its content (edited)"))
        else:
            why = _check_body(seq, row)
            if why:
                findings.append(Finding(seq, why))
        if row.ledger_batch is not None:
            detail = json.loads(row.body).get("detail", {}) if row.body else {}
            batches[int(row.ledger_batch)] = (seq, detail)
        expected, prev = seq + 1, row.hash
    last = expected - 1
    if head is not None:
        if head_seq > last:
            findings.append(Finding(last + 1, f"records {last + 1}–{head_seq} are missing from "
                                              "the end of the chain (deleted)"
                                    if head_seq > last + 1 else
                                    f"record {last + 1}, the last, is missing (deleted)"))
        elif head_seq < last:
            findings.append(Finding(head_seq + 1, "stored after the chain's head (inserted)"))
        elif head_hash != prev:
            findings.append(Finding(last, "is not the chain's head: the head names another hash "
                                          "(edited or re-linked)"))
    return count, head_seq, head_hash, batches


def _ledger(conn: Connection, batches: dict[int, Any], findings: list[Finding]) -> tuple[int, int]:
    import polars as pl

    from dianfei.audit.ledger_digest import digests_by_batch
    from dianfei.db.frames import read_frame

    frame = read_frame(
        conn, "SELECT entry_id, audit_batch, kind, reference, account_id, customer_id, amount, "
        "posted_at, business_date, due_on, reverses_entry_id, reason FROM ledger_entries",
        dates=("business_date", "due_on"), instants=("posted_at",),
        schema={"entry_id": pl.Int64, "audit_batch": pl.Int64, "amount": pl.Int64,
                "reverses_entry_id": pl.Int64, "kind": pl.String, "reference": pl.String,
                "account_id": pl.String, "customer_id": pl.String, "reason": pl.String})
    found = digests_by_batch(frame) if frame.height else pl.DataFrame()
    seen: set[int] = set()
    for batch, rows, first_entry, digest in found.iter_rows():
        # rows without a batch were written before the chain existed: batch 0 adopted them
        batch = 0 if batch is None else int(batch)
        seen.add(batch)
        rec = batches.get(batch)
        if rec is None and batch == 0:
            findings.append(Finding(None, f"ledger entry {first_entry} ({rows} row(s) without a "
                                          "batch) was written behind the audit chain (inserted)"))
            continue
        if rec is None:
            findings.append(Finding(None, f"ledger entry {first_entry}: its batch {batch} has no "
                                          "audit record (inserted, or its record was deleted)"))
            continue
        seq, detail = rec
        if int(detail.get("ledger_rows", -1)) != rows:
            findings.append(Finding(seq, f"its ledger batch has {rows} row(s), the record says "
                                         f"{detail.get('ledger_rows')} (ledger rows inserted or "
                                         f"deleted; first entry {first_entry})"))
        elif detail.get("ledger_digest") != digest:
            findings.append(Finding(seq, "its ledger rows were edited after they were recorded "
                                         f"(batch of {rows} row(s) from entry {first_entry})"))
    for batch, (seq, detail) in batches.items():
        if batch not in seen and int(detail.get("ledger_rows", 0)):
            findings.append(Finding(seq, "its ledger rows are gone (deleted)"))
    return len(seen), frame.height


def verify(engine: Engine | Connection) -> Report:
    """Check the whole chain and the ledger behind it; every finding, first broken first."""
    if not isinstance(engine, Connection):
        with engine.connect() as conn:
            return verify(conn)
    findings: list[Finding] = []
    count, head_seq, head_hash, batches = _walk(engine, findings)
    n_batches, n_rows = _ledger(engine, batches, findings)
    findings.sort(key=lambda f: (f.seq is None, f.seq or 0))
    return Report(count, n_batches, n_rows, head_seq, head_hash, findings)
