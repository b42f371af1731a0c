"""The reconciliation worklist as the console pages it (对账): the runs by channel and day with
their matched and unmatched figures, and the breaks to work, a page at a time in SQL. Read
only: a break is closed by :func:`dianfei.payments.reconcile_service.resolve` alone."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from dianfei.payments.reconcile_worklist import discrepancy_json
from dianfei.payments.statement_models import Discrepancy, ReconciliationReport

#: the breaks a person works: missing on our side (长款), missing on the channel's (短款),
#: amount differs, and the rest the reconciliation puts on the worklist
KINDS = ("missing_in_ledger", "missing_in_statement", "amount_mismatch", "duplicate",
         "refund_not_in_ledger", "unposted")
_UNMATCHED = ("missing_in_ledger", "missing_in_statement", "amount_mismatch", "duplicates")


def runs(session: Session, offset: int, limit: int, *, channel: str | None = None
         ) -> tuple[list[dict[str, Any]], int]:
    """One page of the reconciliation runs, newest day first: channel, day, run_at,
    settlement_ok, matched and unmatched counts and fen, and the breaks still open."""
    q = select(ReconciliationReport)
    n = select(func.count()).select_from(ReconciliationReport)
    if channel:
        q, n = (q.where(ReconciliationReport.channel == channel),
                n.where(ReconciliationReport.channel == channel))
    total = int(session.execute(n).scalar_one())
    out = []
    for r in session.scalars(q.order_by(ReconciliationReport.day.desc(),
                                         ReconciliationReport.channel).offset(offset).limit(limit)):
        figures = json.loads(r.figures)
        t = figures.get("totals", {})
        open_n = session.execute(select(func.count()).select_from(Discrepancy).where(
            Discrepancy.channel == r.channel, Discrepancy.day == r.day,
            Discrepancy.resolved_at.is_(None))).scalar_one()
        out.append({
            "channel": r.channel, "day": r.day.isoformat(), "run_at": r.run_at,
            "settlement_ok": r.settlement_ok,
            "matched": int(t.get("matched", {}).get("count", 0)),
            "matched_amount": int(t.get("matched", {}).get("amount", 0)),
            "unmatched": sum(int(t.get(k, {}).get("count", 0)) for k in _UNMATCHED),
            "unmatched_amount": sum(int(t.get(k, {}).get("amount", 0)) for k in _UNMATCHED),
            "auto_posted": int(figures.get("auto_posted", 0)), "open": int(open_n)})
    return out, total


def breaks(session: Session, offset: int, limit: int, *, today: date,
           channel: str | None = None, kind: str | None = None, day: date | None = None,
           include_resolved: bool = False) -> tuple[list[dict[str, Any]], int]:
    """One page of the breaks, oldest first (as ``reconcile worklist``), and how many match."""
    conds: list[ColumnElement[bool]] = []
    if not include_resolved:
        conds.append(Discrepancy.resolved_at.is_(None))
    if channel:
        conds.append(Discrepancy.channel == channel)
    if kind:
        conds.append(Discrepancy.kind == kind)
    if day:
        conds.append(Discrepancy.day == day)
    total = int(session.execute(select(func.count()).select_from(Discrepancy)
                                .where(*conds)).scalar_one())
    rows = session.scalars(select(Discrepancy).where(*conds)
                           .order_by(Discrepancy.opened_at, Discrepancy.id)
                           .offset(offset).limit(limit))
    return [discrepancy_json(d, today) for d in rows], total


def channels(session: Session) -> list[str]:
    """The channels that have a reconciliation run or a break (the filter's choices)."""
    a = set(session.scalars(select(ReconciliationReport.channel).distinct()))
    b = set(session.scalars(select(Discrepancy.channel).distinct()))
    return sorted(a | b)


def break_of(session: Session, discrepancy_id: int, today: date) -> dict[str, Any] | None:
    d = session.get(Discrepancy, discrepancy_id)
    return discrepancy_json(d, today) if d else None
