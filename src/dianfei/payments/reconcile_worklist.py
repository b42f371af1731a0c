"""The clarification worklist (待澄清) read: open discrepancies with their age — apart from the
reconciliation service (reconcile_service.py), so that listing them does not load the matching
and posting chain (Polars, the payments service): ``dianfei reconcile worklist`` is a read-only
command and starts in well under half a second."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dianfei.core.clock import BUSINESS_TZ, Clock, business_date
from dianfei.core.money import fmt_yuan
from dianfei.payments.statement_models import Discrepancy


def worklist(
    session: Session,
    *,
    clock: Clock,
    include_resolved: bool = False,
    channel: str | None = None,
    owner: str | None = None,
) -> list[dict[str, Any]]:
    """The clarification worklist, oldest first, with each row's age in days."""
    q = select(Discrepancy).order_by(Discrepancy.opened_at, Discrepancy.id)
    if not include_resolved:
        q = q.where(Discrepancy.resolved_at.is_(None))
    if channel:
        q = q.where(Discrepancy.channel == channel)
    if owner:
        q = q.where(Discrepancy.owner == owner)
    today = business_date(clock.now())
    return [discrepancy_json(d, today) for d in session.execute(q).scalars()]


def discrepancy_json(d: Discrepancy, today: date) -> dict[str, Any]:
    end = business_date(d.resolved_at) if d.resolved_at else today
    return {
        "id": d.id,
        "channel": d.channel,
        "day": d.day.isoformat(),
        "kind": d.kind,
        "transaction_id": d.transaction_id,
        "statement_amount": None if d.statement_amount is None else fmt_yuan(d.statement_amount),
        "ledger_amount": None if d.ledger_amount is None else fmt_yuan(d.ledger_amount),
        "line": d.line,
        "payment_id": d.payment_id,
        "order_no": d.order_no,
        "detail": d.detail,
        "owner": d.owner,
        "opened_at": d.opened_at.astimezone(BUSINESS_TZ).isoformat(),
        "age_days": (end - business_date(d.opened_at)).days,
        "resolved_at": d.resolved_at.astimezone(BUSINESS_TZ).isoformat() if d.resolved_at else None,
        "resolution": d.resolution,
    }
