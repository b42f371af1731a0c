"""Payment plans (分期缴费协议) over REST: propose (collectors), approve (supervisors, not the
proposer), list, show, performance report. The same service functions as ``dianfei plan``.

A collector sees only the plans they proposed (another's answers 404, as one that does not
exist); the proposer and the approver are the signed-in users, never a name in the body.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, HTTPException, Query, Request
from pydantic import BaseModel, Field

from dianfei.collections.plan_report import list_plans, plan_performance, show_plan
from dianfei.collections.service import approve_plan, propose_plan, suggest_schedule
from dianfei.core.clock import Clock
from dianfei.core.errors import ValidationError
from dianfei.core.money import parse_decimal, to_fen
from dianfei.db.engine import Database
from dianfei.security.service import Principal
from dianfei.web.auth import guard, signed_in
from dianfei.web.paging import Day, RowId

#: roles that see every plan (others — collectors — see the ones they proposed)
_SEE_ALL = frozenset({"admin", "supervisor", "auditor"})


class InstalmentIn(BaseModel):
    #: a pay plan's instalment date; none on an instalment arrangement (the bills' dates)
    due_on: Day | None = None
    #: yuan, e.g. "80.00"
    amount: str = Field(min_length=1, max_length=20)


class PlanIn(BaseModel):
    account_id: str = Field(min_length=1, max_length=32)
    kind: Literal["pay_plan", "instalment"]
    #: yuan due first
    down_payment: str = Field(default="0", max_length=20)
    #: how many instalments (spread evenly), or each one; or ``suggested``: the policy's schedule
    instalments: int | list[InstalmentIn] | None = None
    suggested: bool = False
    #: the idempotency key (or the ``Idempotency-Key`` header): a retry is stored once
    request_key: str | None = Field(default=None, max_length=120)


def _fen(text: str, what: str) -> int:
    return to_fen(parse_decimal(text, what, places=2, allow_negative=False))


def _own(who: Principal) -> str | None:
    return None if who.role in _SEE_ALL else who.username


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    @app.post("/api/v1/plans", tags=["plans"], status_code=201, **guard("plans:propose"))
    def api_propose(body: PlanIn, request: Request,
                    idempotency_key: Annotated[str | None, Header(max_length=120)] = None
                    ) -> dict[str, Any]:
        """Propose a plan for what the account owes, within policy (refusals name the rule):
        active at once, or ``proposed`` awaiting a supervisor's approval."""
        who = signed_in(request)
        given = sum((body.instalments is not None, body.suggested))
        if given != 1:
            raise ValidationError("give exactly one of instalments or suggested")
        with db.session() as s:
            down = _fen(body.down_payment, "down_payment")
            plan_of: Any
            if body.suggested:
                sug = suggest_schedule(s, account_id=body.account_id, kind=body.kind, clock=clock)
                down = int(sug["down_payment_fen"])
                plan_of = ([(date.fromisoformat(i["due_on"]), int(i["amount_fen"]))
                            for i in sug["instalments"]] if body.kind == "pay_plan"
                           else [int(i["amount_fen"]) for i in sug["instalments"]])
            elif isinstance(body.instalments, int):
                plan_of = body.instalments
            elif body.kind == "pay_plan":
                plan_of = []
                for i in body.instalments or []:
                    if i.due_on is None:
                        raise ValidationError("a pay plan's instalments each need due_on")
                    plan_of.append((i.due_on, _fen(i.amount, "instalment amount")))
            else:
                if any(i.due_on is not None for i in body.instalments or []):
                    raise ValidationError("an instalment arrangement's instalments fall due with "
                                          "the coming bills: give amounts without due_on")
                plan_of = [_fen(i.amount, "instalment amount") for i in body.instalments or []]
            plan = propose_plan(s, account_id=body.account_id, kind=body.kind,
                                down_payment_fen=down, instalments=plan_of,
                                requested_by=who.username, clock=clock,
                                request_key=body.request_key or idempotency_key)
            plan_id = plan.plan_id
        return show_plan(db.engine, plan_id)

    @app.post("/api/v1/plans/{plan_id}/approval", tags=["plans"], **guard("plans:approve"))
    def api_approve(plan_id: RowId, request: Request) -> dict[str, Any]:
        """Approve a proposed plan as the signed-in supervisor (never the proposer)."""
        who = signed_in(request)
        with db.session() as s:
            approve_plan(s, plan_id, who.username, clock)
        return show_plan(db.engine, plan_id)

    @app.get("/api/v1/plans", tags=["plans"], **guard("plans:read"))
    def api_plans(request: Request, status: str | None = None,
                  account_id: str | None = None) -> list[dict[str, Any]]:
        """Plans, newest first (a collector: the ones they proposed)."""
        who = signed_in(request)
        return list_plans(db.engine, status=status, account_id=account_id,
                          requested_by=_own(who))

    @app.get("/api/v1/plans/report", tags=["plans"], **guard("plans:report"))
    def api_report(first: Annotated[Day, Query(alias="from")],
                   last: Annotated[Day, Query(alias="to")],
                   by: Literal["collector", "segment"] = "collector") -> dict[str, Any]:
        """Plan performance (in force, kept, broken, completed, recovered) by collector or
        segment for a range of business days."""
        return plan_performance(db.engine, first, last, by)

    @app.get("/api/v1/plans/{plan_id}", tags=["plans"], **guard("plans:read"))
    def api_plan(plan_id: RowId, request: Request) -> dict[str, Any]:
        """One plan with its instalments."""
        who = signed_in(request)
        plan = show_plan(db.engine, plan_id)
        mine = _own(who)
        if mine is not None and plan["requested_by"] != mine:
            raise HTTPException(status_code=404, detail=f"payment plan {plan_id} does not exist")
        return plan
