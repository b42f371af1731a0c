"""Collections back-office pages: payment plans (list, show, propose, approve, cancel), service
tickets (list, open, decide) and strategy experiments (arms, sizes, KPIs with their 95 %
intervals and each challenger minus the champion).

The same service functions as ``web/plans_api.py``, ``web/fieldwork_api.py`` and
``dianfei experiment``: ``collections.plan_workflow`` (policy and four-eyes are enforced there;
its message is shown as it is), ``collections.plan_report``, ``collections.tickets`` and
``risk.service``. A collector sees only the plans they proposed and proposes only for accounts
that have been on their lists.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dianfei.core.clock import Clock, business_date
from dianfei.core.errors import DianfeiError, NotFoundError
from dianfei.db.engine import Database
from dianfei.security.service import Principal, allows
from dianfei.web.auth import guard, signed_in
from dianfei.web.console import Console
from dianfei.web.field_forms import Errors, Fields, list_fetch, may_open_account, place, posted
from dianfei.web.i18n import refusal, translator
from dianfei.web.tables import Column, Page, listing

#: roles that see every plan (others — collectors — see the ones they proposed), as the API
_SEE_ALL_PLANS = frozenset({"admin", "supervisor", "auditor"})
_PLAN_FIELDS = (("down_payment", ("down payment",)), ("instalments", ("instalment",)),
                ("account_id", ("account",)), ("kind", ("kind",)))


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    console: Console = app.state.console
    console.add_nav("nav.plans", "/plans", "plans:read", order=32)
    console.add_nav("nav.tickets", "/tickets", "tickets:read", order=33)
    console.add_nav("nav.experiments", "/experiments", "experiments:read", order=60)
    _plan_routes(app, db, clock, console)
    _ticket_routes(app, db, clock, console)
    _experiment_routes(app, db, clock, console)


# -- payment plans -----------------------------------------------------------------------------


def _plan_routes(app: FastAPI, db: Database, clock: Clock, console: Console) -> None:
    from dianfei.collections.plan_policy import KINDS
    from dianfei.collections.plan_report import STATUSES, count_plans, list_plans, show_plan
    from dianfei.collections.plan_workflow import (
        approve_plan,
        cancel_plan,
        propose_plan,
        suggest_schedule,
    )
    from dianfei.collections.worklist import roster_frame

    def own(who: Principal) -> str | None:
        return None if who.role in _SEE_ALL_PLANS else who.username

    @app.get("/plans", response_class=HTMLResponse, include_in_schema=False,
             **guard("plans:read"))
    def plans_page(request: Request, status: str | None = None,
                   collector: str | None = None) -> Response:
        who = signed_in(request)
        t = translator(console.lang(request))
        roster = [r for r in roster_frame(db).to_dicts() if r["username"]]
        by = own(who)
        if by is None and collector:
            # a collector's plans are the ones their signed-in user proposed
            users = [r["username"] for r in roster if r["collector_id"] == collector]
            if not users:
                raise HTTPException(status_code=422,
                                    detail=f"collector: {collector!r} has no user on the roster")
            by = users[0]

        def fetch(offset: int, limit: int) -> Page:
            rows = list_plans(db.engine, status=status or None, requested_by=by, limit=limit,
                              offset=offset)
            for r in rows:
                r["status_text"] = t(f"field.plan.{r['status']}")
                r["kind_text"] = t(f"field.kind.{r['kind']}")
                r["agreed_at"] = (r["agreed_at"] or "")[:16].replace("T", " ")
            return Page(rows, count_plans(db.engine, status=status or None, requested_by=by))

        columns = [Column("plan_id", "field.col.plan", num=True,
                          link=lambda r: f"/plans/{r['plan_id']}"),
                   Column("account_id", "field.col.account"),
                   Column("kind_text", "field.col.plan_kind"),
                   Column("status_text", "field.col.status"),
                   Column("total", "field.col.total", num=True),
                   Column("down_payment", "field.col.down", num=True),
                   Column("requested_by", "field.col.requested_by"),
                   Column("approved_by", "field.col.approved_by"),
                   Column("agreed_at", "field.col.agreed_at")]
        return listing(request, console, name="plans", title=t("field.title.plans"),
                       columns=columns, fetch=fetch, template="field/plans.html",
                       statuses=STATUSES, status=status or "", collector=collector or "",
                       roster=roster if own(who) is None else [],
                       may_propose=allows(who.role, "plans:propose"))

    def plan_page(request: Request, who: Principal, plan_id: int, *, error: str | None = None,
                  status: int = 200, saved: str | None = None) -> Response:
        t = translator(console.lang(request))
        plan = show_plan(db.engine, plan_id)
        mine = own(who)
        if mine is not None and plan["requested_by"] != mine:
            raise NotFoundError(f"payment plan {plan_id} does not exist")
        columns = [Column("seq", "field.col.seq", num=True), Column("due_on", "field.col.due_on"),
                   Column("amount", "field.col.amount", num=True),
                   Column("period", "field.col.period")]
        may_decide = allows(who.role, "plans:approve")
        return listing(request, console, name=f"plan-{plan_id}",
                       title=t("field.title.plan", id=plan_id), columns=columns,
                       fetch=list_fetch(plan["instalments"]), template="field/plan.html",
                       status_code=status, plan=plan, error=error, saved=saved,
                       may_approve=may_decide and plan["status"] == "proposed",
                       may_cancel=may_decide and plan["status"] in ("proposed", "active"))

    @app.get("/plans/new", response_class=HTMLResponse, include_in_schema=False,
             **guard("plans:propose"))
    def propose_page(request: Request, account: str | None = None) -> Response:
        who = signed_in(request)
        return proposal(request, who, {"account_id": account or "", "kind": "pay_plan",
                                       "request_key": uuid.uuid4().hex})

    def proposal(request: Request, who: Principal, values: dict[str, str],
                 errors: Errors | None = None, status: int = 200) -> Response:
        t = translator(console.lang(request))
        account = values.get("account_id", "")
        hint = None
        if account and may_open_account(db, who, account):
            try:
                with db.session() as s:
                    sug = suggest_schedule(s, account_id=account,
                                           kind=values.get("kind") or "pay_plan", clock=clock)
                hint = {"total": sug["total"], "policy": sug["policy"],
                        "down": sug["down_payment"], "n": len(sug["instalments"]),
                        "approval": sug["approval_required"]}
            except DianfeiError as exc:  # the account owes nothing, no policy row …
                hint = {"error": refusal(console.lang(request), exc)}
        return console.render(request, "field/propose.html", status_code=status,
                              title=t("field.title.propose"), values=values,
                              errors=errors or {}, kinds=KINDS, hint=hint)

    @app.post("/plans/new", response_class=HTMLResponse, include_in_schema=False,
              **guard("plans:propose"))
    async def propose_post(request: Request) -> Response:
        who = signed_in(request)
        form = await posted(request)
        return await run_in_threadpool(propose, request, who, form)

    def propose(request: Request, who: Principal, form: dict[str, str]) -> Response:
        f = Fields(form, translator(console.lang(request)))
        account = f.text("account_id", max_len=32)
        kind = f.choice("kind", KINDS)
        suggested = form.get("suggested") == "on"
        down = f.fen("down_payment", required=False) if not suggested else None
        count = f.whole("instalments") if not suggested else None
        key = f.text("request_key", max_len=120)
        if account and not may_open_account(db, who, account):
            f.errors["account_id"] = f"account {account!r} is on none of your worklists"
        if not f.errors:
            assert account and kind and key
            try:
                with db.session() as s:
                    if suggested:
                        sug = suggest_schedule(s, account_id=account, kind=kind, clock=clock)
                        down = int(sug["down_payment_fen"])
                        plan_of: Any = ([(date.fromisoformat(i["due_on"]), int(i["amount_fen"]))
                                         for i in sug["instalments"]] if kind == "pay_plan"
                                        else [int(i["amount_fen"]) for i in sug["instalments"]])
                    else:
                        plan_of = count
                    plan = propose_plan(s, account_id=account, kind=kind,
                                        down_payment_fen=down or 0, instalments=plan_of,
                                        requested_by=who.username, clock=clock, request_key=key)
                    plan_id, state = plan.plan_id, plan.status
                return RedirectResponse(f"/plans/{plan_id}?saved={state}", status_code=303)
            except DianfeiError as exc:
                f.errors.update(place(exc, _PLAN_FIELDS))
        return proposal(request, who, form, f.errors, status=422)

    @app.get("/plans/{plan_id}", response_class=HTMLResponse, include_in_schema=False,
             **guard("plans:read"))
    def plan_show(request: Request, plan_id: int, saved: str | None = None) -> Response:
        t = translator(console.lang(request))
        words = {"proposed": "field.proposed", "active": "field.agreed",
                 "approved": "field.approved", "cancelled": "field.cancelled"}
        return plan_page(request, signed_in(request), plan_id,
                         saved=t(words[saved]) if saved in words else None)

    @app.post("/plans/{plan_id}/approve", response_class=HTMLResponse, include_in_schema=False,
              **guard("plans:approve"))
    async def plan_approve(request: Request, plan_id: int) -> Response:
        who = signed_in(request)
        await posted(request)
        return await run_in_threadpool(decide_plan, request, who, plan_id, "approve", "")

    @app.post("/plans/{plan_id}/cancel", response_class=HTMLResponse, include_in_schema=False,
              **guard("plans:approve"))
    async def plan_cancel(request: Request, plan_id: int) -> Response:
        who = signed_in(request)
        form = await posted(request)
        return await run_in_threadpool(decide_plan, request, who, plan_id, "cancel",
                                       form.get("reason", ""))

    def decide_plan(request: Request, who: Principal, plan_id: int, action: str,
                    reason: str) -> Response:
        try:
            with db.session() as s:
                if action == "approve":
                    approve_plan(s, plan_id, who.username, clock)
                else:
                    cancel_plan(s, plan_id, cancelled_by=who.username, reason=reason,
                                clock=clock)
        except NotFoundError:
            raise
        except DianfeiError as exc:
            # four-eyes, a past first instalment, a plan no longer proposed: the service's words
            return plan_page(request, who, plan_id, error=refusal(console.lang(request), exc),
                             status=exc.http_status)
        done = "approved" if action == "approve" else "cancelled"
        return RedirectResponse(f"/plans/{plan_id}?saved={done}", status_code=303)


# -- tickets -----------------------------------------------------------------------------------


def _ticket_routes(app: FastAPI, db: Database, clock: Clock, console: Console) -> None:
    from dianfei.collections.ticket_models import TICKET_CATEGORIES, TICKET_STATUSES
    from dianfei.collections.tickets import (
        TicketLinks,
        count_tickets,
        decide,
        get_ticket,
        list_tickets,
        open_ticket,
        ticket_json,
    )

    def short(v: str | None) -> str:
        return (v or "")[:16].replace("T", " ")

    def tickets_page(request: Request, *, errors: Errors | None = None,
                     values: dict[str, str] | None = None, status_code: int = 200) -> Response:
        who = signed_in(request)
        t = translator(console.lang(request))
        status = request.query_params.get("status") or None
        account = request.query_params.get("account") or None
        if status is not None and status not in TICKET_STATUSES:
            raise HTTPException(status_code=422,
                                detail=f"status: one of {', '.join(TICKET_STATUSES)}")

        def fetch(offset: int, limit: int) -> Page:
            with db.session() as s:
                total = count_tickets(s, account_id=account, status=status)
                rows = [ticket_json(x) for x in list_tickets(
                    s, account_id=account, status=status, limit=limit, offset=offset)]
            for r in rows:
                r["category_text"] = t(f"field.category.{r['category']}")
                r["status_text"] = t(f"field.ticket.{r['status']}")
                r["opened_at"], r["sla_due_at"] = short(r["opened_at"]), short(r["sla_due_at"])
            return Page(rows, total)

        columns = [Column("ticket_id", "field.col.ticket", num=True,
                          link=lambda r: f"/tickets/{r['ticket_id']}"),
                   Column("account_id", "field.col.account"),
                   Column("category_text", "field.col.category"),
                   Column("status_text", "field.col.status"),
                   Column("opened_at", "field.col.opened_at"),
                   Column("sla_due_at", "field.col.sla"),
                   Column("decision", "field.col.decision")]
        return listing(request, console, name="tickets", title=t("field.title.tickets"),
                       columns=columns, fetch=fetch, template="field/tickets.html",
                       status_code=status_code, statuses=TICKET_STATUSES,
                       categories=TICKET_CATEGORIES, status=status or "", account=account or "",
                       errors=errors or {}, values=values or {"request_id": uuid.uuid4().hex},
                       may_open=allows(who.role, "tickets:open"))

    @app.get("/tickets", response_class=HTMLResponse, include_in_schema=False,
             **guard("tickets:read"))
    def tickets_list(request: Request) -> Response:
        return tickets_page(request)

    @app.post("/tickets", response_class=HTMLResponse, include_in_schema=False,
              **guard("tickets:open"))
    async def tickets_open(request: Request) -> Response:
        who = signed_in(request)
        form = await posted(request)
        return await run_in_threadpool(open_one, request, who, form)

    def open_one(request: Request, who: Principal, form: dict[str, str]) -> Response:
        f = Fields(form, translator(console.lang(request)))
        account = f.text("account_id", max_len=32)
        category = f.choice("category", TICKET_CATEGORIES)
        summary = f.text("summary", required=False, max_len=2000)
        bill_id = f.text("bill_id", required=False, max_len=64)
        request_id = f.text("request_id", max_len=64)
        if not f.errors:
            assert account and category and request_id
            try:
                with db.session() as s:
                    ticket = open_ticket(s, request_id=request_id, account_id=account,
                                         category=category, opened_by=who.username, clock=clock,
                                         summary=summary, links=TicketLinks(bill_id=bill_id))
                    ticket_id = ticket.ticket_id
                return RedirectResponse(f"/tickets/{ticket_id}", status_code=303)
            except DianfeiError as exc:
                f.errors.update(place(exc, (("bill_id", ("bill",)), ("account_id", ("account",)),
                                            ("category", ("category",)))))
        if not allows(who.role, "tickets:read"):
            # a collector opens tickets from an account's field view, not this list
            raise HTTPException(status_code=422, detail="; ".join(
                f"{k}: {v}" for k, v in f.errors.items()))
        return tickets_page(request, errors=f.errors, values=form, status_code=422)

    def ticket_page(request: Request, ticket_id: int, *, error: str | None = None,
                    status: int = 200) -> Response:
        who = signed_in(request)
        t = translator(console.lang(request))
        with db.session() as s:
            ticket = ticket_json(get_ticket(s, ticket_id))
        fields = [(k, ticket[k]) for k in ("account_id", "category", "status", "summary",
                                           "bill_id", "visit_id", "opened_by", "opened_at",
                                           "sla_due_at", "escalated_to", "decided_by",
                                           "decided_at", "decision") if ticket[k] is not None]
        return console.render(request, "field/ticket.html", status_code=status,
                              title=t("field.title.ticket", id=ticket_id), ticket=ticket,
                              fields=fields, error=error,
                              may_decide=allows(who.role, "tickets:decide")
                              and ticket["status"] != "decided")

    @app.get("/tickets/{ticket_id}", response_class=HTMLResponse, include_in_schema=False,
             **guard("tickets:read"))
    def ticket_show(request: Request, ticket_id: int) -> Response:
        return ticket_page(request, ticket_id)

    @app.post("/tickets/{ticket_id}/decision", response_class=HTMLResponse,
              include_in_schema=False, **guard("tickets:decide"))
    async def ticket_decide(request: Request, ticket_id: int) -> Response:
        who = signed_in(request)
        form = await posted(request)
        return await run_in_threadpool(decide_one, request, who, ticket_id,
                                       form.get("decision", ""))

    def decide_one(request: Request, who: Principal, ticket_id: int, decision: str) -> Response:
        try:
            with db.session() as s:
                decide(s, ticket_id, decision=decision, decided_by=who.username, clock=clock)
        except NotFoundError:
            raise
        except DianfeiError as exc:
            return ticket_page(request, ticket_id, error=refusal(console.lang(request), exc),
                             status=exc.http_status)
        return RedirectResponse(f"/tickets/{ticket_id}", status_code=303)


# -- strategy experiments ----------------------------------------------------------------------


def _interval(v: dict[str, Any]) -> str:
    return f"{v['value']} [{v['low']}, {v['high']}]"


def _excludes_zero(v: dict[str, Any]) -> bool:
    return float(v["low"]) > 0 or float(v["high"]) < 0


def _experiment_routes(app: FastAPI, db: Database, clock: Clock, console: Console) -> None:
    from dianfei.risk.experiments import KPI_NAMES
    from dianfei.risk.service import experiment_report, list_experiments

    @app.get("/experiments", response_class=HTMLResponse, include_in_schema=False,
             **guard("experiments:read"))
    def experiments_page(request: Request) -> Response:
        t = translator(console.lang(request))
        rows = [{"experiment_id": e["experiment_id"], "description": e["description"],
                 "arms": " · ".join(f"{a} {s:.0%}" for a, s in e["arms"]),
                 "accounts": e["accounts"], "started_on": e["started_on"].isoformat(),
                 "seed": e["seed"]} for e in list_experiments(db)]
        columns = [Column("experiment_id", "field.col.experiment",
                          link=lambda r: f"/experiments/{r['experiment_id']}"),
                   Column("description", "field.col.description"),
                   Column("arms", "field.col.arms"),
                   Column("accounts", "field.col.accounts", num=True),
                   Column("started_on", "field.col.started_on"),
                   Column("seed", "field.col.seed", num=True)]
        return listing(request, console, name="experiments", title=t("field.title.experiments"),
                       columns=columns, fetch=list_fetch(rows),
                       template="field/experiments.html")

    @app.get("/experiments/{experiment_id}", response_class=HTMLResponse,
             include_in_schema=False, **guard("experiments:read"))
    def experiment_page(request: Request, experiment_id: str,
                        as_of: str | None = None) -> Response:
        t = translator(console.lang(request))
        try:
            day = date.fromisoformat(as_of) if as_of else business_date(clock.now())
        except ValueError:
            raise HTTPException(status_code=422, detail=f"as_of: not YYYY-MM-DD: {as_of!r}") \
                from None
        report = experiment_report(db, experiment_id, day)
        diffs = report["differences"]
        rows = []
        for arm, k in report["arms"].items():
            d = diffs.get(arm)
            rows.append({
                "arm": arm + (" ★" if arm == report["champion"] else ""),
                "accounts": k["accounts"], "bills": k["bills"], "billed": k["billed"],
                "collected": k["collected"], "contacts": k["contacts"],
                **{name: _interval(k[name]) for name in KPI_NAMES},
                "vs_champion": _interval(d["collection_rate"]) if d else "—",
                "significant": ("—" if not d else ", ".join(
                    t(f"field.col.{n}").split(" [")[0].split("（")[0]
                    for n in KPI_NAMES if _excludes_zero(d[n])) or t("field.no"))})
        columns = [Column("arm", "field.col.arm"),
                   Column("accounts", "field.col.accounts", num=True),
                   Column("bills", "field.col.bills", num=True),
                   Column("billed", "field.col.billed", num=True),
                   Column("collected", "field.col.collected", num=True),
                   Column("contacts", "field.col.contacts", num=True),
                   *[Column(n, f"field.col.{n}") for n in KPI_NAMES],
                   Column("vs_champion", "field.col.vs_champion"),
                   Column("significant", "field.col.significant")]
        return listing(request, console, name=f"experiment-{experiment_id}",
                       title=t("field.title.experiment", id=experiment_id), columns=columns,
                       fetch=list_fetch(rows), template="field/experiment.html",
                       as_of=day.isoformat(), champion=report["champion"],
                       started_on=report["started_on"])

