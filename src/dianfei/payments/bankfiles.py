"""Bank withholding (代扣) and agent collection (代收) files.

- ``export_debit_batch``: the month's debit batch for one bank — every account with a mandate
  active on the file date and something open, for its open amount — written per the bank's
  layout (GBK, trailer with count and total). Exporting the same bank and period again, before
  the bank answered, rewrites the same batch; after the answer it makes the next attempt for
  what is still open.
- ``import_bank_result``: the bank's answer. Refused whole when the trailer disagrees with the
  lines. Successes are posted through ``payments.service.post_channel_payment`` (channel
  ``bank``, transaction id ``{batch_id}-{serial}``), failures kept with their reason for dunning
  (代扣失败), returns (退票/冲正) reversed with ``payments.service.reverse_payment``. Importing the
  same answer again changes nothing.
- ``import_agent_file``: an agent's daily collections, posted likewise (idempotent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import polars as pl
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dianfei.core.clock import BUSINESS_TZ, Clock, Period, business_date
from dianfei.core.crypto import PiiCipher
from dianfei.core.errors import ConflictError, NotFoundError, ValidationError
from dianfei.db.pii import MANDATE_BANK_ACCOUNT
from dianfei.payments import reconcile_service
from dianfei.payments import service as payments
from dianfei.payments.channels.base import ChannelPayment
from dianfei.payments.layouts import Layout
from dianfei.payments.statement_models import BankBatch, BankBatchLine, WithholdingMandate
from dianfei.payments.statements.bankfile import read_agent_file, read_bank_result, render


def mask_bank_account(number: str | None) -> str | None:
    """6222 **** **** 1234 style: the last four digits only."""
    if not number:
        return number
    return "*" * max(len(number) - 4, 0) + number[-4:]


def add_mandate(
    session: Session,
    *,
    cipher: PiiCipher,
    account_id: str,
    bank: str,
    bank_account: str,
    holder_name: str,
    active_from: date,
    active_to: date | None,
    clock: Clock,
) -> int:
    """Record a withholding mandate (代扣协议); the bank account number is stored encrypted."""
    number = bank_account.replace(" ", "")
    if not number.isdigit() or not 8 <= len(number) <= 32:
        raise ValidationError("a bank account number is 8–32 digits")
    if not holder_name.strip():
        raise ValidationError("the mandate needs the account holder's name (户名)")
    if active_to is not None and active_to < active_from:
        raise ValidationError("a mandate cannot end before it starts")
    enc = cipher.encrypt(number, MANDATE_BANK_ACCOUNT.context(account_id, bank, active_from))
    assert enc is not None
    m = WithholdingMandate(
        account_id=account_id,
        bank=bank,
        bank_account_enc=enc,
        holder_name=holder_name.strip(),
        active_from=active_from,
        active_to=active_to,
        created_at=clock.now(),
    )
    session.add(m)
    session.flush()
    return m.id


@dataclass
class Export:
    batch_id: str
    attempt: int
    count: int
    total: int
    body: bytes
    reused: bool
    lines: list[dict[str, Any]] = field(default_factory=list)


def export_debit_batch(
    session: Session,
    *,
    layout: Layout,
    period: Period,
    cipher: PiiCipher,
    clock: Clock,
    merchant_code: str | None = None,
) -> Export:
    """The debit batch file for ``layout``'s bank and ``period`` (see the module docstring)."""
    today = business_date(clock.now())
    latest = session.execute(
        select(BankBatch)
        .where(BankBatch.bank == layout.code, BankBatch.period == str(period))
        .order_by(BankBatch.attempt.desc())
        .limit(1)
    ).scalar_one_or_none()
    if latest is not None and latest.status == "exported":
        lines = (
            session.execute(
                select(BankBatchLine)
                .where(BankBatchLine.batch_id == latest.batch_id)
                .order_by(BankBatchLine.serial)
            )
            .scalars()
            .all()
        )
        mandates = {
            m.id: m
            for m in session.execute(
                select(WithholdingMandate).where(WithholdingMandate.id.in_([ln.mandate_id for ln in lines]))
            ).scalars()
        }
        rows = [(ln.serial, ln.account_id, ln.amount, mandates[ln.mandate_id]) for ln in lines]
        batch = latest
        reused = True
    else:
        attempt = 1 if latest is None else latest.attempt + 1
        mandates_by_account = {
            m.account_id: m
            for m in session.execute(
                select(WithholdingMandate)
                .where(
                    WithholdingMandate.bank == layout.code,
                    WithholdingMandate.active_from <= today,
                    (WithholdingMandate.active_to.is_(None)) | (WithholdingMandate.active_to >= today),
                )
                .order_by(WithholdingMandate.active_from)
            ).scalars()
        }
        owed = pl.DataFrame(schema={"account_id": pl.String, "open_amount": pl.Int64})
        if mandates_by_account:
            items = payments.open_items(session.connection(), accounts=sorted(mandates_by_account))
            if items.height:
                owed = items.group_by("account_id").agg(pl.col("open_amount").sum()).sort("account_id")
        rows = [
            (i, acct, int(amount), mandates_by_account[acct])
            for i, (acct, amount) in enumerate(owed.filter(pl.col("open_amount") > 0).iter_rows(), start=1)
        ]
        batch = BankBatch(
            batch_id=f"{layout.code[:16]}-{period.year:04d}{period.month:02d}-{attempt:02d}",
            bank=layout.code,
            period=str(period),
            attempt=attempt,
            created_at=clock.now(),
            file_date=today,
            count=len(rows),
            total=sum(r[2] for r in rows),
            status="exported",
        )
        session.add(batch)
        session.add_all(
            [
                BankBatchLine(
                    batch_id=batch.batch_id,
                    serial=s,
                    account_id=a,
                    mandate_id=m.id,
                    amount=amt,
                    outcome="pending",
                )
                for s, a, amt, m in rows
            ]
        )
        session.flush()
        reused = False
    code = merchant_code or layout.merchant_code
    details = [
        {
            "serial": s,
            "account_id": a,
            "bank_account": cipher.decrypt(m.bank_account_enc,
                                           MANDATE_BANK_ACCOUNT.context(m.account_id, m.bank, m.active_from)),
            "holder_name": m.holder_name,
            "amount": amt,
            "memo": f"电费{period}",
        }
        for s, a, amt, m in rows
    ]
    body = render(
        layout,
        "debit",
        header={
            "merchant_code": code,
            "batch_id": batch.batch_id,
            "date": batch.file_date,
            "count": batch.count,
            "total": batch.total,
        },
        details=details,
        trailer={"count": batch.count, "total": batch.total},
    )
    shown = [
        {
            "serial": d["serial"],
            "account_id": d["account_id"],
            "bank_account": mask_bank_account(str(d["bank_account"])),
            "amount": d["amount"],
        }
        for d in details
    ]
    return Export(
        batch_id=batch.batch_id,
        attempt=batch.attempt,
        count=batch.count,
        total=batch.total,
        body=body,
        reused=reused,
        lines=shown,
    )


@dataclass
class ImportResult:
    file_id: int | None
    batch_id: str
    posted: int = 0
    already_posted: int = 0
    failed: int = 0
    returned: int = 0
    unposted: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)


def import_bank_result(
    session: Session, *, layout: Layout, body: bytes, name: str, clock: Clock, file_id: int | None = None
) -> ImportResult:
    """Apply a bank's result file (see the module docstring). Raises StatementError, before
    anything is written, for a file that is unreadable or fails its trailer check."""
    result = read_bank_result(layout, body, name=name)
    batch = session.get(BankBatch, result.batch_id)
    if batch is None:
        raise NotFoundError(
            f"the result file answers batch {result.batch_id}, which was never exported", where=name
        )
    lines = {
        ln.serial: ln
        for ln in session.execute(
            select(BankBatchLine).where(BankBatchLine.batch_id == batch.batch_id)
        ).scalars()
    }
    day = result.debit_date or business_date(clock.now())
    paid_at = datetime.combine(day, time(0), tzinfo=BUSINESS_TZ)
    out = ImportResult(file_id=file_id, batch_id=batch.batch_id)
    for r in result.frame.iter_rows(named=True):
        line = lines.get(r["serial"])
        txn = f"{batch.batch_id}-{r['serial']}"
        if (
            line is None
            or line.amount != r["amount"]
            or (r["account_id"] and r["account_id"] != line.account_id)
        ):
            why = (
                "not a line of the batch"
                if line is None
                else f"the batch asked {line.amount} fen from {line.account_id}, "
                f"the bank answers {r['amount']} fen"
                f" from {r['account_id'] or line.account_id}"
            )
            out.unposted.append({"serial": r["serial"], "line": r["line"], "why": why})
            reconcile_service.record_unposted(
                session,
                channel="bank",
                day=day,
                transaction_id=txn,
                amount=r["amount"],
                line=r["line"],
                detail=why,
                clock=clock,
            )
            continue
        if r["outcome"] == "success":
            pay = ChannelPayment(
                channel="bank",
                transaction_id=txn,
                amount=line.amount,
                paid_at=paid_at,
                account_id=line.account_id,
                extra={"bank": layout.code},
            )
            try:
                with session.begin_nested():
                    res = payments.post_channel_payment(session, pay, clock=clock, source="bank_file")
            except payments.PaymentRefused as exc:
                out.unposted.append({"serial": r["serial"], "line": r["line"], "why": exc.message})
                reconcile_service.record_unposted(
                    session,
                    channel="bank",
                    day=day,
                    transaction_id=txn,
                    amount=r["amount"],
                    line=r["line"],
                    detail=exc.message,
                    clock=clock,
                )
                continue
            out.posted += res.created
            out.already_posted += not res.created
            line.payment_id = res.payment_id
        elif r["outcome"] == "returned":
            pid = line.payment_id or payments.payment_id_for("bank", txn)
            try:
                with session.begin_nested():
                    payments.reverse_payment(
                        session,
                        pid,
                        reason=f"bank return {r['result_code']} {r['message'] or r['reason']}",
                        clock=clock,
                        status="returned",
                    )
                out.returned += 1
            except ConflictError:
                pass  # already returned by an earlier import of this answer
            except NotFoundError:
                out.unposted.append(
                    {
                        "serial": r["serial"],
                        "line": r["line"],
                        "why": "a return of a debit that was never posted",
                    }
                )
                continue
        else:
            out.failed += 1
            out.failures.append({"account_id": line.account_id, "serial": r["serial"], "reason": r["reason"]})
        if line.outcome != r["outcome"]:
            line.outcome = r["outcome"]
            line.result_code = r["result_code"]
            line.reason = r["reason"]
            line.answered_at = clock.now()
    batch.status = "answered"
    session.flush()
    return out


def import_agent_file(
    session: Session, *, layout: Layout, body: bytes, name: str, clock: Clock, file_id: int | None = None
) -> ImportResult:
    """Post an agent's daily collection file; a line already posted is counted, not posted again."""
    statement = read_agent_file(layout, body, name=name)
    out = ImportResult(file_id=file_id, batch_id=statement.meta.get("agent_code", layout.code))
    for r in statement.frame.iter_rows(named=True):
        pay = ChannelPayment(
            channel=layout.channel,
            transaction_id=r["transaction_id"],
            amount=r["amount"],
            paid_at=r["paid_at"],
            account_id=r["account_id"],
            extra={"agent": layout.code},
        )
        try:
            with session.begin_nested():
                res = payments.post_channel_payment(session, pay, clock=clock, source="agent_file")
        except payments.PaymentRefused as exc:
            out.unposted.append(
                {"line": r["line"], "transaction_id": r["transaction_id"], "why": exc.message}
            )
            reconcile_service.record_unposted(
                session,
                channel=layout.channel,
                day=business_date(r["paid_at"]),
                transaction_id=r["transaction_id"],
                amount=r["amount"],
                line=r["line"],
                detail=f"{exc.code}: {exc.message}",
                clock=clock,
            )
            continue
        out.posted += res.created
        out.already_posted += not res.created
    return out


def batch_lines(session: Session, batch_id: str) -> list[dict[str, Any]]:
    return [
        {
            "serial": ln.serial,
            "account_id": ln.account_id,
            "amount": ln.amount,
            "outcome": ln.outcome,
            "reason": ln.reason,
            "payment_id": ln.payment_id,
        }
        for ln in session.execute(
            select(BankBatchLine).where(BankBatchLine.batch_id == batch_id).order_by(BankBatchLine.serial)
        ).scalars()
    ]


def count_batches(session: Session, bank: str) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(BankBatch).where(BankBatch.bank == bank)
        ).scalar_one()
    )


__all__ = [
    "Export",
    "ImportResult",
    "add_mandate",
    "batch_lines",
    "export_debit_batch",
    "import_agent_file",
    "import_bank_result",
    "mask_bank_account",
]
