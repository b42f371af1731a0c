"""Where the bill runs stand (核算进度), for the console's bill-run page: per period its latest
run and how far it got. Read only; ``bill_runs`` is updated chunk by chunk while a run writes
(billing.service), so this is the run's live progress."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from dianfei.billing.models import BillRun
from dianfei.core.clock import BUSINESS_TZ
from dianfei.db.engine import Database


def _row(r: BillRun, runs: int) -> dict[str, Any]:
    return {"period": r.period, "run_id": r.run_id, "runs": runs, "status": r.status,
            "candidates": r.candidates, "billed": r.billed, "exceptions": r.exceptions,
            "done": r.billed + r.exceptions, "amount": r.amount,
            "issued_on": r.issued_on.isoformat(),
            "started_at": r.started_at.astimezone(BUSINESS_TZ).isoformat(timespec="seconds"),
            "finished_at": (r.finished_at.astimezone(BUSINESS_TZ).isoformat(timespec="seconds")
                            if r.finished_at else None)}


def periods(db: Database) -> list[dict[str, Any]]:
    """One row per period that has a run, newest period first: its latest run (run_id, status
    running|completed, candidates, billed, exceptions, done, amount in fen, dates) and how many
    runs the period had."""
    with db.session() as s:
        counts: dict[str, int] = {p: int(n) for p, n in s.execute(select(BillRun.period, func.count())
                                .group_by(BillRun.period)).all()}
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for r in s.scalars(select(BillRun).order_by(BillRun.period.desc(),
                                                    BillRun.started_at.desc(),
                                                    BillRun.run_id.desc())):
            if r.period not in seen:
                seen.add(r.period)
                out.append(_row(r, counts[r.period]))
        return out


def latest(db: Database, period: str) -> dict[str, Any] | None:
    """The period's latest run (as in :func:`periods`), or None before its first run."""
    with db.session() as s:
        r = s.scalars(select(BillRun).where(BillRun.period == period)
                      .order_by(BillRun.started_at.desc(), BillRun.run_id.desc()).limit(1)).first()
        if r is None:
            return None
        n = s.scalar(select(func.count()).select_from(BillRun).where(BillRun.period == period))
        return _row(r, int(n or 0))


def running(db: Database) -> dict[str, Any] | None:
    """The newest run still marked running (in progress, or interrupted and waiting to be
    resumed), or None."""
    with db.session() as s:
        r = s.scalars(select(BillRun).where(BillRun.status == "running")
                      .order_by(BillRun.started_at.desc(), BillRun.run_id.desc()).limit(1)).first()
        if r is None:
            return None
        n = s.scalar(select(func.count()).select_from(BillRun).where(BillRun.period == r.period))
        return _row(r, int(n or 0))
