"""The FastAPI application: console pages and the REST API, every route behind a role check."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from dianfei.billing.documents import bill_document, document_context, load_forecaster
from dianfei.billing.render import render_html
from dianfei.billing.service import open_exceptions, period_totals
from dianfei.billing.view import bill_view, normalise_lang
from dianfei.core.clock import Clock, Period, SystemClock
from dianfei.core.errors import DianfeiError
from dianfei.core.money import fmt_qty, fmt_yuan
from dianfei.db.engine import Database
from dianfei.security.tokens import console_token, role_for
from dianfei.web.auth import COOKIE, Role


def create_app(db: Database, clock: Clock | None = None) -> FastAPI:
    app = FastAPI(title="dianfei", version="0.1.0",
                  description="dianfei (电费): meter-to-cash for power supply companies")
    app.state.console_token = console_token(db.settings.data_dir)
    from dianfei.web import payments_api

    payments_api.register(app, db, clock or SystemClock())
    pages = Environment(loader=PackageLoader("dianfei.web", "templates"),
                        autoescape=select_autoescape(["html"]))

    @app.exception_handler(DianfeiError)
    async def _domain_error(_request: Request, exc: DianfeiError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 401 and not request.url.path.startswith("/api/"):
            html = pages.get_template("login.html").render(
                failed=request.url.path == "/session", next=request.url.path)
            return HTMLResponse(html, status_code=401)
        return JSONResponse({"error": "http", "message": exc.detail}, status_code=exc.status_code)

    @app.get("/session", include_in_schema=False)
    def session(token: str, next: str = "/") -> Response:
        if role_for(token, app.state.console_token) is None:
            raise HTTPException(status_code=401, detail="wrong token")
        resp = RedirectResponse(next if next.startswith("/") else "/", status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return resp

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(_role: Role) -> str:
        return pages.get_template("dashboard.html").render(runs=_periods(db))

    @app.get("/exceptions/{period}", response_class=HTMLResponse, include_in_schema=False)
    def exceptions_page(period: str, _role: Role) -> str:
        p = Period.parse(period)
        return pages.get_template("exceptions.html").render(period=str(p),
                                                            rows=_exceptions(db, p))

    def _bill(account: str, period: str) -> dict[str, Any]:
        p = Period.parse(period)
        return bill_document(db.engine, account, p, forecast=load_forecaster(),
                             context=document_context(db, p))

    @app.get("/bills/{account}/{period}", response_class=HTMLResponse, include_in_schema=False)
    def bill_page(account: str, period: str, _role: Role, lang: str = "zh-CN") -> str:
        """The web bill: the same view as the PDF (zh-CN, or ?lang=en)."""
        return render_html(_bill(account, period), normalise_lang(lang))

    @app.get("/bills/{account}/{period}/pdf", include_in_schema=False)
    def bill_pdf(account: str, period: str, _role: Role, lang: str = "zh-CN") -> Response:
        """The printed bill (A4 PDF) of the same document."""
        from dianfei.billing.pdf import render_pdf

        pdf = render_pdf(bill_view(_bill(account, period), normalise_lang(lang)))
        return Response(pdf, media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="{account}-{period}.pdf"'})

    @app.get("/api/v1/periods")
    def api_periods(_role: Role) -> list[dict[str, Any]]:
        """Billed periods with bill counts, energy and amounts."""
        return _periods(db)

    @app.get("/api/v1/bills/{account}/{period}")
    def api_bill(account: str, period: str, _role: Role) -> dict[str, Any]:
        """One bill: lines with how each was computed, reads, history, peer comparison."""
        return _bill(account, period)

    @app.get("/api/v1/exceptions/{period}")
    def api_exceptions(period: str, _role: Role) -> list[dict[str, Any]]:
        """Accounts not billed for the period, with reasons."""
        return _exceptions(db, Period.parse(period))

    return app


def _periods(db: Database) -> list[dict[str, Any]]:
    return [{"period": r["period"], "bills": r["bills"], "kwh": fmt_qty(r["kwh"]),
             "amount": fmt_yuan(r["amount"]), "estimated": r["estimated"],
             "exceptions": r["exceptions"]} for r in period_totals(db).iter_rows(named=True)]


def _exceptions(db: Database, period: Period) -> list[dict[str, Any]]:
    return open_exceptions(db, period).drop("period").to_dicts()
