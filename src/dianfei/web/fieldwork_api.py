"""Field-work REST API: visits and calls, tickets, decisions, surveys (the same service
functions as ``dianfei visit …`` / ``dianfei ticket …``).

Who may do what is data (``security/roles.py``): collectors record visits and see only their own
(the user's collector id from the collector roster, when that link exists; an unlinked collector
user sees nothing and records nothing); supervisors see every visit and decide tickets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, Field

from dianfei.core.clock import Clock
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.security.users import Principal
from dianfei.web.auth import guard, signed_in
from dianfei.web.paging import BigInt, Day, Instant, RowId


class VisitIn(BaseModel):
    request_id: str = Field(min_length=1, max_length=64, description="retry key: stored once")
    account_id: str
    collector_id: str
    channel: str = Field(description="visit or call")
    outcome: str = Field(description="paid, promise, dispute, hardship, wrong_contact, vacant, "
                         "refused")
    at: Instant = Field(description="when it took place, with its UTC offset")
    promise_on: Day | None = None
    promise_amount: str | None = Field(None, description="yuan, e.g. \"120.00\"")
    bill_id: str | None = None
    note: str | None = None


class TicketIn(BaseModel):
    request_id: str = Field(min_length=1, max_length=64)
    account_id: str
    category: str
    summary: str | None = None
    bill_id: str | None = None
    notice_key: str | None = None
    visit_id: BigInt | None = None
    sla_working_days: BigInt | None = None


class DecisionIn(BaseModel):
    decision: str = Field(min_length=1)


class SurveyIn(BaseModel):
    request_id: str = Field(min_length=1, max_length=64)
    subject: str = Field(description="visit, ticket or reconnection")
    subject_id: BigInt
    score: int = Field(description="1 … 5")


def _own_collector(db: Database, who: Principal) -> str | None:
    """The collector a signed-in user is (the roster's user → collector link), else None."""
    from dianfei.collections.worklist import collector_of

    return collector_of(db, who)


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.collections.surveys import record_survey, survey_json
    from dianfei.collections.tickets import (
        TicketLinks,
        decide,
        list_tickets,
        open_ticket,
        ticket_json,
    )
    from dianfei.collections.visits import list_visits, record_visit, visit_json
    from dianfei.core.money import parse_decimal, to_fen

    @app.post("/api/v1/visits", tags=["fieldwork"], status_code=201, **guard("visits:record"))
    def api_record_visit(body: VisitIn, request: Request) -> dict[str, Any]:
        who = signed_in(request)
        if who.role == "collector" and _own_collector(db, who) != body.collector_id:
            raise HTTPException(status_code=403, detail="a collector records only their own visits")
        amount = (to_fen(parse_decimal(body.promise_amount, "promise_amount", places=2,
                                       allow_negative=False))
                  if body.promise_amount is not None else None)
        with db.session() as s:
            return visit_json(record_visit(
                s, request_id=body.request_id, account_id=body.account_id,
                collector_id=body.collector_id, channel=body.channel, outcome=body.outcome,
                at=_aware(body.at), recorded_by=who.username, clock=clock,
                promise_on=body.promise_on, promise_amount_fen=amount, bill_id=body.bill_id,
                note=body.note))

    @app.get("/api/v1/visits", tags=["fieldwork"], **guard("visits:read"))
    def api_visits(request: Request, account: str | None = Query(None),
                   collector: str | None = Query(None)) -> list[dict[str, Any]]:
        who = signed_in(request)
        if who.role == "collector":
            own = _own_collector(db, who)
            if own is None or (collector is not None and collector != own):
                return []  # a collector sees only their own work
            collector = own
        with db.session() as s:
            return [visit_json(r) for r in list_visits(s, account_id=account,
                                                       collector_id=collector)]

    @app.post("/api/v1/tickets", tags=["fieldwork"], status_code=201, **guard("tickets:open"))
    def api_open_ticket(body: TicketIn, request: Request) -> dict[str, Any]:
        who = signed_in(request)
        with db.session() as s:
            return ticket_json(open_ticket(
                s, request_id=body.request_id, account_id=body.account_id,
                category=body.category, opened_by=who.username, clock=clock, summary=body.summary,
                links=TicketLinks(body.bill_id, body.notice_key, body.visit_id),
                sla_working_days=body.sla_working_days))

    @app.get("/api/v1/tickets", tags=["fieldwork"], **guard("tickets:read"))
    def api_tickets(account: str | None = Query(None),
                    status: str | None = Query(None)) -> list[dict[str, Any]]:
        with db.session() as s:
            return [ticket_json(t) for t in list_tickets(s, account_id=account, status=status)]

    @app.post("/api/v1/tickets/{ticket_id}/decision", tags=["fieldwork"],
              **guard("tickets:decide"))
    def api_decide(ticket_id: RowId, body: DecisionIn, request: Request) -> dict[str, Any]:
        who = signed_in(request)
        with db.session() as s:
            return ticket_json(decide(s, ticket_id, decision=body.decision,
                                      decided_by=who.username, clock=clock))

    @app.post("/api/v1/surveys", tags=["fieldwork"], status_code=201, **guard("surveys:record"))
    def api_survey(body: SurveyIn, request: Request) -> dict[str, Any]:
        who = signed_in(request)
        with db.session() as s:
            return survey_json(record_survey(s, request_id=body.request_id, subject=body.subject,
                                             subject_id=body.subject_id, score=body.score,
                                             recorded_by=who.username, clock=clock))


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValidationError(f"at needs a UTC offset, got {at.isoformat()}")
    return at
