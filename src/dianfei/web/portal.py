"""The customer portal (网上营业厅): a customer signs in with a one-time code sent to their phone
(or a password), sees their bills — the transparent bill, as staff see it — and their usage,
pays an open bill through an online channel, asks for a payment plan within policy, files a
complaint and rates the service.

Every page but the sign-in is guarded by an ``own:*`` permission (only the ``customer`` role has
them) and shows the signed-in customer's data only: another customer's bill, ticket or visit
answers 404, the same as one that does not exist. Pages call the domain services (billing,
ledger, payments, collections) and never read their tables. The plan, complaint and rating
pages are in :mod:`web.portal_requests`; the words in :mod:`web.portal_words`.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dianfei.core.clock import BUSINESS_TZ, Clock, Period, business_date
from dianfei.core.crypto import PiiCipher, mask_free_text, mask_phone
from dianfei.core.errors import DianfeiError, ValidationError
from dianfei.core.money import fmt_yuan
from dianfei.db.engine import Database
from dianfei.security.otp import OtpPolicy, issue_token, portal_user, request_code, verify_code
from dianfei.security.service import Principal
from dianfei.web import i18n
from dianfei.web.auth import COOKIE, caller_address, guard, safe_next, signed_in
from dianfei.web.console import Console
from dianfei.web.portal_words import WORDS

log = logging.getLogger("dianfei.portal")

#: the largest form the portal accepts (bytes): a complaint's text is the longest field
_MAX_FORM = 8192
#: online channels a customer can pay through here, in the order the page offers them
PAY_CHANNELS = ("alipay", "wechatpay")
#: bills the usage chart shows
USAGE_MONTHS = 24
#: seconds a period's document context (peer groups, tariffs) is reused across customers
CONTEXT_TTL = 300.0
#: forecasts kept at most (account × period)
FORECASTS_KEPT = 100_000


def _safe_portal_next(target: str | None) -> str:
    nxt = safe_next(target)
    return nxt if nxt.startswith("/portal") else "/portal"


async def form_fields(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > _MAX_FORM:
        raise HTTPException(status_code=413, detail="form too large")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _source(request: Request) -> str:
    # behind a trusted proxy, the customer's address — not the proxy's, which would put every
    # customer under one address's limits
    return caller_address(request)


class Portal:
    """The portal's routes and what they share (the database, clock, keys, SMS sender)."""

    def __init__(self, app: FastAPI, db: Database, clock: Clock) -> None:
        from dianfei.notify.service import senders_from_settings

        self.db, self.clock = db, clock
        self.console: Console = app.state.console
        self.policy = OtpPolicy.from_settings(db.settings.raw)
        self._cipher: PiiCipher | None = None
        self._contexts: dict[str, tuple[float, Any]] = {}
        self._forecasts: dict[tuple[str, str], tuple[float, Any]] = {}
        self._lock = threading.Lock()
        #: the SMS sender codes go out through (notify's channel); tests put the fake's here
        try:
            app.state.portal_sms = senders_from_settings(db.settings).sms
        except ValidationError as exc:
            log.warning("portal: SMS is not configured (%s): codes cannot be sent", exc)
            app.state.portal_sms = None
        self.app = app

    # -- shared ---------------------------------------------------------------------------------
    @property
    def cipher(self) -> PiiCipher:
        if self._cipher is None:
            from dianfei.db.pii import cipher_for

            self._cipher = cipher_for(self.db)
        return self._cipher

    def render(self, request: Request, template: str, status_code: int = 200,
               **values: Any) -> HTMLResponse:
        return self.console.render(request, f"portal/{template}", status_code=status_code,
                                   **values)

    def customer(self, request: Request) -> tuple[Principal, str]:
        who = signed_in(request)
        if who.role != "customer" or not who.customer_id:
            raise HTTPException(status_code=404, detail="no such customer")
        return who, who.customer_id

    def today(self) -> date:
        return business_date(self.clock.now())

    def bills(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's bills, newest first, each with what is still open on it (fen) and its
        state: paid, open, overdue or cancelled."""
        from dianfei.billing.service import customer_bills
        from dianfei.ledger.items import open_frame

        bills = customer_bills(self.db.engine, customer_id)
        accounts = sorted({str(b["account_id"]) for b in bills})
        open_by_ref: dict[str, int] = {}
        if accounts:
            items = open_frame(self.db.engine, accounts)
            for ref, amount in zip(items["reference"].to_list(), items["open_amount"].to_list(),
                                   strict=True):
                if amount > 0:
                    open_by_ref[str(ref)] = open_by_ref.get(str(ref), 0) + int(amount)
        today = self.today().isoformat()
        out = []
        for b in bills:
            open_fen = open_by_ref.get(str(b["bill_id"]), 0)
            if b["status"] == "cancelled":
                state = "cancelled"
            elif open_fen > 0:
                state = "overdue" if str(b["due_on"]) < today else "open"
            else:
                state = "paid"
            out.append({**b, "open_fen": open_fen, "open": fmt_yuan(open_fen), "state": state})
        return out

    def bill(self, customer_id: str, bill_id: str) -> dict[str, Any]:
        found = next((b for b in self.bills(customer_id) if b["bill_id"] == bill_id), None)
        if found is None:  # another customer's bill looks the same as none at all
            raise HTTPException(status_code=404, detail="no such bill")
        return found

    def document(self, bill: dict[str, Any]) -> dict[str, Any]:
        from dianfei.billing.documents import (
            RATING_HOOK,
            bill_document,
            document_context,
            load_forecaster,
            load_instalments,
        )

        p = Period.parse(str(bill["period"]))
        # the period's shared part (peer groups over every account of the period, tariffs,
        # links) is the expensive part of a bill and the same for every customer: kept a while
        # (a re-issued bill's peers show within CONTEXT_TTL)
        key, now = str(p), time.monotonic()
        with self._lock:
            hit = self._contexts.get(key)
        if hit is None or now - hit[0] > CONTEXT_TTL:
            hit = (now, document_context(self.db, p))
            with self._lock:
                self._contexts[key] = hit
        return bill_document(self.db.engine, str(bill["account_id"]), p,
                             forecast=self.forecast if load_forecaster() else None,
                             context=hit[1], instalments=load_instalments(),
                             rating=load_forecaster(RATING_HOOK),
                             as_of=self.today())  # the app's day, not the machine's

    def forecast(self, engine: Any, accounts: Any, period: Period) -> dict[str, Any]:
        """The next-bill forecast hook (risk), kept a while per account and period: it reads the
        account's whole billed history and rates it again (most of a bill page's time), and it
        changes only when bills are issued, not when payments arrive."""
        from dianfei.billing.documents import load_forecaster

        now = time.monotonic()
        out: dict[str, Any] = {}
        missing = []
        with self._lock:
            for a in accounts:
                hit = self._forecasts.get((str(a), str(period)))
                if hit is not None and now - hit[0] <= CONTEXT_TTL:
                    out[str(a)] = hit[1]
                else:
                    missing.append(str(a))
        hook = load_forecaster()
        if missing and hook is not None:
            fresh = hook(engine, missing, period)
            with self._lock:
                if len(self._forecasts) > FORECASTS_KEPT:  # a bound, not an LRU: rare, cheap
                    self._forecasts.clear()
                for a in missing:
                    if a in fresh:
                        self._forecasts[(a, str(period))] = (now, fresh[a])
                        out[a] = fresh[a]
        return out

    def accounts(self, customer_id: str) -> list[str]:
        """The customer's accounts: the one the customers service names, and those billed."""
        from dianfei.customers.service import accounts_of_customers

        with self.db.engine.connect() as conn:
            first = accounts_of_customers(conn, [customer_id]).get(customer_id)
        found = {str(b["account_id"]) for b in self.bills(customer_id)}
        if first:
            found.add(first)
        return sorted(found)

    def channels(self) -> list[str]:
        """The online channels configured here (a channel without keys could never confirm)."""
        import os

        from dianfei.payments.channels.config import load_channel_settings

        cfg = load_channel_settings(self.db.settings, os.environ)
        return [c for c in PAY_CHANNELS if getattr(cfg, c, None) is not None]

    # -- sending the code -------------------------------------------------------------------------
    def send_code(self, phone: str, code: str, customer_id: str, challenge_id: int) -> None:
        """Hand the code to notify's SMS channel (run after the answer went out, so a known
        number takes no longer to answer than an unknown one). A failure is logged, never
        shown: it would tell the caller the number is a customer's."""
        from dianfei.notify.channels import Message, Recipient, SendError
        from dianfei.notify.render import Rendered

        sender = self.app.state.portal_sms
        if sender is None:
            log.warning("portal: no SMS channel configured; code %s not sent", challenge_id)
            return
        minutes = int(self.policy.ttl.total_seconds() // 60)
        rendered = Rendered(notice="portal_otp", channel="sms", locale="zh-CN", title="",
                            paragraphs=(), facts=(),
                            sms_text=f"您的登录验证码为{code}，{minutes}分钟内有效，请勿告诉他人。",
                            sms_params={"code": code, "minutes": str(minutes)})
        message = Message(outbox_id=0, key=f"otp:{challenge_id}", account_id=customer_id,
                          attempt=1, recipient=Recipient(customer_id=customer_id, name="",
                                                         phone=phone),
                          rendered=rendered, at=self.clock.now())
        try:
            sender.send(message)
        except SendError as exc:
            # the gateway's message may quote the number: logged masked
            log.warning("portal: code %s not sent: %s %s", challenge_id, exc.code,
                        mask_free_text(str(exc)))

    def signed_in_response(self, request: Request, token: str, target: str) -> Response:
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
        return resp


def login_page(request: Request, status_code: int = 200) -> HTMLResponse:
    """The portal's sign-in page (also the answer to an anonymous /portal/... request)."""
    console: Console = request.app.state.console
    i18n.add(WORDS)
    return console.render(request, "portal/login.html", status_code=status_code, step="phone",
                          error=None, phone="", next=_safe_portal_next(request.url.path))


def refusal_page(request: Request, status_code: int) -> HTMLResponse:
    """A portal page's 403/404, as a page of the portal (the same words for another customer's
    bill and one that does not exist)."""
    console: Console = request.app.state.console
    key = "portal.not_found" if status_code == 404 else "portal.forbidden"
    return console.render(request, "portal/message.html", status_code=status_code, kind="error",
                          text_key=key, back="/portal")


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    i18n.add(WORDS)
    portal = Portal(app, db, clock)
    app.state.portal = portal
    _sign_in_routes(app, portal)
    _bill_routes(app, portal)
    from dianfei.web.portal_requests import request_routes

    request_routes(app, portal)


# ------------------------------------------------------------------------------ signing in


def _sign_in_routes(app: FastAPI, portal: Portal) -> None:
    db = portal.db

    @app.get("/portal/login", response_class=HTMLResponse, include_in_schema=False)
    def portal_login(request: Request, next: str = "/portal") -> Response:
        return portal.render(request, "login.html", step="phone", error=None, phone="",
                             next=_safe_portal_next(next))

    @app.post("/portal/login/code", response_class=HTMLResponse, include_in_schema=False)
    async def portal_send_code(request: Request, background: BackgroundTasks) -> Response:
        """Step 1: a code to the phone. The answer is the same whether or not the number is a
        customer's."""
        from starlette.concurrency import run_in_threadpool

        form = await form_fields(request)
        phone, target = form.get("phone", "").strip(), _safe_portal_next(form.get("next"))

        def issue() -> Any:
            with db.session() as s:
                return request_code(s, phone=phone, source=_source(request),
                                    now=portal.clock.now(), cipher=portal.cipher,
                                    policy=portal.policy)

        try:
            issued = await run_in_threadpool(issue)
        except DianfeiError as exc:
            return portal.render(request, "login.html", status_code=exc.http_status,
                                 step="phone", error=exc.code, phone=phone[:20], next=target)
        if issued.customer_id is not None:
            background.add_task(portal.send_code, issued.phone, issued.code, issued.customer_id,
                                issued.challenge_id)
        return portal.render(request, "login.html", step="code", error=None,
                             phone=issued.phone, shown=mask_phone(issued.phone), next=target)

    @app.post("/portal/login/verify", include_in_schema=False)
    async def portal_verify(request: Request) -> Response:
        """Step 2: the code back → the customer's session cookie."""
        from starlette.concurrency import run_in_threadpool

        form = await form_fields(request)
        phone, target = form.get("phone", "").strip(), _safe_portal_next(form.get("next"))

        def verify() -> tuple[str, datetime]:
            now = portal.clock.now()
            # a failure must be kept though the sign-in is refused: committed either way
            with db.sessions() as s:
                try:
                    customer_id = verify_code(s, phone=phone, code=form.get("code", ""),
                                              source=_source(request), now=now,
                                              cipher=portal.cipher, policy=portal.policy)
                    user = portal_user(s, customer_id, now)
                    return issue_token(s, user, datetime.now(UTC))
                finally:
                    s.commit()

        try:
            token, _ = await run_in_threadpool(verify)
        except DianfeiError as exc:
            step = "code" if exc.code != "invalid" else "phone"
            return portal.render(request, "login.html", status_code=exc.http_status, step=step,
                                 error=exc.code, phone=phone[:20],
                                 shown=mask_phone(phone[:20]), next=target)
        return portal.signed_in_response(request, token, target)

    @app.post("/portal/login/password", include_in_schema=False)
    async def portal_password(request: Request) -> Response:
        """User name and password of a customer user (the console's sign-in check)."""
        from starlette.concurrency import run_in_threadpool

        from dianfei.security.service import sign_in

        form = await form_fields(request)
        target = _safe_portal_next(form.get("next"))

        def check() -> tuple[str, str]:
            from dianfei.security.service import principal_for

            with db.sessions() as s:
                try:
                    now = datetime.now(UTC)
                    token, _ = sign_in(s, username=form.get("username", ""),
                                       password=form.get("password", ""),
                                       source=_source(request), now=now)
                    who = principal_for(s, token, now)
                    return token, who.role if who else ""
                finally:
                    s.commit()

        try:
            token, role = await run_in_threadpool(check)
        except DianfeiError as exc:
            return portal.render(request, "login.html", status_code=exc.http_status,
                                 step="phone", error=exc.code, phone="", next=target,
                                 password_error=True)
        # staff who sign in here land on the console's start page, never a portal page
        return portal.signed_in_response(request, token, target if role == "customer" else "/")

    @app.post("/portal/logout", include_in_schema=False)
    def portal_logout(request: Request) -> Response:
        from dianfei.security.service import revoke
        from dianfei.web.auth import presented_token

        token = presented_token(dict(request.headers), dict(request.cookies))
        if token:
            with db.session() as s:
                revoke(s, token, datetime.now(UTC))
        resp = RedirectResponse("/portal/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp


# ------------------------------------------------------------------------------ bills, usage, pay


def _bill_routes(app: FastAPI, portal: Portal) -> None:

    @app.get("/portal", response_class=HTMLResponse, include_in_schema=False,
             **guard("own:bills"))
    def portal_home(request: Request) -> Response:
        _, customer_id = portal.customer(request)
        bills = portal.bills(customer_id)
        due = sum(b["open_fen"] for b in bills)
        overdue = sum(b["open_fen"] for b in bills if b["state"] == "overdue")
        return portal.render(request, "bills.html", bills=bills[:6], due=fmt_yuan(due),
                             overdue=fmt_yuan(overdue), home=True)

    @app.get("/portal/bills", response_class=HTMLResponse, include_in_schema=False,
             **guard("own:bills"))
    def portal_bills(request: Request) -> Response:
        _, customer_id = portal.customer(request)
        bills = portal.bills(customer_id)
        due = sum(b["open_fen"] for b in bills)
        overdue = sum(b["open_fen"] for b in bills if b["state"] == "overdue")
        return portal.render(request, "bills.html", bills=bills, due=fmt_yuan(due),
                             overdue=fmt_yuan(overdue), home=False)

    @app.get("/portal/bills/{bill_id}", response_class=HTMLResponse, include_in_schema=False,
             **guard("own:bills"))
    def portal_bill(request: Request, bill_id: str, lang: str | None = None) -> Response:
        """The transparent bill (the same document and view as the staff's and the PDF), with
        the portal's bar on top: back, PDF, pay."""
        from dianfei.billing.render import render_html
        from dianfei.billing.view import normalise_lang

        _, customer_id = portal.customer(request)
        bill = portal.bill(customer_id, bill_id)
        ctx = portal.console.context(request)
        page = render_html(portal.document(bill), normalise_lang(lang or ctx["lang"]))
        bar = portal.console.env.get_template("portal/bill_bar.html").render(
            **ctx, bill=bill, channels=portal.channels())
        return HTMLResponse(page.replace("<body>", "<body>" + bar, 1))

    @app.get("/portal/bills/{bill_id}/pdf", include_in_schema=False, **guard("own:bills"))
    def portal_bill_pdf(request: Request, bill_id: str, lang: str = "zh-CN") -> Response:
        from dianfei.billing.pdf import render_pdf
        from dianfei.billing.view import bill_view, normalise_lang

        _, customer_id = portal.customer(request)
        bill = portal.bill(customer_id, bill_id)
        pdf = render_pdf(bill_view(portal.document(bill), normalise_lang(lang)))
        return Response(pdf, media_type="application/pdf", headers={
            "Content-Disposition": f'inline; filename="{bill_id}.pdf"'})

    @app.get("/portal/usage", response_class=HTMLResponse, include_in_schema=False,
             **guard("own:usage"))
    def portal_usage(request: Request) -> Response:
        """24 months of kWh and amounts, and the peer comparison of the latest bill."""
        _, customer_id = portal.customer(request)
        t = portal.console.context(request)["t"]
        live = [b for b in portal.bills(customer_id) if b["state"] != "cancelled"]
        shown = list(reversed(live[:USAGE_MONTHS]))
        option = {
            "tooltip": {"trigger": "axis"},
            "legend": {"top": 0, "data": [t("portal.kwh"), t("portal.amount")]},
            "grid": {"top": 56, "left": 44, "right": 44, "bottom": 28},
            "xAxis": {"type": "category", "data": [b["period"] for b in shown]},
            "yAxis": [{"type": "value", "name": "kWh"}, {"type": "value", "name": t("portal.yuan")}],
            "series": [
                {"name": t("portal.kwh"), "type": "bar", "data": [b["kwh"] for b in shown]},
                {"name": t("portal.amount"), "type": "line", "yAxisIndex": 1,
                 "data": [b["amount"] for b in shown]}],
        }
        peers = portal.document(live[0])["peer_comparison"] if live else None
        return portal.render(request, "usage.html", option=option, rows=list(reversed(shown)),
                             peers=peers)

    @app.post("/portal/bills/{bill_id}/pay", response_class=HTMLResponse,
              include_in_schema=False, **guard("own:pay"))
    async def portal_pay(request: Request, bill_id: str) -> Response:
        """Create the channel order for what is open on the bill and show what the customer
        needs to pay it; the payment arrives by the channel's signed callback."""
        from starlette.concurrency import run_in_threadpool

        form = await form_fields(request)
        who, customer_id = portal.customer(request)
        return await run_in_threadpool(_pay, portal, request, who, customer_id, bill_id,
                                       form.get("channel", ""))



def _pay(portal: Portal, request: Request, who: Principal, customer_id: str, bill_id: str,
         channel: str) -> Response:
    from dianfei.audit import service as audit
    from dianfei.billing.documents import Links
    from dianfei.billing.qr import qr_svg
    from dianfei.payments.channels.orders import channel_order_fields
    from dianfei.payments.service import create_order

    bill = portal.bill(customer_id, bill_id)
    channels = portal.channels()
    if channel not in channels:
        return portal.render(request, "message.html", status_code=422, kind="error",
                             text_key="portal.pay.no_channel", back=f"/portal/bills/{bill_id}")
    if bill["open_fen"] <= 0:
        return portal.render(request, "message.html", status_code=409, kind="ok",
                             text_key="portal.pay.nothing_open", back=f"/portal/bills/{bill_id}")
    with portal.db.session() as s:
        order = create_order(s, account_id=str(bill["account_id"]), amount=int(bill["open_fen"]),
                             channel=channel, clock=portal.clock)
        fields = channel_order_fields(channel, order_no=order.order_no,
                                      amount_fen=int(bill["open_fen"]),
                                      description=f"电费 {bill['account_id']} {bill['period']}",
                                      expires_at=order.expires_at)
        audit.record(s.connection(), "portal.order_created", str(bill["account_id"]), {
            "order_no": order.order_no, "bill_id": bill_id, "channel": channel,
            "amount_fen": int(bill["open_fen"]), "by": who.username})
        order_no, expires = order.order_no, order.expires_at
    links = Links.from_settings(portal.db.settings.raw)
    payload = f"{links.pay_url}?{urlencode({'channel': channel, 'order': order_no})}"
    return portal.render(request, "pay.html", bill=bill, channel=channel, order_no=order_no,
                         amount=fmt_yuan(int(bill["open_fen"])), fields=fields, payload=payload,
                         qr=qr_svg(payload, scale=4),
                         expires=expires.astimezone(BUSINESS_TZ).strftime("%Y-%m-%d %H:%M"))
