"""Channel reconciliation over REST: the reports of reconciled channel days and the
clarification worklist of breaks (``dianfei reconcile`` writes them; docs/reconciliation.md)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query

from dianfei.core.clock import Clock, business_date
from dianfei.core.errors import NotFoundError, ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database
from dianfei.web.auth import guard
from dianfei.web.paging import Page, check_day, page

#: the longest window of the reports list
MAX_REPORT_DAYS = 366


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.payments import reconcile_service as rec
    from dianfei.payments.service import reconciliations_between

    @app.get("/api/v1/reconciliation/reports", tags=["reconciliation"],
             **guard("reconcile:read"))
    def api_reconciliation_reports(
            p: Annotated[Page, Depends(page)],
            day_from: Annotated[date, Query(alias="from")],
            day_to: Annotated[date, Query(alias="to")],
            channel: Annotated[str | None, Query(min_length=1, max_length=16)] = None,
    ) -> dict[str, Any]:
        """One row per reconciled channel and day of ``from`` … ``to`` (at most 366 days):
        whether the settlement agreed, and the statement's settled amount (yuan)."""
        check_day(day_from, "from")
        check_day(day_to, "to")
        if day_to < day_from or (day_to - day_from).days >= MAX_REPORT_DAYS:
            raise ValidationError(f"from … to must be 1 to {MAX_REPORT_DAYS} days", where="to")
        frame = reconciliations_between(db.engine, day_from, day_to)
        rows = [{"channel": r["channel"], "day": _iso(r["day"]),
                 "settlement_ok": bool(r["settlement_ok"]), "settled": fmt_yuan(int(r["settled"]))}
                for r in frame.iter_rows(named=True)
                if channel is None or r["channel"] == channel]
        rows.sort(key=lambda r: (r["day"], r["channel"]))
        return p.of(rows)

    @app.get("/api/v1/reconciliation/reports/{channel}/{day}", tags=["reconciliation"],
             **guard("reconcile:read"))
    def api_reconciliation_report(channel: str, day: date) -> dict[str, Any]:
        """The stored report of one channel and day (``dianfei reconcile --json``'s figures)."""
        check_day(day, "day")
        with db.session() as s:
            found = rec.report(s, channel, day)
        if found is None:
            raise NotFoundError(f"no reconciliation of {channel[:16]} for {day}")
        return found

    @app.get("/api/v1/reconciliation/worklist", tags=["reconciliation"],
             **guard("reconcile:read"))
    def api_reconciliation_worklist(
            p: Annotated[Page, Depends(page)],
            channel: Annotated[str | None, Query(min_length=1, max_length=16)] = None,
            owner: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
            include_resolved: bool = False,
    ) -> dict[str, Any]:
        """The breaks awaiting clarification (missing in the ledger or the statement, amount
        mismatches …), oldest first, with each one's age in days and its owner."""
        with db.session() as s:
            rows = rec.worklist(s, clock=clock, include_resolved=include_resolved,
                                channel=channel, owner=owner)
        return p.of(rows) | {"as_of": business_date(clock.now()).isoformat()}


def _iso(v: date | None) -> str | None:
    return None if v is None else v.isoformat()
