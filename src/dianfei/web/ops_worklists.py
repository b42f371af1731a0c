"""/vee (flagged and estimated meter data awaiting review) and /reconcile (the runs by channel
and day, and the breaks to work, each closed through ``reconcile_service.resolve``)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dianfei.audit import service as audit
from dianfei.core.clock import Clock, business_date
from dianfei.core.errors import DianfeiError, ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database
from dianfei.metering.vee import worklist as vee
from dianfei.payments import reconcile_service, reconcile_views
from dianfei.security.service import allows
from dianfei.web.auth import guard, signed_in
from dianfei.web.console import Console
from dianfei.web.ops_pages import form_of
from dianfei.web.tables import Column, Fetch, Page, listing


def _choice(request: Request, name: str, allowed: tuple[str, ...] | list[str]) -> str | None:
    """A filter from the query: blank is "all"; anything not offered is refused, naming it."""
    value = (request.query_params.get(name) or "").strip()
    if not value:
        return None
    if value not in allowed:
        raise ValidationError(f"not one of {', '.join(allowed)}: {value!r}", where=name)
    return value


def _empty(_offset: int, _limit: int) -> Page:
    return Page([], 0)


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    console: Console = app.state.console
    console.add_nav("nav.vee", "/vee", "vee:read", order=35)
    console.add_nav("nav.reconcile", "/reconcile", "reconcile:read", order=45)

    # -- VEE ----------------------------------------------------------------------------------

    @app.get("/vee", response_class=HTMLResponse, include_in_schema=False, **guard("vee:read"))
    def vee_page(request: Request) -> Response:
        t = console.context(request)["t"]
        stations = vee.stations(db)
        errors: dict[str, str] = {}
        fetch: Fetch = _empty
        try:
            reason = _choice(request, "reason", vee.REASONS)
            station = _choice(request, "station", stations)

            def fetch(offset: int, limit: int) -> Page:
                rows, total = vee.page(db, offset, limit, reason=reason, station=station)
                return Page(rows, total)
        except ValidationError as exc:
            errors = {exc.where or "reason": exc.message}
        columns = [
            Column("reason", "col.reason"), Column("meter_id", "ops.col.meter"),
            Column("account_id", "col.account",
                   link=lambda r: f"/customers/by-account/{r['account_id']}"
                   if r["account_id"] else None),
            Column("station_id", "ops.vee.station"), Column("slots", "ops.col.slots", num=True),
            Column("awaiting", "ops.col.awaiting", num=True),
            Column("first_ts", "ops.col.first"), Column("last_ts", "ops.col.last")]
        resp = listing(request, console, name="vee-worklist", title=t("ops.vee.title"),
                       columns=columns, fetch=fetch, template="ops/vee.html",
                       reasons=vee.REASONS, stations=stations, errors=errors,
                       chosen={"reason": request.query_params.get("reason", ""),
                               "station": request.query_params.get("station", "")})
        if errors:
            resp.status_code = 422
        return resp

    # -- reconciliation -----------------------------------------------------------------------

    def today() -> date:
        return business_date(clock.now())

    @app.get("/reconcile", response_class=HTMLResponse, include_in_schema=False,
             **guard("reconcile:read"))
    def reconcile_page(request: Request) -> Response:
        t = console.context(request)["t"]
        with db.session() as s:
            channels = reconcile_views.channels(s)
        channel = _choice(request, "channel", channels) if channels else None

        def fetch(offset: int, limit: int) -> Page:
            with db.session() as s:
                rows, total = reconcile_views.runs(s, offset, limit, channel=channel)
            return Page([{**r, "matched_amount": fmt_yuan(r["matched_amount"]),
                          "unmatched_amount": fmt_yuan(r["unmatched_amount"]),
                          "settlement": "✓" if r["settlement_ok"] else "✗"} for r in rows], total)

        columns = [
            Column("channel", "ops.rec.channel"), Column("day", "ops.col.day"),
            Column("matched", "ops.col.matched", num=True),
            Column("matched_amount", "ops.col.matched_amount", num=True),
            Column("unmatched", "ops.col.unmatched", num=True),
            Column("unmatched_amount", "ops.col.unmatched_amount", num=True),
            Column("open", "ops.col.open", num=True,
                   link=lambda r: f"/reconcile/breaks?channel={r['channel']}&day={r['day']}"
                   if r["open"] else None),
            Column("settlement", "ops.col.settlement")]
        return listing(request, console, name="reconcile-runs", title=t("ops.rec.title"),
                       columns=columns, fetch=fetch, template="ops/reconcile.html",
                       tab="runs", channels=channels, kinds=(), errors={},
                       chosen={"channel": channel or ""})

    @app.get("/reconcile/breaks", response_class=HTMLResponse, include_in_schema=False,
             **guard("reconcile:read"))
    def breaks_page(request: Request, resolved: str | None = None) -> Response:
        who = signed_in(request)
        t = console.context(request)["t"]
        with db.session() as s:
            channels = reconcile_views.channels(s)
        channel = _choice(request, "channel", channels) if channels else None
        kind = _choice(request, "kind", reconcile_views.KINDS)
        day = None
        if request.query_params.get("day"):
            try:
                day = date.fromisoformat(request.query_params["day"])
            except ValueError:
                raise ValidationError("not a date YYYY-MM-DD", where="day") from None
        may_resolve = allows(who.role, "reconcile:resolve")

        def fetch(offset: int, limit: int) -> Page:
            with db.session() as s:
                rows, total = reconcile_views.breaks(s, offset, limit, today=today(),
                                                     channel=channel, kind=kind, day=day)
            return Page([{**r, "kind_word": t(f"ops.rec.kind.{r['kind']}"),
                          "action": t("ops.rec.resolve") if may_resolve else ""}
                         for r in rows], total)

        columns = [
            Column("id", "#"), Column("channel", "ops.rec.channel"),
            Column("day", "ops.col.day"), Column("kind_word", "ops.rec.kind"),
            Column("transaction_id", "ops.col.txn"),
            Column("statement_amount", "ops.col.statement_amount", num=True),
            Column("ledger_amount", "ops.col.ledger_amount", num=True),
            Column("detail", "col.detail"), Column("owner", "ops.col.owner"),
            Column("age_days", "ops.col.age", num=True),
            Column("action", "ops.col.action",
                   link=lambda r: f"/reconcile/breaks/{r['id']}" if r["action"] else None)]
        return listing(request, console, name="reconcile-breaks", title=t("ops.rec.breaks"),
                       columns=columns, fetch=fetch, template="ops/reconcile.html",
                       tab="breaks", channels=channels, kinds=reconcile_views.KINDS, errors={},
                       chosen={"channel": channel or "", "kind": kind or "",
                               "day": day.isoformat() if day else ""},
                       resolved=resolved if resolved and resolved.isdigit() else None)

    def one_break(discrepancy_id: str) -> dict[str, Any]:
        if not discrepancy_id.isdigit():
            raise HTTPException(status_code=404, detail=f"no break {discrepancy_id!r}")
        with db.session() as s:
            found = reconcile_views.break_of(s, int(discrepancy_id), today())
        if found is None:
            raise HTTPException(status_code=404, detail=f"no break {discrepancy_id}")
        return found

    @app.get("/reconcile/breaks/{discrepancy_id}", response_class=HTMLResponse,
             include_in_schema=False, **guard("reconcile:resolve"))
    def break_page(request: Request, discrepancy_id: str) -> Response:
        return console.render(request, "ops/break.html", title=f"#{discrepancy_id}",
                              item=one_break(discrepancy_id), errors={}, note="")

    @app.post("/reconcile/breaks/{discrepancy_id}/resolve", include_in_schema=False,
              **guard("reconcile:resolve"))
    async def break_resolve(request: Request, discrepancy_id: str) -> Response:
        who = signed_in(request)
        form = await form_of(request)
        note = form.get("note", "")
        item = await run_in_threadpool(one_break, discrepancy_id)

        def resolve() -> None:
            with db.session() as s:
                row = reconcile_service.resolve(s, int(discrepancy_id), note=note, clock=clock)
                audit.record(s.connection(), "reconcile.resolved", f"break {discrepancy_id}",
                             {"channel": row["channel"], "day": row["day"], "kind": row["kind"],
                              "transaction_id": row["transaction_id"], "note": row["resolution"],
                              "by": who.username})

        try:
            await run_in_threadpool(resolve)
        except DianfeiError as exc:
            return console.render(request, "ops/break.html", status_code=exc.http_status,
                                  title=f"#{discrepancy_id}", item=item,
                                  errors={"note": exc.message}, note=note)
        return RedirectResponse(f"/reconcile/breaks?resolved={discrepancy_id}", status_code=303)
