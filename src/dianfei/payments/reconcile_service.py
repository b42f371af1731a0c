"""Daily reconciliation against the database (对账): store the statement raw, parse it, match it
with the pure functions of ``payments.reconcile``, post what is safe, put the rest on the
clarification worklist, and keep one report per channel and day.

Rules (why the code is shaped this way):
- a refused input stores nothing: a statement is parsed first (unknown channel, unreadable file:
  refused, nothing written), then stored raw (``statement_files``, unique on its digest) in the
  same transaction as its reconciliation, so a statement refused there (not of the day asked for)
  leaves no row either; :func:`reconcile_file` does the whole sequence;
- a statement whose own totals disagree with its lines is reported but posts nothing;
- auto-resolution is limited to the one safe case: a statement payment missing from the ledger
  whose payment order (or named account) exists and agrees on the amount — a callback that never
  arrived. It goes through ``payments.service.post_channel_payment`` (source ``statement``),
  which is idempotent on (channel, transaction id), so no re-run posts twice;
- everything else becomes a worklist row unique on (channel, day, kind, reference): a re-run
  adds none, and rows whose cause has gone (a late callback arrived since) are closed with a note;
- the report of a channel-day is replaced by a re-run, and a re-run gives the same answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from dianfei.core.clock import BUSINESS_TZ, Clock, business_date
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.core.faults import kill_point
from dianfei.core.money import fmt_yuan
from dianfei.payments import service as payments
from dianfei.payments.channels.base import ChannelPayment
from dianfei.payments.reconcile import LEDGER_SCHEMA, Matching, discrepancies, match, totals
from dianfei.payments.reconcile_worklist import discrepancy_json as discrepancy_json
from dianfei.payments.reconcile_worklist import worklist as worklist
from dianfei.payments.statement_models import Discrepancy, ReconciliationReport, StatementFile
from dianfei.payments.statements import Statement

if TYPE_CHECKING:
    from pathlib import Path

    from dianfei.core.crypto import PiiCipher
    from dianfei.core.settings import Settings
    from dianfei.db.engine import Database

DEFAULT_OWNER = "reconciler"
#: how far around the day posted payments are looked for (a payment booked across midnight)
LEDGER_WINDOW = timedelta(days=2)


def _insert(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


# ---------------------------------------------------------------- files


def receive_file(
    session: Session,
    *,
    kind: str,
    channel: str,
    name: str,
    body: bytes,
    clock: Clock,
    cipher: PiiCipher,
    layout: str | None = None,
) -> int:
    """Store a file as received before anything else; the same bytes again return the same row.
    The bytes are stored sealed (``body_enc``, db/pii.py): a bank result or agent file names
    account holders and bank accounts; the digest and size stay in clear (the same file is
    recognised without opening it)."""
    from dianfei.db.pii import seal_body

    digest = hashlib.sha256(body).hexdigest()
    values = {
        "kind": kind,
        "channel": channel,
        "layout": layout,
        "name": name,
        "sha256": digest,
        "size": len(body),
        "received_at": clock.now(),
        "body": b"",
        "body_enc": seal_body(cipher, body, kind, channel, digest),
        "status": "received",
    }
    session.execute(
        _insert(session)(StatementFile)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["kind", "channel", "sha256"])
    )
    return int(
        session.execute(
            select(StatementFile.id).where(
                StatementFile.kind == kind, StatementFile.channel == channel, StatementFile.sha256 == digest
            )
        ).scalar_one()
    )


def mark_file(session: Session, file_id: int, status: str, error: str | None = None) -> None:
    """Set what became of a stored file (``processed``)."""
    session.execute(
        update(StatementFile).where(StatementFile.id == file_id).values(status=status, error=error)
    )


# ---------------------------------------------------------------- owners


def owner_for(settings: Settings | None, channel: str) -> str:
    """Who works a channel's discrepancies: ``[reconciliation.owners] CHANNEL = "…"`` in the
    config file, else ``[reconciliation] default_owner``, else "reconciler"."""
    cfg = (settings.raw if settings else {}).get("reconciliation", {})
    owners = cfg.get("owners", {})
    return str(owners.get(channel) or cfg.get("default_owner") or DEFAULT_OWNER)


# ---------------------------------------------------------------- reconciliation


@dataclass
class Outcome:
    """The reconciliation of one channel-day: the final matching and what was done."""

    matching: Matching
    statement: Statement
    auto_posted: pl.DataFrame
    refused: dict[str, str]
    worklist_open: int
    cleared: int


def ledger_frame(session: Session, channel: str, day: date) -> pl.DataFrame:
    """The channel's posted payments of the days around ``day`` (in this transaction)."""
    rows = session.execute(
        text(
            "SELECT payment_id, transaction_id, order_no, account_id, amount, business_date, status, source "
            "FROM payments WHERE channel = :c AND business_date BETWEEN :a AND :b"
        ),
        {"c": channel, "a": day - LEDGER_WINDOW, "b": day + LEDGER_WINDOW},
    ).all()
    frame = pl.DataFrame([tuple(r) for r in rows], schema=list(LEDGER_SCHEMA), orient="row")
    if frame.height and frame.schema["business_date"] == pl.String:
        frame = frame.with_columns(pl.col("business_date").str.to_date())
    return frame.cast(LEDGER_SCHEMA)  # type: ignore[arg-type]


def reconcile_statement(
    session: Session,
    statement: Statement,
    *,
    day: date,
    clock: Clock,
    settings: Settings | None = None,
    file_id: int | None = None,
    auto_post: bool = True,
) -> Outcome:
    """Reconcile a parsed statement with the ledger for ``day`` and record the outcome."""
    channel = statement.channel
    frame = statement.frame
    foreign = frame.filter(pl.col("paid_at").dt.convert_time_zone(str(BUSINESS_TZ)).dt.date() != day)
    if frame.height and foreign.height == frame.height:
        first = foreign.row(0, named=True)
        raise ValidationError(
            f"the statement is not for {day}: line {first['line']} is of {business_date(first['paid_at'])}",
            where=statement.file,
        )
    m = match(frame, ledger_frame(session, channel, day), day)
    refused: dict[str, str] = {}
    if auto_post and statement.check.ok:
        refused = _auto_post(session, m, clock)
        if len(refused) != m.missing_in_ledger.height:
            m = match(frame, ledger_frame(session, channel, day), day)
    auto = m.matched.filter(pl.col("ledger_source") == "statement")
    work = discrepancies(m)
    if refused:
        notes = pl.DataFrame({"transaction_id": list(refused), "_why": list(refused.values())})
        work = (
            work.join(notes, on="transaction_id", how="left")
            .with_columns(
                pl.when(pl.col("_why").is_not_null() & (pl.col("kind") == "missing_in_ledger"))
                .then(pl.col("detail") + "; not posted from the statement: " + pl.col("_why"))
                .otherwise(pl.col("detail"))
                .alias("detail")
            )
            .drop("_why")
        )
    open_count, cleared = _write_worklist(session, channel, day, work, owner_for(settings, channel), clock)
    figures = {
        "totals": totals(m),
        "settlement_check": statement.check.as_json(),
        "auto_posted": auto.height,
        "worklist_open": open_count,
        "file": statement.file,
    }
    values = {
        "channel": channel,
        "day": day,
        "run_at": clock.now(),
        "statement_file_id": file_id,
        "settlement_ok": statement.check.ok,
        "figures": json.dumps(figures, ensure_ascii=False),
    }
    ins = _insert(session)(ReconciliationReport).values(**values)
    session.execute(
        ins.on_conflict_do_update(
            index_elements=["channel", "day"],
            set_={k: v for k, v in values.items() if k not in ("channel", "day")},
        )
    )
    if file_id is not None:
        mark_file(session, file_id, "processed")
    return Outcome(
        matching=m,
        statement=statement,
        auto_posted=auto,
        refused=refused,
        worklist_open=open_count,
        cleared=cleared,
    )


def reconcile_file(
    db: Database,
    *,
    channel: str,
    day: date,
    body: bytes,
    name: str,
    clock: Clock,
    where: str | None = None,
    bank: str | None = None,
    layout_dir: Path | None = None,
    auto_post: bool = True,
) -> Outcome:
    """Reconcile one statement file of ``channel`` for ``day``: parse it, then store it raw and
    reconcile it in ONE transaction. A refused statement stores nothing: an unknown channel or an
    unreadable file raises (``ValidationError`` / ``StatementError``) before anything is written,
    and a statement refused by the reconciliation itself (not of ``day``) rolls its stored file
    back with everything else. ``name`` is the file name stored, ``where`` how errors name the
    file (default ``name``)."""
    from dianfei.payments.statements import parse_statement

    statement = parse_statement(channel, body, name=where or name, bank=bank, layout_dir=layout_dir)
    from dianfei.db.pii import cipher_for

    cipher = cipher_for(db)
    with db.session() as s:
        file_id = receive_file(
            s, kind="statement", channel=channel, name=name, body=body, clock=clock, cipher=cipher,
            layout=bank,
        )
        return reconcile_statement(
            s, statement, day=day, clock=clock, settings=db.settings, file_id=file_id, auto_post=auto_post
        )


def _auto_post(session: Session, m: Matching, clock: Clock) -> dict[str, str]:
    """Post statement payments missing from the ledger whose order or account agrees."""
    refused: dict[str, str] = {}
    for row in m.missing_in_ledger.iter_rows(named=True):
        if not row["order_no"] and not row["account_id"]:
            refused[row["transaction_id"]] = "no order or account to post to"
            continue
        pay = ChannelPayment(
            channel=row["channel"],
            transaction_id=row["transaction_id"],
            amount=int(row["amount"]),
            paid_at=row["paid_at"],
            order_no=row["order_no"],
            account_id=row["account_id"],
            extra={"line": str(row["line"])},
        )
        try:
            with session.begin_nested():
                payments.post_channel_payment(session, pay, clock=clock, source="statement")
        except payments.PaymentRefused as exc:
            refused[row["transaction_id"]] = f"{exc.code}: {exc.message}"
        except (ValidationError, NotFoundError) as exc:
            refused[row["transaction_id"]] = exc.message
        else:
            # the crash tests die here: some lines posted, the file's transaction not committed
            kill_point("reconcile.line_posted")
    return refused


def _write_worklist(
    session: Session, channel: str, day: date, work: pl.DataFrame, owner: str, clock: Clock
) -> tuple[int, int]:
    now = clock.now()
    rows = [
        {**r, "channel": channel, "day": day, "owner": owner, "opened_at": now}
        for r in work.iter_rows(named=True)
    ]
    ins = _insert(session)(Discrepancy)
    for chunk in range(0, len(rows), 1000):
        session.execute(
            ins.on_conflict_do_nothing(index_elements=["channel", "day", "kind", "ref"]),
            rows[chunk : chunk + 1000],
        )
    # what was open for the day and is no longer found has been settled since (a late callback)
    current = {(r["kind"], r["ref"]) for r in rows}
    still_open = (
        session.execute(
            select(Discrepancy).where(
                Discrepancy.channel == channel, Discrepancy.day == day, Discrepancy.resolved_at.is_(None)
            )
        )
        .scalars()
        .all()
    )
    cleared = 0
    for d in still_open:
        if (d.kind, d.ref) not in current and d.kind != "unposted":
            d.resolved_at = now
            d.resolution = "cleared: no longer found by the reconciliation run at " + now.isoformat()
            cleared += 1
    return len(still_open) - cleared, cleared


# ---------------------------------------------------------------- worklist


def record_unposted(
    session: Session,
    *,
    channel: str,
    day: date,
    transaction_id: str,
    amount: int,
    line: int | None,
    detail: str,
    clock: Clock,
    settings: Settings | None = None,
) -> None:
    """Put a bank or agent line that could not be posted on the worklist (once)."""
    values = {
        "channel": channel,
        "day": day,
        "kind": "unposted",
        "transaction_id": transaction_id,
        "ref": transaction_id,
        "statement_amount": amount,
        "ledger_amount": None,
        "line": line,
        "payment_id": None,
        "order_no": None,
        "detail": detail,
        "owner": owner_for(settings, channel),
        "opened_at": clock.now(),
    }
    session.execute(
        _insert(session)(Discrepancy)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["channel", "day", "kind", "ref"])
    )


def resolve(session: Session, discrepancy_id: int, *, note: str, clock: Clock) -> dict[str, Any]:
    """Close a worklist row with a note saying how it was cleared (e.g. refunded, posted by hand)."""
    if not note.strip():
        raise ValidationError("a resolution needs a note saying how it was cleared")
    d = session.get(Discrepancy, discrepancy_id)
    if d is None:
        raise NotFoundError(f"no discrepancy {discrepancy_id}")
    if d.resolved_at is not None:
        raise ValidationError(f"discrepancy {discrepancy_id} was already resolved: {d.resolution}")
    d.resolved_at = clock.now()
    d.resolution = note.strip()
    session.flush()
    return discrepancy_json(d, business_date(clock.now()))


def report(session: Session, channel: str, day: date) -> dict[str, Any] | None:
    r = session.get(ReconciliationReport, (channel, day))
    if r is None:
        return None
    return {
        "channel": r.channel,
        "date": r.day.isoformat(),
        "run_at": r.run_at.isoformat(),
        "settlement_ok": r.settlement_ok,
        **json.loads(r.figures),
    }


# ---------------------------------------------------------------- output


def outcome_json(o: Outcome, day: date) -> dict[str, Any]:
    """The ``dianfei reconcile --json`` answer (keys of docs/interfaces.md, then extras)."""
    m = o.matching

    def money(v: Any) -> str | None:
        return None if v is None else fmt_yuan(int(v))

    def when(v: datetime | None) -> str | None:
        return None if v is None else v.astimezone(BUSINESS_TZ).isoformat()

    return {
        "matched": m.matched.height,
        "missing_in_ledger": [
            {
                "transaction_id": r["transaction_id"],
                "order_no": r["order_no"],
                "account_id": r["account_id"],
                "amount": money(r["amount"]),
                "paid_at": when(r["paid_at"]),
                "line": r["line"],
                "why_not_posted": o.refused.get(r["transaction_id"]),
            }
            for r in m.missing_in_ledger.iter_rows(named=True)
        ],
        "missing_in_statement": [
            {
                "transaction_id": r["transaction_id"],
                "payment_id": r["payment_id"],
                "order_no": r["order_no"],
                "account_id": r["account_id"],
                "amount": money(r["amount"]),
            }
            for r in m.missing_in_statement.iter_rows(named=True)
        ],
        "amount_mismatch": [
            {
                "transaction_id": r["transaction_id"],
                "payment_id": r["payment_id"],
                "line": r["line"],
                "statement_amount": money(r["amount"]),
                "ledger_amount": money(r["ledger_amount"]),
            }
            for r in m.amount_mismatch.iter_rows(named=True)
        ],
        "duplicates": [
            {
                "transaction_id": r["transaction_id"],
                "line": r["line"],
                "first_line": r["first_line"],
                "amount": money(r["amount"]),
            }
            for r in m.duplicates.iter_rows(named=True)
        ],
        "refunds": [
            {
                "transaction_id": r["transaction_id"],
                "refund_id": r["refund_id"],
                "line": r["line"],
                "amount": money(r["amount"]),
                "payment_id": r["payment_id"],
                "ledger_status": r["ledger_status"],
            }
            for r in m.refunds.iter_rows(named=True)
        ],
        "auto_posted": [
            {
                "transaction_id": r["transaction_id"],
                "payment_id": r["payment_id"],
                "order_no": r["order_no"],
                "amount": money(r["amount"]),
                "line": r["line"],
            }
            for r in o.auto_posted.iter_rows(named=True)
        ],
        "settlement_check": o.statement.check.as_json(),
        "totals": {k: {"count": v["count"], "amount": fmt_yuan(v["amount"])} for k, v in totals(m).items()},
        "channel": o.statement.channel,
        "date": day.isoformat(),
        "statement": o.statement.file,
        "worklist_open": o.worklist_open,
    }


def withholding_failures(
    session: Session, *, since: date | None = None, accounts: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Failed bank debits (代扣失败) for dunning: account, batch, amount, reason, when answered."""
    from dianfei.payments.statement_models import BankBatchLine

    q = select(BankBatchLine).where(BankBatchLine.outcome.in_(("failed", "returned")))
    if accounts is not None:
        q = q.where(BankBatchLine.account_id.in_(list(accounts)))
    out = []
    for line in session.execute(q.order_by(BankBatchLine.answered_at)).scalars():
        if since and line.answered_at and business_date(line.answered_at) < since:
            continue
        out.append(
            {
                "account_id": line.account_id,
                "batch_id": line.batch_id,
                "serial": line.serial,
                "amount": line.amount,
                "outcome": line.outcome,
                "reason": line.reason,
                "answered_at": line.answered_at,
            }
        )
    return out


__all__ = [
    "Outcome",
    "ledger_frame",
    "outcome_json",
    "receive_file",
    "reconcile_file",
    "reconcile_statement",
    "record_unposted",
    "report",
    "resolve",
    "withholding_failures",
    "worklist",
]
