"""Collections pages for collectors and supervisors: the daily worklist (made for a phone), an
account's field view (timeline; record a visit or call, a promise to pay; open a ticket) and
the supervisor's view of every collector's list (load, reassign, balance).

The same service functions as the REST API (``web/collections_api.py``,
``web/fieldwork_api.py``): ``collections.worklist``, ``collections.timeline``,
``collections.visits``, ``collections.tickets``. A collector sees only their own list and the
accounts that have been on it (another account answers 404, as one that does not exist);
reassigning and balancing are audited by the worklist service. Plans, tickets and experiments
are in :mod:`dianfei.web.field_office_pages`.
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
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database
from dianfei.security.service import Principal, allows
from dianfei.web import field_words  # noqa: F401  (the pages' words)
from dianfei.web.auth import guard, signed_in
from dianfei.web.console import Console
from dianfei.web.field_forms import (
    FORM,
    Errors,
    Fields,
    list_fetch,
    local_now,
    may_open_account,
    need,
    own_collector,
    place,
    posted,
)
from dianfei.web.i18n import translator
from dianfei.web.tables import Column, listing

#: outcomes the visit form offers (a promise has its own form, with its amount and date)
VISIT_OUTCOMES = ("paid", "refused", "dispute", "hardship", "wrong_contact", "vacant")

#: where a service's refusal of each form belongs (words of its message → the field)
_VISIT_FIELDS = (("at", ("future", "time zone")), ("bill_id", ("bill",)),
                 ("outcome", ("outcome",)), ("channel", ("channel",)))
_PROMISE_FIELDS = (("promise_on", ("dated", "promise date")),
                   ("amount", ("covers at least", "promised amount", "amount")),
                   ("at", ("future", "time zone")))
_TICKET_FIELDS = (("bill_id", ("bill",)), ("category", ("category",)),
                  ("summary", ("summary",)))


def _day(raw: str | None, clock: Clock) -> date:
    if not raw:
        return business_date(clock.now())
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise HTTPException(status_code=422, detail=f"date: not YYYY-MM-DD: {raw!r}") from None


def _kind(t: Any, kind: str) -> str:
    """A timeline item's kind in words (``event:promise_made`` → 事件 · promise_made)."""
    head, _, rest = kind.partition(":")
    word = str(t(f"field.tl.{head}"))
    if word.startswith("field.tl."):  # a kind this page has no word for: shown as it is
        return kind
    return f"{word} · {rest}" if rest else word


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.web import field_office_pages

    console: Console = app.state.console
    console.add_nav("nav.worklist", "/worklist", "worklists:own", order=30)
    console.add_nav("field.nav.supervisor", "/worklist/supervisor", "worklists:read", order=31)
    _worklist_routes(app, db, clock, console)
    _account_routes(app, db, clock, console)
    _supervisor_routes(app, db, clock, console)
    field_office_pages.register(app, db, clock)


# -- the worklist ------------------------------------------------------------------------------


def _names(db: Database, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from dianfei.customers.service import customer_names

    with db.engine.connect() as conn:
        names = customer_names(conn, [r["account"] for r in rows])
    for r in rows:
        r["name"] = names.get(r["account"], "")
    return rows


def _worklist_routes(app: FastAPI, db: Database, clock: Clock, console: Console) -> None:
    from dianfei.collections import worklist as wl

    def contact(t: Any, r: dict[str, Any]) -> str:
        if r["contact_flag"]:
            return f"⚠ {r['contact_flag']}"
        return str(t("field.contact_ok") if r["phone_verified"] else t("field.contact_unverified"))

    @app.get("/worklist", response_class=HTMLResponse, include_in_schema=False,
             **guard("worklists:read", "worklists:own"))
    def worklist_page(request: Request, date: str | None = None,
                      collector: str | None = None) -> Response:
        who = signed_in(request)
        t = translator(console.lang(request))
        day = _day(date, clock)
        mine = own_collector(db, who)
        if mine is not None:
            if collector not in (None, "", mine):
                raise HTTPException(status_code=403, detail="a collector sees only their own list")
            collector = mine
        rows = wl.worklists(db, day, collector=collector, clock=clock) if collector else []
        for r in rows:
            r["contact"] = contact(t, r)
        columns = [
            Column("rank", "field.col.rank", num=True),
            Column("account_id", "field.col.account",
                   link=lambda r: f"/worklist/accounts/{r['account_id']}"),
            Column("name", "field.col.name"),
            Column("overdue_amount", "field.col.overdue", num=True),
            Column("days_overdue", "field.col.days", num=True),
            Column("reason", "field.col.reason"),
            Column("segment_label", "field.col.segment"),
            Column("contact", "field.col.contact"),
            Column("expected_recovery", "field.col.expected", num=True)]
        roster = ([] if mine is not None
                  else wl.roster_frame(db).select("collector_id", "name").to_dicts())
        return listing(request, console, name=f"worklist-{collector or 'none'}-{day}",
                       title=t("field.title.worklist"), columns=columns,
                       fetch=list_fetch(rows, lambda chunk: _names(db, chunk)),
                       template="field/worklist.html", day=day.isoformat(), collector=collector,
                       roster=roster, linked=mine != "")


# -- an account's field view -------------------------------------------------------------------


def _account_routes(app: FastAPI, db: Database, clock: Clock, console: Console) -> None:
    from dianfei.collections.fieldwork_models import CHANNELS
    from dianfei.collections.ticket_models import TICKET_CATEGORIES

    def page(request: Request, who: Principal, account_id: str, *,
             errors: dict[str, Errors] | None = None, values: dict[str, str] | None = None,
             status: int = 200, saved: str | None = None) -> Response:
        from dianfei.collections.account import owed
        from dianfei.collections.promises import promises_json
        from dianfei.collections.timeline import account_timeline
        from dianfei.collections.worklist import roster_frame

        t = translator(console.lang(request))
        items = account_timeline(db, account_id, clock=clock)  # NotFoundError: no such account
        items.reverse()  # newest first: what happened last is what the collector needs
        with db.engine.connect() as conn:
            due = owed(conn, [account_id]).get(account_id, 0)
        # the risk segment the ladder reads, so the collector knows why this ladder and tone
        from dianfei.collections.account import account_segment
        from dianfei.core.clock import business_date

        segment = account_segment(db, account_id, as_of=business_date(clock.now()))
        columns = [Column("at", "field.col.at"), Column("kind", "field.col.kind"),
                   Column("summary", "field.col.summary")]
        rows = [{"at": i["at"][:16].replace("T", " "), "kind": _kind(t, i["kind"]),
                 "summary": i["summary"]} for i in items]
        promised = [p for p in promises_json(db.engine, account_id) if p["status"] == "open"]
        collectors = ([] if own_collector(db, who) is not None else
                      [r for r in roster_frame(db).to_dicts() if r["active"]])
        # a supervisor records in the name of the collector whose list the account is on
        listed = [i["collector"] for i in items if i["kind"] == "worklist"]
        return listing(
            request, console, name=f"timeline-{account_id}",
            title=t("field.title.account", account=account_id), columns=columns,
            fetch=list_fetch(rows), template="field/account.html", status_code=status,
            account_id=account_id, customer=items[0]["account"] if items else account_id,
            owed=fmt_yuan(max(due, 0)), segment=segment, promised=promised, errors=errors or {},
            values=values or {},
            saved=saved, now=local_now(clock.now()), request_id=uuid.uuid4().hex,
            channels=CHANNELS, outcomes=VISIT_OUTCOMES, categories=TICKET_CATEGORIES,
            collectors=collectors, default_collector=listed[0] if listed else None,
            may_record=allows(who.role, "visits:record"),
            may_ticket=allows(who.role, "tickets:open"),
            may_plan=allows(who.role, "plans:propose"))

    def check(who: Principal, account_id: str) -> None:
        if not may_open_account(db, who, account_id):
            # not 403: a collector learns nothing about accounts that are not theirs
            raise NotFoundError(f"account {account_id!r} is on none of your worklists")

    @app.get("/worklist/accounts/{account_id}", response_class=HTMLResponse,
             include_in_schema=False, **guard("worklists:read", "worklists:own"))
    def account_page(request: Request, account_id: str, saved: str | None = None,
                     id: int | None = None) -> Response:
        who = signed_in(request)
        check(who, account_id)
        return page(request, who, account_id, saved=_saved_text(request, account_id, saved, id))

    def _saved_text(request: Request, account_id: str, saved: str | None,
                    ref: int | None) -> str | None:
        from dianfei.collections.promises import promises_json

        t = translator(console.lang(request))
        if saved == "promise":
            found = [p for p in promises_json(db.engine, account_id) if p["promise_id"] == ref]
            return t("field.saved.promise", amount=found[0]["amount"],
                     due_on=found[0]["due_on"]) if found else None
        if saved in ("visit", "ticket"):
            return t(f"field.saved.{saved}", id=ref)
        return None

    @app.post("/worklist/accounts/{account_id}", response_class=HTMLResponse,
              include_in_schema=False, **guard("worklists:read", "worklists:own"))
    async def account_post(request: Request, account_id: str) -> Response:
        who = signed_in(request)
        form = await posted(request)
        t = translator(console.lang(request))
        return await run_in_threadpool(record, request, who, account_id, form, t)

    def record(request: Request, who: Principal, account_id: str, form: dict[str, str],
               t: Any) -> Response:
        check(who, account_id)
        which = form.get("form", "")
        if which not in ("visit", "promise", "ticket"):
            raise HTTPException(status_code=422, detail="form: visit, promise or ticket")
        need(who, "tickets:open" if which == "ticket" else "visits:record")
        f = Fields(form, t)
        try:
            if which == "ticket":
                done = _open_ticket(who, account_id, f)
            else:
                done = _record_visit(who, account_id, which, f)
        except DianfeiError as exc:
            if isinstance(exc, NotFoundError) and "account" in str(exc):
                raise
            rules = {"visit": _VISIT_FIELDS, "promise": _PROMISE_FIELDS,
                     "ticket": _TICKET_FIELDS}[which]
            f.errors.update(place(exc, rules))
            done = None
        if done is None:
            return page(request, who, account_id, errors={which: f.errors}, values=form,
                        status=422)
        return RedirectResponse(f"/worklist/accounts/{account_id}?saved={done[0]}&id={done[1]}",
                                status_code=303)

    def _record_visit(who: Principal, account_id: str, which: str,
                      f: Fields) -> tuple[str, int] | None:
        from dianfei.collections.visits import record_visit

        mine = own_collector(db, who)
        if mine == "":
            f.errors[FORM] = f.t("field.not_linked")
            return None
        collector = mine if mine is not None else f.text("collector_id", max_len=32)
        channel = f.choice("channel", CHANNELS)
        at = f.instant("at")
        request_id = f.text("request_id", max_len=64)
        note = f.text("note", required=False, max_len=2000)
        promise_on = amount = None
        if which == "promise":
            outcome: str | None = "promise"
            amount = f.fen("amount")
            promise_on = f.day("promise_on")
        else:
            outcome = f.choice("outcome", VISIT_OUTCOMES)
        bill_id = f.text("bill_id", required=False, max_len=64) if which == "visit" else None
        if f.errors:
            return None
        assert collector and channel and at and request_id and outcome
        with db.session() as s:
            done = record_visit(s, request_id=request_id, account_id=account_id,
                                collector_id=collector, channel=channel, outcome=outcome, at=at,
                                recorded_by=who.username, clock=clock, promise_on=promise_on,
                                promise_amount_fen=amount, bill_id=bill_id, note=note)
            if done.promise is not None:
                return "promise", done.promise.promise_id
            return "visit", done.visit.visit_id

    def _open_ticket(who: Principal, account_id: str, f: Fields) -> tuple[str, int] | None:
        from dianfei.collections.tickets import TicketLinks, open_ticket

        category = f.choice("category", TICKET_CATEGORIES)
        summary = f.text("summary", required=False, max_len=2000)
        bill_id = f.text("bill_id", required=False, max_len=64)
        request_id = f.text("request_id", max_len=64)
        if f.errors:
            return None
        assert category and request_id
        with db.session() as s:
            ticket = open_ticket(s, request_id=request_id, account_id=account_id,
                                 category=category, opened_by=who.username, clock=clock,
                                 summary=summary, links=TicketLinks(bill_id=bill_id))
            return "ticket", ticket.ticket_id


# -- the supervisor's view ---------------------------------------------------------------------


def _supervisor_routes(app: FastAPI, db: Database, clock: Clock, console: Console) -> None:
    from dianfei.collections import worklist as wl

    def page(request: Request, day: date, *, errors: Errors | None = None,
             values: dict[str, str] | None = None, status: int = 200,
             done: str | None = None) -> Response:
        t = translator(console.lang(request))
        wl.worklists(db, day, collector="", clock=clock)  # builds the day's lists when none
        view = {c["collector"]: c for c in wl.supervisor_view(db, day, day)["collectors"]}
        roster = wl.roster_frame(db).sort("station_id", "collector_id").to_dicts()
        rows = []
        for r in roster:
            v = view.get(r["collector_id"], {})
            load = int(v.get("list_size", 0))
            rows.append({
                "collector_id": r["collector_id"], "name": r["name"], "station": r["station_id"],
                "active": t("field.yes") if r["active"] else t("field.no"),
                "capacity": r["capacity"],
                "load": f"{load} ⚠ {t('field.over')}" if load > r["capacity"] else load,
                "worked": v.get("worked", 0), "visits": v.get("visits", 0),
                "paid": v.get("paid", 0), "recovered": v.get("recovered", "0.00")})
        columns = [
            Column("collector_id", "field.collector",
                   link=lambda r: f"/worklist?collector={r['collector_id']}&date={day}"),
            Column("name", "field.col.name"), Column("station", "field.col.station"),
            Column("active", "field.col.active"),
            Column("capacity", "field.col.capacity", num=True),
            Column("load", "field.col.load", num=True),
            Column("worked", "field.col.worked", num=True),
            Column("visits", "field.col.visits", num=True),
            Column("paid", "field.col.paid", num=True),
            Column("recovered", "field.col.recovered", num=True)]
        return listing(request, console, name=f"collectors-{day}",
                       title=t("field.title.supervisor"), columns=columns,
                       fetch=list_fetch(rows), template="field/supervisor.html",
                       status_code=status, day=day.isoformat(), errors=errors or {},
                       values=values or {}, done=done,
                       active=[r for r in roster if r["active"]],
                       may_manage=allows(signed_in(request).role, "worklists:manage"))

    @app.get("/worklist/supervisor", response_class=HTMLResponse, include_in_schema=False,
             **guard("worklists:read"))
    def supervisor_page(request: Request, date: str | None = None, moved: int | None = None,
                        over: str | None = None) -> Response:
        t = translator(console.lang(request))
        done = None
        if moved is not None:
            done = t("field.moved", n=moved)
            if over:
                done += " · " + t("field.still_over", who=over)
        return page(request, _day(date, clock), done=done)

    @app.post("/worklist/supervisor/reassign", response_class=HTMLResponse,
              include_in_schema=False, **guard("worklists:manage"))
    async def reassign_post(request: Request) -> Response:
        who = signed_in(request)
        form = await posted(request)
        return await run_in_threadpool(reassign, request, who, form)

    def reassign(request: Request, who: Principal, form: dict[str, str]) -> Response:
        f = Fields(form, translator(console.lang(request)))
        day = f.day("date")
        to = f.text("to", max_len=32)
        reason = f.text("reason")
        account = f.text("account_id", required=False, max_len=32)
        source = f.text("from_collector", required=False, max_len=32)
        if not f.errors:
            assert day and to and reason
            try:
                moved = wl.reassign(db, day, to=to, by=f"user:{who.username}", reason=reason,
                                    account_id=account, from_collector=source)
                return RedirectResponse(f"/worklist/supervisor?date={day}&moved={moved['moved']}",
                                        status_code=303)
            except DianfeiError as exc:
                f.errors.update(place(exc, (("to", ("collector '", "inactive", "to ")),
                                            ("account_id", ("account",)),
                                            ("reason", ("reason",)))))
        return page(request, day or business_date(clock.now()), errors=f.errors, values=form,
                    status=422)

    @app.post("/worklist/supervisor/balance", response_class=HTMLResponse,
              include_in_schema=False, **guard("worklists:manage"))
    async def balance_post(request: Request) -> Response:
        who = signed_in(request)
        form = await posted(request)
        return await run_in_threadpool(balance, request, who, form)

    def balance(request: Request, who: Principal, form: dict[str, str]) -> Response:
        f = Fields(form, translator(console.lang(request)))
        day = f.day("date")
        if not f.errors:
            assert day
            try:
                out = wl.balance_worklists(db, day, by=f"user:{who.username}")
                over = ",".join(out["still_over_capacity"])
                return RedirectResponse(
                    f"/worklist/supervisor?date={day}&moved={out['moved']}"
                    + (f"&over={over}" if over else ""), status_code=303)
            except DianfeiError as exc:
                f.errors[FORM] = str(exc)
        return page(request, day or business_date(clock.now()), errors=f.errors, values=form,
                    status=422)
