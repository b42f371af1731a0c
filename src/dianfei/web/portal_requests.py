"""The customer portal's requests (web/portal.py has the sign-in, bills and paying): a payment
plan within policy (a proposal awaiting staff approval), a complaint (a service ticket) and a
rating of a decided ticket or a visit (a satisfaction survey). Every form is checked field by
field; the customer's own accounts, bills, tickets and visits only (anything else: 404)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from dianfei.core.clock import BUSINESS_TZ
from dianfei.core.errors import DianfeiError, ValidationError
from dianfei.core.money import fmt_yuan, parse_decimal, to_fen
from dianfei.web import i18n
from dianfei.web.auth import guard
from dianfei.web.portal import Portal, form_fields

COMPLAINT_MIN, COMPLAINT_MAX = 5, 1000


def _customer_policy() -> Any:
    """The plan policy with every row needing approval: a customer's own request is a proposal
    a person looks at, whatever its size (the limits stay those of the policy)."""
    from dianfei.collections.plan_policy import plan_policy

    pol = plan_policy()
    return replace(pol, rows={k: replace(r, approval_always=True) for k, r in pol.rows.items()})


def _field_errors(form: dict[str, str], specs: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Required fields left empty → {field: message key}."""
    return {name: "portal.required" for name, _ in specs.items() if not form.get(name, "").strip()}


def request_routes(app: FastAPI, portal: Portal) -> None:
    db = portal.db

    def plan_page(request: Request, customer_id: str, status_code: int = 200,
                  **values: Any) -> HTMLResponse:
        from dianfei.collections.plan_workflow import account_terms, suggest_schedule

        accounts = portal.accounts(customer_id)
        account = values.pop("account", None) or (accounts[0] if accounts else None)
        suggestion, refusal, rules, owed = None, None, None, None
        if account:
            pol = _customer_policy()
            try:
                with db.session() as s:
                    terms = account_terms(s.connection(), account, pol)
                    rules, owed = terms.rules.to_json(), fmt_yuan(terms.owed)
                    if terms.owed <= 0:  # nothing to spread: no form, no policy text
                        return portal.render(request, "plan.html", status_code=status_code,
                                             accounts=accounts, account=account, owed=owed,
                                             owes=False, suggestion=None, refusal=None,
                                             rules=None, request_id="", errors={}, form={},
                                             done=values.get("done"), message=None)
                    suggestion = suggest_schedule(s, account_id=account, clock=portal.clock,
                                                  policy=pol)
            except DianfeiError as exc:
                refusal = i18n.refusal(portal.console.lang(request), exc)
        return portal.render(request, "plan.html", status_code=status_code, accounts=accounts,
                             account=account, suggestion=suggestion, refusal=refusal, rules=rules,
                             owed=owed, owes=True,
                             request_id=values.pop("request_id", uuid.uuid4().hex),
                             **{"errors": {}, "form": {}, "done": None, "message": None,
                                **values})

    @app.get("/portal/plan", response_class=HTMLResponse, include_in_schema=False,
             **guard("own:plans"))
    def portal_plan(request: Request) -> Response:
        _, customer_id = portal.customer(request)
        return plan_page(request, customer_id)

    @app.post("/portal/plan", response_class=HTMLResponse, include_in_schema=False,
              **guard("own:plans"))
    async def portal_plan_request(request: Request) -> Response:
        """A customer's plan request: within policy it becomes a proposal awaiting a staff
        member's approval; outside it, the policy's reason is shown and nothing is stored."""
        from starlette.concurrency import run_in_threadpool

        from dianfei.collections.plan_workflow import propose_plan

        form = await form_fields(request)
        who, customer_id = portal.customer(request)
        account = form.get("account", "")
        if account not in portal.accounts(customer_id):
            raise HTTPException(status_code=404, detail="no such account")
        errors = _field_errors(form, {"down_payment": (), "instalments": ()})
        down, count = 0, 0
        if "down_payment" not in errors:
            try:
                down = to_fen(parse_decimal(form["down_payment"], "down_payment", places=2))
                if down < 0:
                    errors["down_payment"] = "portal.plan.bad_down"
            except ValidationError:
                errors["down_payment"] = "portal.plan.bad_down"
        if "instalments" not in errors:
            raw = form["instalments"].strip()
            if not raw.isdigit() or not 1 <= int(raw) <= 60:
                errors["instalments"] = "portal.plan.bad_count"
            else:
                count = int(raw)
        rid = form.get("request_id", "")[:64] or uuid.uuid4().hex
        if errors:
            return plan_page(request, customer_id, 422, account=account, errors=errors,
                             form=form, request_id=rid)

        def propose() -> Any:
            with db.session() as s:
                plan = propose_plan(s, account_id=account, kind="pay_plan",
                                    down_payment_fen=down, instalments=count,
                                    requested_by=f"customer:{who.username}", clock=portal.clock,
                                    request_key=f"portal:{customer_id}:{rid}",
                                    policy=_customer_policy())
                return plan.plan_id, plan.status

        try:
            plan_id, status = await run_in_threadpool(propose)
        except DianfeiError as exc:
            return plan_page(request, customer_id, exc.http_status, account=account, form=form,
                             message=i18n.refusal(portal.console.lang(request), exc),
                             request_id=uuid.uuid4().hex)
        return plan_page(request, customer_id, account=account,
                         done={"plan_id": plan_id, "status": status})

    def complaint_page(request: Request, customer_id: str, status_code: int = 200,
                       **values: Any) -> HTMLResponse:
        return portal.render(request, "complaint.html", status_code=status_code,
                             accounts=portal.accounts(customer_id),
                             bills=[b for b in portal.bills(customer_id)
                                    if b["state"] != "cancelled"][:12],
                             request_id=values.pop("request_id", uuid.uuid4().hex),
                             limits=(COMPLAINT_MIN, COMPLAINT_MAX),
                             **{"errors": {}, "form": {}, "done": None, "message": None,
                                **values})

    @app.get("/portal/complaint", response_class=HTMLResponse, include_in_schema=False,
             **guard("own:complaints"))
    def portal_complaint(request: Request) -> Response:
        _, customer_id = portal.customer(request)
        return complaint_page(request, customer_id)

    @app.post("/portal/complaint", response_class=HTMLResponse, include_in_schema=False,
              **guard("own:complaints"))
    async def portal_complaint_file(request: Request) -> Response:
        """A complaint: a service ticket of category ``complaint`` with its SLA."""
        from starlette.concurrency import run_in_threadpool

        from dianfei.collections.tickets import TicketLinks, open_ticket

        form = await form_fields(request)
        who, customer_id = portal.customer(request)
        accounts = portal.accounts(customer_id)
        account = form.get("account", "") or (accounts[0] if accounts else "")
        if account not in accounts:
            raise HTTPException(status_code=404, detail="no such account")
        bill_id = form.get("bill_id", "").strip() or None
        if bill_id is not None:
            portal.bill(customer_id, bill_id)  # 404 for another customer's bill
        text = " ".join(form.get("summary", "").split())
        errors = {}
        if not COMPLAINT_MIN <= len(text) <= COMPLAINT_MAX:
            errors["summary"] = "portal.complaint.length"
        rid = form.get("request_id", "")[:64] or uuid.uuid4().hex
        if errors:
            return complaint_page(request, customer_id, 422, errors=errors, form=form,
                                  request_id=rid)

        def file() -> int:
            with db.session() as s:
                ticket = open_ticket(s, request_id=f"portal:{customer_id}:{rid}",
                                     account_id=account, category="complaint",
                                     opened_by=f"customer:{who.username}", clock=portal.clock,
                                     summary=text, links=TicketLinks(bill_id=bill_id))
                return int(ticket.ticket_id)

        try:
            ticket_id = await run_in_threadpool(file)
        except DianfeiError as exc:
            return complaint_page(request, customer_id, exc.http_status, form=form,
                                  message=i18n.refusal(portal.console.lang(request), exc),
                                  request_id=rid)
        return complaint_page(request, customer_id, done={"ticket_id": ticket_id})

    def rateable(customer_id: str) -> list[dict[str, Any]]:
        """The customer's decided tickets and visits, newest first: what a score may be about."""
        from dianfei.collections.tickets import list_tickets
        from dianfei.collections.visits import list_visits

        out: list[dict[str, Any]] = []
        with db.session() as s:
            for account in portal.accounts(customer_id):
                out += [{"subject": "ticket", "id": int(t.ticket_id), "category": t.category,
                         "at": t.opened_at.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d"),
                         "summary": t.summary or ""}
                        for t in list_tickets(s, account_id=account, status="decided",
                                              limit=50)]
                out += [{"subject": "visit", "id": int(r.visit.visit_id),
                         "category": f"{r.visit.channel}: {r.visit.outcome}",
                         "at": r.visit.at.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d"),
                         "summary": ""}
                        for r in reversed(list_visits(s, account_id=account, limit=50))]
        return out

    def rate_page(request: Request, customer_id: str, status_code: int = 200,
                  **values: Any) -> HTMLResponse:
        return portal.render(request, "rate.html", status_code=status_code,
                             subjects=rateable(customer_id),
                             **{"errors": {}, "done": None, "message": None, **values})

    @app.get("/portal/rate", response_class=HTMLResponse, include_in_schema=False,
             **guard("own:ratings"))
    def portal_rate(request: Request) -> Response:
        _, customer_id = portal.customer(request)
        return rate_page(request, customer_id)

    @app.post("/portal/rate", response_class=HTMLResponse, include_in_schema=False,
              **guard("own:ratings"))
    async def portal_rate_record(request: Request) -> Response:
        """A score 1–5 for one of the customer's decided tickets or visits."""
        from starlette.concurrency import run_in_threadpool

        from dianfei.collections.surveys import record_survey

        form = await form_fields(request)
        who, customer_id = portal.customer(request)
        subject, raw_id = form.get("subject", ""), form.get("subject_id", "")
        mine = {(s["subject"], s["id"]) for s in rateable(customer_id)}
        if not raw_id.isdigit() or (subject, int(raw_id)) not in mine:
            raise HTTPException(status_code=404, detail="nothing of yours to rate")
        score = form.get("score", "")
        if score not in {"1", "2", "3", "4", "5"}:
            return rate_page(request, customer_id, 422,
                             errors={f"{subject}:{raw_id}": "portal.rate.bad_score"})

        def record() -> None:
            with db.session() as s:
                record_survey(s, request_id=f"portal:{subject}:{raw_id}", subject=subject,
                              subject_id=int(raw_id), score=int(score),
                              recorded_by=f"customer:{who.username}", clock=portal.clock)

        try:
            await run_in_threadpool(record)
        except DianfeiError as exc:
            return rate_page(request, customer_id, exc.http_status,
                             message=i18n.refusal(portal.console.lang(request), exc))
        return rate_page(request, customer_id, done={"subject": subject, "id": int(raw_id),
                                                     "score": int(score)})
