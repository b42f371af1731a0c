"""The FastAPI application: console pages and the REST API, every route behind a role check
(``web.auth.guard``), except the few in ``web.auth.PUBLIC_PATHS``."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from dianfei.billing.documents import (
    RATING_HOOK,
    bill_document,
    document_context,
    load_forecaster,
    load_instalments,
)
from dianfei.billing.render import render_html
from dianfei.billing.service import customer_bills, open_exceptions, period_totals
from dianfei.billing.view import bill_view, normalise_lang
from dianfei.core.clock import Clock, Period, SystemClock
from dianfei.core.errors import DianfeiError
from dianfei.core.money import fmt_qty, fmt_yuan
from dianfei.db.engine import Database
from dianfei.web.auth import (
    COOKIE,
    PUBLIC_PREFIXES,
    CallerMiddleware,
    caller,
    caller_address,
    guard,
    safe_next,
    signed_in,
)
from dianfei.web.console import Console
from dianfei.web.paging import ListWindow, list_window, period_param
from dianfei.web.tables import Column, frame_fetch, listing

log = logging.getLogger("dianfei.web")

#: stable error codes of the refusals raised as HTTPException (docs/api.md)
_HTTP_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "too_large", 429: "too_many_requests"}

#: the largest sign-in form accepted (bytes)
_MAX_FORM = 4096


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: str


def create_app(db: Database, clock: Clock | None = None) -> FastAPI:
    # /docs is served below from the local copy of Swagger UI (FastAPI's own loads a CDN)
    # FastAPI's native OpenTelemetry off: dianfei exports its own metrics (/metrics) and sets
    # no OpenTelemetry provider, yet the check that finds none ran on every request (~60 µs,
    # a sixth of what a junk callback costs under a flood, docs/benchmarks.md)
    app = FastAPI(title="dianfei", version="0.1.0", docs_url=None, redoc_url=None,
                  description="dianfei (电费): meter-to-cash for power supply companies",
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    from dianfei.web.inputs import RefuseNul

    app.add_middleware(RefuseNul)  # inside the caller's: its answers get the security headers
    app.add_middleware(CallerMiddleware, db=db)
    console = Console()
    app.state.console = console
    from dianfei.payments.refusal_log import load_guard_settings

    # one list of trusted proxies for every per-address limit (web.auth.caller_address)
    app.state.trusted_proxies = load_guard_settings(db.settings.raw).trusted_proxies
    _static(app)
    from dianfei.web import collections_api, observability, payments_api, plans_api

    observability.register(app, db)  # outermost: request ids reach every log line
    payments_api.register(app, db, clock or SystemClock())
    plans_api.register(app, db, clock or SystemClock())
    collections_api.register(app, db, clock or SystemClock())
    from dianfei.web import fieldwork_api

    fieldwork_api.register(app, db, clock or SystemClock())
    from dianfei.web import tasks_api

    tasks_api.register(app, db, clock or SystemClock())
    from dianfei.web import (
        approvals_api,
        domain_api,  # the REST API over every domain (docs/api.md)
    )

    domain_api.register(app, db, clock or SystemClock())

    approvals_api.register(app, db, clock or SystemClock())
    from dianfei.web import approval_pages

    approval_pages.register(app, db, clock or SystemClock())

    from dianfei.web import field_pages

    field_pages.register(app, db, clock or SystemClock())
    from dianfei.web import ops_pages

    ops_pages.register(app, db, clock or SystemClock())
    from dianfei.web import console_pages

    console_pages.register(app, db, clock or SystemClock())
    from dianfei.web import portal

    portal.register(app, db, clock or SystemClock())
    @app.exception_handler(DianfeiError)
    async def _domain_error(_request: Request, exc: DianfeiError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": str(exc), "field": exc.where},
                            status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # the same envelope as every other refusal, naming the field (web/paging.py)
        from dianfei.web.paging import validation_envelope

        return JSONResponse(validation_envelope(exc), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401 and request.url.path.startswith("/portal"):
            return portal.login_page(request, status_code=401)  # customers never see staff pages
        if exc.status_code in (403, 404) and request.url.path.startswith("/portal"):
            return portal.refusal_page(request, exc.status_code)
        if exc.status_code == 401 and not request.url.path.startswith("/api/"):
            return console.render(request, "login.html", status_code=401, failed=False,
                                  next=safe_next(request.url.path))
        return JSONResponse({"error": _HTTP_CODES.get(exc.status_code, "http"),
                             "message": exc.detail},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # the trace goes to the server's log, never to the caller
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal", "message": "internal error"}, status_code=500)

    # -- signing in ---------------------------------------------------------------------------

    @app.post("/api/v1/auth/token", tags=["auth"], response_model=TokenOut,
              responses={401: {"description": "wrong user name or password"},
                         429: {"description": "too many failed sign-ins"}})
    def auth_token(credentials: Credentials, request: Request) -> dict[str, str]:
        """Sign in with a user name and password; answers a bearer token for the API."""
        token, expires = _sign_in(db, credentials.username, credentials.password, request)
        return {"access_token": token, "token_type": "bearer", "expires_at": expires}

    @app.post("/api/v1/auth/logout", tags=["auth"], status_code=204)
    def auth_logout(request: Request) -> Response:
        """Revoke the bearer token (or session) the request carries."""
        _revoke(db, request)
        return Response(status_code=204)

    @app.get("/api/v1/health", tags=["health"])
    def health() -> dict[str, str]:
        """Liveness: the process answers (no data)."""
        return {"status": "ok"}

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str = "/") -> Response:
        return console.render(request, "login.html", failed=False, next=safe_next(next))

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_docs() -> Response:
        """Swagger UI over /openapi.json, from the local copy (no internet on the branch LAN)."""
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="dianfei API",
                                   swagger_js_url="/static/vendor/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg")

    @app.post("/session", include_in_schema=False)
    async def session(request: Request) -> Response:
        """The console's sign-in form: a session cookie (http-only, SameSite=Strict, so no other
        site can make the browser send it), then back to ``next`` on this site only."""
        body = await request.body()
        if len(body) > _MAX_FORM:
            raise HTTPException(status_code=413, detail="form too large")
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        target = safe_next(form.get("next"))
        try:
            token, _expires = await _threaded(_sign_in, db, form.get("username", ""),
                                              form.get("password", ""), request)
        except DianfeiError as exc:
            return console.render(request, "login.html", status_code=exc.http_status,
                                  failed=exc.code, next=target)
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        _revoke(db, request)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # -- console pages ------------------------------------------------------------------------

    @app.get("/periods", response_class=HTMLResponse, include_in_schema=False,
             **guard("periods:read"))
    def periods_page(request: Request) -> Response:
        t = console.context(request)["t"]
        columns = [Column("period", "col.period"), Column("bills", "col.bills", num=True),
                   Column("kwh", "col.kwh", num=True), Column("amount", "col.amount", num=True),
                   Column("estimated", "col.estimated", num=True),
                   Column("exceptions", "col.exceptions", num=True,
                          link=lambda r: f"/exceptions/{r['period']}" if r["exceptions"] else None)]
        import polars as pl

        return listing(request, console, name="periods", title=t("title.periods"),
                       columns=columns, fetch=frame_fetch(pl.DataFrame(_periods(db))))

    @app.get("/exceptions/{period}", response_class=HTMLResponse, include_in_schema=False,
             **guard("exceptions:read"))
    def exceptions_page(request: Request, period: str) -> Response:
        p = Period.parse(period)
        t = console.context(request)["t"]
        columns = [Column("account_id", "col.account",
                          link=lambda r: f"/customers/by-account/{r['account_id']}"),
                   Column("reason", "col.reason"), Column("detail", "col.detail"),
                   Column("run_id", "col.run")]
        return listing(request, console, name=f"exceptions-{p}",
                       title=f"{t('title.exceptions')} — {p}", columns=columns,
                       fetch=frame_fetch(open_exceptions(db, p).drop("period")))

    console.add_nav("nav.periods", "/periods", "periods:read", order=20)

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        """Where signing in lands: customers go to the portal, staff to the console's start
        page (the dashboard if their role may see it). Anonymous callers are asked to sign in."""
        from dianfei.security.service import allows

        who = caller(request)
        if who is None:
            raise HTTPException(status_code=401, detail="sign in first")
        if who.role == "customer":
            return RedirectResponse("/portal", status_code=303)
        start = next((n.href for n in console.nav if allows(who.role, n.permission)), None)
        if start is None or start == "/":
            return console.render(request, "table_page.html", status_code=403,
                                  title=who.username, table=None)
        return RedirectResponse(start, status_code=303)

    def _bill(account: str, period: str) -> dict[str, Any]:
        from dianfei.core.clock import business_date

        p = period_param(period)
        # the account's position "as of" the application's day (its clock), as the bill's status
        # beside it — not the machine's, which a replayed or test day does not move
        return bill_document(db.engine, account, p, forecast=load_forecaster(),
                             context=document_context(db, p), instalments=load_instalments(),
                             rating=load_forecaster(RATING_HOOK),
                             as_of=business_date((clock or SystemClock()).now()))

    @app.get("/bills/{account}/{period}", response_class=HTMLResponse, include_in_schema=False,
             **guard("bills:read"))
    def bill_page(account: str, period: str, lang: str = "zh-CN") -> str:
        """The web bill: the same view as the PDF (zh-CN, or ?lang=en), with what is paid, open
        and overdue on it today on top."""
        from dianfei.core.clock import business_date
        from dianfei.web.console_pages import bill_status, with_status

        doc = _bill(account, period)
        status = bill_status(db, account, doc["bill_id"],
                             business_date((clock or SystemClock()).now()))
        return with_status(render_html(doc, normalise_lang(lang)), status, lang)

    @app.get("/bills/{account}/{period}/pdf", include_in_schema=False, **guard("bills:read"))
    def bill_pdf(account: str, period: str, lang: str = "zh-CN") -> Response:
        """The printed bill (A4 PDF) of the same document."""
        from dianfei.billing.pdf import render_pdf

        pdf = render_pdf(bill_view(_bill(account, period), normalise_lang(lang)))
        return Response(pdf, media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="{account}-{period}.pdf"'})

    # -- REST ---------------------------------------------------------------------------------

    @app.get("/api/v1/periods", tags=["billing"], **guard("periods:read"))
    def api_periods() -> list[dict[str, Any]]:
        """Billed periods with bill counts, energy and amounts."""
        return _periods(db)

    @app.get("/api/v1/bills/{account}/{period}", tags=["billing"], **guard("bills:read"))
    def api_bill(account: str, period: str) -> dict[str, Any]:
        """One bill: lines with how each was computed, reads, history, peer comparison."""
        return _bill(account, period)

    @app.get("/api/v1/exceptions/{period}", tags=["billing"], **guard("exceptions:read"))
    def api_exceptions(period: str, response: Response,
                       window: Annotated[ListWindow, Depends(list_window)]) -> list[dict[str, Any]]:
        """Accounts not billed for the period, with reasons (``?limit=&offset=``: a slice, the
        count in ``X-Total-Count``)."""
        return window.cut(_exceptions(db, period_param(period)), response)

    @app.get("/api/v1/customers/{customer_id}/bills", tags=["customers"],
             **guard("customers:read", "own:bills"))
    def api_customer_bills(customer_id: str, request: Request, response: Response,
                           window: Annotated[ListWindow, Depends(list_window)]
                           ) -> list[dict[str, Any]]:
        """The customer's bills, newest first. A customer user reaches only their own (another
        customer's id answers 404, the same as one that does not exist). ``?limit=&offset=``:
        a slice, the count in ``X-Total-Count``."""
        who = signed_in(request)
        if who.role == "customer" and who.customer_id != customer_id:
            raise HTTPException(status_code=404, detail="no such customer")
        return window.cut(customer_bills(db.engine, customer_id), response)

    @app.get("/api/v1/users", tags=["users"], **guard("users:manage"))
    def api_users() -> list[dict[str, Any]]:
        """Every user with their role (never a password or token)."""
        from dianfei.security.service import list_users

        with db.session() as s:
            return list_users(s)

    @app.get("/api/v1/audit/verify", tags=["audit"], **guard("audit:read"))
    def api_audit_verify() -> dict[str, Any]:
        """``dianfei audit verify`` over HTTP: is the audit chain intact, and the first break."""
        from dianfei.audit.service import verify

        report = verify(db.engine)
        return {"intact": report.intact, "records": report.records,
                "head": {"seq": report.head_seq, "hash": report.head_hash},
                "first_broken": str(report.first) if report.first else None,
                "first_broken_seq": report.first.seq if report.first else None}

    return app


async def _threaded(fn: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def _sign_in(db: Database, username: str, password: str, request: Request) -> tuple[str, str]:
    from datetime import UTC, datetime

    from dianfei.security.service import sign_in

    source = caller_address(request)  # behind a trusted proxy, the address it forwarded
    # the failed attempt must be kept even though the sign-in is refused: a session of its own
    with db.sessions() as s:
        try:
            token, expires = sign_in(s, username=username, password=password, source=source,
                                     now=datetime.now(UTC))
        finally:
            s.commit()
    return token, expires.isoformat()


def _revoke(db: Database, request: Request) -> None:
    from datetime import UTC, datetime

    from dianfei.security.service import revoke
    from dianfei.web.auth import presented_token

    token = presented_token(dict(request.headers), dict(request.cookies))
    if token:
        with db.session() as s:
            revoke(s, token, datetime.now(UTC))


def _periods(db: Database) -> list[dict[str, Any]]:
    return [{"period": r["period"], "bills": r["bills"], "kwh": fmt_qty(r["kwh"]),
             "amount": fmt_yuan(r["amount"]), "estimated": r["estimated"],
             "exceptions": r["exceptions"]} for r in period_totals(db).iter_rows(named=True)]


def _exceptions(db: Database, period: Period) -> list[dict[str, Any]]:
    return open_exceptions(db, period).drop("period").to_dicts()


def _static(app: FastAPI) -> None:
    """/static: the console's own CSS and JS, and under /static/vendor the front-end libraries
    `make setup` copies from npm (ECharts, htmx, Swagger UI). Public: no data in them."""
    from pathlib import Path

    from fastapi.staticfiles import StaticFiles

    here = Path(__file__).parent / "static"
    app.mount(PUBLIC_PREFIXES[0], StaticFiles(directory=here, check_dir=False), name="static")
