"""/counter: the cashier's counter (营业厅柜台收费) — open a shift, take a payment, show and print
the receipt, close the till.

Money goes through ``payments.counter.take_payment`` only (which posts through
``payments.service.post_channel_payment``). The form carries the receipt number the payment
will get, so a double click or a resent form is the same receipt and posts nothing new. The
till is closed by ``payments.counter.close_shift`` once (a closed shift refuses a second close
and any further payment); opening and closing are recorded in the audit chain. A cashier sees
only their own shifts and receipts.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dianfei.audit import service as audit
from dianfei.core.clock import Clock
from dianfei.core.errors import ConflictError, DianfeiError, ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database
from dianfei.ledger import service as ledger
from dianfei.payments import counter, counter_views
from dianfei.payments.service import PaymentRefused, allocation_order
from dianfei.security.service import Principal
from dianfei.web.auth import guard, signed_in
from dianfei.web.console import Console
from dianfei.web.ops_pages import as_page, fen_of, form_of
from dianfei.web.tables import Column, Page, listing

#: the refusals of a payment that are about the account typed in
_ACCOUNT_REFUSALS = ("unknown_account", "no_account", "account_mismatch")


def _mine(who: Principal, cashier: str) -> bool:
    return who.role == "admin" or who.username == cashier


def _yuan(fen: int | None) -> str:
    return "" if fen is None else fmt_yuan(fen)


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    console: Console = app.state.console
    console.add_nav("nav.counter", "/counter", "counter:take", order=15)

    def page(request: Request, *, status_code: int = 200, errors: dict[str, str] | None = None,
             form: dict[str, str] | None = None) -> Response:
        request = as_page(request, "/counter")
        who = signed_in(request)
        t = console.context(request)["t"]
        q = request.query_params
        with db.session() as s:
            shift = counter_views.open_shift_of(s, who.username)
            takings = counter_views.takings(s, shift["shift_id"]) if shift else {}
            next_no = counter_views.next_receipt_no(s, shift["shift_id"]) if shift else ""
            receipt = counter_views.receipt(s, q["receipt"]) if q.get("receipt") else None
            if receipt is not None and not _mine(who, receipt["cashier"]):
                receipt = None
            if receipt is not None:
                receipt["balance"] = ledger.balance(s, receipt["account_id"])
            closed = counter_views.shift(s, q["closed"]) if q.get("closed") else None
            if closed is not None and not (_mine(who, closed["cashier"])
                                           and closed["status"] == "closed"):
                closed = None
            closed_takings = counter_views.takings(s, closed["shift_id"]) if closed else {}
        shift_id = shift["shift_id"] if shift else None

        def fetch(offset: int, limit: int) -> Page:
            if shift_id is None:
                return Page([], 0)
            with db.session() as s:
                rows, total = counter_views.receipts(s, shift_id, offset, limit)
            return Page([{**r, "amount": fmt_yuan(r["amount"]),
                          "method": t(f"ops.counter.{r['method']}")} for r in rows], total)

        columns = [Column("receipt_no", "ops.col.receipt",
                          link=lambda r: f"/counter/receipts/{r['receipt_no']}"),
                   Column("account_id", "col.account"), Column("amount", "ops.counter.amount", num=True),
                   Column("method", "ops.col.method"), Column("paid_at", "ops.col.paid_at")]
        resp = listing(request, console, name="counter-receipts", title=t("ops.counter.title"),
                       columns=columns, fetch=fetch, template="ops/counter.html",
                       shift=shift, takings=takings, next_no=next_no, receipt=receipt,
                       again=q.get("again") == "1", closed=closed, closed_takings=closed_takings,
                       errors=errors or {}, form=form or {}, yuan=_yuan,
                       methods=counter.METHODS)
        resp.status_code = status_code
        return resp

    async def refused(request: Request, status: int, errors: dict[str, str],
                      form: dict[str, str]) -> Response:
        return await run_in_threadpool(
            lambda: page(request, status_code=status, errors=errors, form=form))

    @app.get("/counter", response_class=HTMLResponse, include_in_schema=False,
             **guard("counter:take"))
    def counter_page(request: Request) -> Response:
        return page(request)

    @app.post("/counter/open", include_in_schema=False, **guard("counter:take"))
    async def counter_open(request: Request) -> Response:
        who = signed_in(request)
        form = await form_of(request)
        try:
            opening = fen_of(form.get("float") or "0", "float")
        except ValidationError as exc:
            return await refused(request, 422, {"float": exc.message}, form)

        def open_() -> str:
            with db.session() as s:
                have = counter_views.open_shift_of(s, who.username)
                if have is not None:
                    raise ConflictError(f"shift {have['shift_id']} is still open: close it first")
                shift_id = counter.open_shift(s, cashier=who.username, opening_float=opening,
                                              clock=clock)
                audit.record(s.connection(), "counter.shift_opened", shift_id,
                             {"cashier": who.username, "opening_float": opening})
                return shift_id

        try:
            await run_in_threadpool(open_)
        except DianfeiError as exc:
            return await refused(request, exc.http_status, {"form": exc.message}, form)
        return RedirectResponse("/counter", status_code=303)

    @app.post("/counter/pay", include_in_schema=False, **guard("counter:take"))
    async def counter_pay(request: Request) -> Response:
        who = signed_in(request)
        form = await form_of(request)
        errors: dict[str, str] = {}
        account = form.get("account", "")
        if not account:
            errors["account"] = "required"
        elif len(account) > 32:
            errors["account"] = "at most 32 characters"
        method = form.get("method", "")
        if method not in counter.METHODS:
            errors["method"] = f"one of {', '.join(counter.METHODS)}"
        amount = tendered = None
        try:
            amount = fen_of(form.get("amount", ""), "amount")
            if amount <= 0:
                errors["amount"] = "must be more than 0"
        except ValidationError as exc:
            errors["amount"] = exc.message
        if form.get("tendered") and method == "cash":
            try:
                tendered = fen_of(form["tendered"], "tendered")
                if amount is not None and tendered < amount:
                    errors["tendered"] = "less than the amount"
            except ValidationError as exc:
                errors["tendered"] = exc.message
        if errors or amount is None:
            return await refused(request, 422, errors, form)

        def pay() -> tuple[str, bool]:
            with db.session() as s:
                shift = counter_views.open_shift_of(s, who.username)
                if shift is None:
                    raise ConflictError("no open shift: open one before taking payments")
                receipt_no, res = counter.take_payment(
                    s, shift_id=shift["shift_id"], account_id=account, amount=amount,
                    method=method, clock=clock, tendered=tendered,
                    receipt_no=form.get("receipt_no") or None, order=allocation_order(db.settings))
                return receipt_no, res.created

        try:
            receipt_no, created = await run_in_threadpool(pay)
        except PaymentRefused as exc:
            field = "account" if exc.code in _ACCOUNT_REFUSALS else "form"
            return await refused(request, exc.http_status, {field: exc.message}, form)
        except DianfeiError as exc:
            return await refused(request, exc.http_status, {"form": exc.message}, form)
        return RedirectResponse(f"/counter?receipt={receipt_no}" + ("" if created else "&again=1"),
                                status_code=303)

    @app.post("/counter/close", include_in_schema=False, **guard("counter:take"))
    async def counter_close(request: Request) -> Response:
        who = signed_in(request)
        form = await form_of(request)
        try:
            counted = fen_of(form.get("counted", ""), "counted")
        except ValidationError as exc:
            return await refused(request, 422, {"counted": exc.message}, form)

        def close() -> str:
            with db.session() as s:
                shift_id = form.get("shift_id", "")
                shift = counter_views.shift(s, shift_id) if shift_id else None
                if shift is None or not _mine(who, shift["cashier"]):
                    raise ValidationError("no such shift of yours", where="shift_id")
                done = counter.close_shift(s, shift_id=shift_id, counted_cash=counted, clock=clock)
                audit.record(s.connection(), "counter.till_closed", shift_id, {
                    "cashier": shift["cashier"], "receipts": done.receipts,
                    "cash_taken": done.cash_taken, "card_taken": done.card_taken,
                    "expected_cash": done.expected_cash, "counted_cash": done.counted_cash,
                    "difference": done.difference})
                return shift_id

        try:
            shift_id = await run_in_threadpool(close)
        except DianfeiError as exc:
            return await refused(request, exc.http_status, {"form": exc.message}, form)
        return RedirectResponse(f"/counter?closed={shift_id}", status_code=303)

    @app.get("/counter/receipts/{receipt_no}", response_class=HTMLResponse,
             include_in_schema=False, **guard("counter:take"))
    def receipt_page(request: Request, receipt_no: str) -> Response:
        """The receipt to print (the cashier's own; another's answers 404)."""
        who = signed_in(request)
        with db.session() as s:
            found: dict[str, Any] | None = counter_views.receipt(s, receipt_no)
        if found is None or not _mine(who, found["cashier"]):
            raise HTTPException(status_code=404, detail=f"no receipt {receipt_no}")
        return console.render(request, "ops/receipt.html", title=receipt_no, receipt=found,
                              yuan=_yuan)
