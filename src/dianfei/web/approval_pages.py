"""The approvals pages (审批, maker-checker): the requests with filters, one request with its
payload, decision and result, the forms to ask for a waiver, write-off or bill correction, and
to approve or refuse someone else's request.

The same service as ``web/approvals_api.py`` and ``dianfei approvals``: the service enforces
who may ask and decide each kind, four eyes (the maker never decides) and a request decided or
expired once; its refusal is shown on the page as it is, and nothing changes. A tariff change
carries a whole TOML file: it is asked for with ``dianfei approvals request tariff_change`` or
``POST /api/v1/approvals`` and decided here like the others.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dianfei.approvals import service
from dianfei.core.clock import Clock
from dianfei.core.errors import DianfeiError, NotFoundError
from dianfei.db.engine import Database
from dianfei.security.service import APPROVAL_KINDS, Principal, allows
from dianfei.web import i18n
from dianfei.web.auth import guard, signed_in
from dianfei.web.console import Console
from dianfei.web.field_forms import posted
from dianfei.web.i18n import translator
from dianfei.web.tables import Column, Page, listing

_DECIDE = tuple(f"approvals:decide:{k}" for k in APPROVAL_KINDS)
_ASKABLE = ("waiver", "write_off", "bill_correction", "account_closure")
_STATES = ("pending", "executed", "rejected", "expired", "withdrawn")

i18n.add({
    "appr.title": {"zh-CN": "审批", "en": "Approvals"},
    "appr.new": {"zh-CN": "提出申请", "en": "Ask for a change"},
    "appr.request": {"zh-CN": "申请", "en": "Request"},
    "appr.kind": {"zh-CN": "类型", "en": "Kind"},
    "appr.subject": {"zh-CN": "对象", "en": "Subject"},
    "appr.amount": {"zh-CN": "金额（元）", "en": "Amount (yuan)"},
    "appr.state": {"zh-CN": "状态", "en": "State"},
    "appr.maker": {"zh-CN": "申请人", "en": "Asked by"},
    "appr.asked_at": {"zh-CN": "申请时间", "en": "Asked at"},
    "appr.expires": {"zh-CN": "到期", "en": "Expires"},
    "appr.checker": {"zh-CN": "审批人", "en": "Decided by"},
    "appr.reason": {"zh-CN": "理由", "en": "Reason"},
    "appr.decision_reason": {"zh-CN": "审批意见", "en": "Decision"},
    "appr.result": {"zh-CN": "执行结果", "en": "Result"},
    "appr.payload": {"zh-CN": "申请内容", "en": "What is asked"},
    "appr.approve": {"zh-CN": "批准并执行", "en": "Approve and carry out"},
    "appr.reject": {"zh-CN": "驳回", "en": "Refuse"},
    "appr.four_eyes": {"zh-CN": "四眼原则：申请人不能审批自己的申请。",
                       "en": "Four eyes: nobody decides their own request."},
    "appr.reference": {"zh-CN": "账单号（核销违约金时填违约金凭证 LF:…；销户填户号）",
                       "en": "Bill id (a late fee's write-off: its reference LF:…; an account "
                             "closure: the account id)"},
    "appr.rebill": {"zh-CN": "作废后按现有抄表重新出账", "en": "Bill again from the current reads"},
    "appr.submit": {"zh-CN": "提交申请", "en": "Submit"},
    "appr.all": {"zh-CN": "全部", "en": "All"},
    "appr.filter": {"zh-CN": "筛选", "en": "Filter"},
    "appr.done.approved": {"zh-CN": "已批准并执行。", "en": "Approved and carried out."},
    "appr.done.rejected": {"zh-CN": "已驳回，未作任何更改。", "en": "Refused: nothing was changed."},
    "appr.done.asked": {"zh-CN": "申请已提交，等待他人审批。",
                        "en": "Asked: waiting for a second person."},
    "appr.kind.waiver": {"zh-CN": "违约金减免", "en": "Late-fee waiver"},
    "appr.kind.write_off": {"zh-CN": "核销", "en": "Write-off"},
    "appr.kind.bill_correction": {"zh-CN": "账单更正", "en": "Bill correction"},
    "appr.kind.suspension": {"zh-CN": "停电", "en": "Suspension"},
    "appr.kind.tariff_change": {"zh-CN": "电价调整", "en": "Tariff change"},
    "appr.kind.account_closure": {"zh-CN": "销户", "en": "Account closure"},
    "appr.state.pending": {"zh-CN": "待审批", "en": "Pending"},
    "appr.state.executed": {"zh-CN": "已执行", "en": "Carried out"},
    "appr.state.rejected": {"zh-CN": "已驳回", "en": "Refused"},
    "appr.state.expired": {"zh-CN": "已过期", "en": "Expired"},
    "appr.state.withdrawn": {"zh-CN": "已撤回", "en": "Withdrawn"},
})


def _may_decide(who: Principal, kind: str) -> bool:
    return allows(who.role, f"approvals:decide:{kind}")


def _may_ask(who: Principal, kind: str) -> bool:
    return kind != "suspension" and allows(who.role, f"approvals:request:{kind}")


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    console: Console = app.state.console
    console.add_nav("nav.approvals", "/approvals", "approvals:read", order=34)

    @app.get("/approvals", response_class=HTMLResponse, include_in_schema=False,
             **guard("approvals:read"))
    async def approvals_page(request: Request, kind: str | None = None,
                             state: str | None = None) -> Response:
        who = signed_in(request)
        t = translator(console.lang(request))
        kind = kind or None
        state = state or None
        await run_in_threadpool(service.housekeeping, db, clock)

        def fetch(offset: int, limit: int) -> Page:
            got = service.list_requests(db, kind_name=kind, state=state,
                                        limit=min(limit, 500), offset=offset)
            rows = [{**r, "kind_words": t(f"appr.kind.{r['kind']}"),
                     "state_words": t(f"appr.state.{r['state']}")} for r in got["items"]]
            return Page(rows, got["total"])

        columns = [Column("request_id", "appr.request", num=True,
                          link=lambda r: f"/approvals/{r['request_id']}"),
                   Column("kind_words", "appr.kind"), Column("subject", "appr.subject"),
                   Column("amount", "appr.amount", num=True),
                   Column("state_words", "appr.state"), Column("requested_by", "appr.maker"),
                   Column("requested_at", "appr.asked_at"), Column("expires_at", "appr.expires"),
                   Column("decided_by", "appr.checker")]
        return await run_in_threadpool(
            listing, request, console, name="approvals", title=t("appr.title"),
            columns=columns, fetch=fetch, template="approvals/list.html", kinds=APPROVAL_KINDS,
            states=_STATES, kind=kind or "", state=state or "",
            may_ask=any(_may_ask(who, k) for k in _ASKABLE))

    def detail(request: Request, request_id: int, *, error: str | None = None,
               status_code: int = 200) -> Response:
        who = signed_in(request)
        req = service.show(db, request_id)
        done = request.query_params.get("done")
        return console.render(
            request, "approvals/detail.html", status_code=status_code, req=req, error=error,
            done=done if done in ("approved", "rejected", "asked") else None,
            title=f"{translator(console.lang(request))('appr.request')} {request_id}",
            may_decide=(req["state"] == "pending" and _may_decide(who, req["kind"])
                        and req["requested_by"] != who.username))

    @app.get("/approvals/new", response_class=HTMLResponse, include_in_schema=False,
             **guard("approvals:read"))
    def new_page(request: Request) -> Response:
        who = signed_in(request)
        kinds = [k for k in _ASKABLE if _may_ask(who, k)]
        return console.render(request, "approvals/new.html", kinds=kinds, values={},
                              error=None, title=translator(console.lang(request))("appr.new"))

    @app.post("/approvals/new", response_class=HTMLResponse, include_in_schema=False,
              **guard("approvals:read"))
    async def ask(request: Request) -> Response:
        who = signed_in(request)
        form = await posted(request)
        kind = form.get("kind", "")
        reason = form.get("reason", "").strip()
        reference = form.get("reference", "").strip()
        kinds = [k for k in _ASKABLE if _may_ask(who, k)]
        error = None
        if kind not in kinds:
            error = f"kind: one of {', '.join(kinds) or '(none for your role)'}"
        elif not reference:
            error = ("reference: the bill id (or the late fee's LF:… reference; for an account "
                     "closure the account id) is needed")
        elif not reason:
            error = "reason: say why (it is recorded with the request)"
        if error is None:
            payload: dict[str, Any] = ({"reference": reference} if kind == "write_off"
                                       else {"account_id": reference}
                                       if kind == "account_closure" else {"bill_id": reference})
            if kind == "bill_correction":
                payload["rebill"] = form.get("rebill") == "on"

            def store() -> int:
                with db.session() as s:
                    return service.request(s, kind_name=kind, payload=payload, reason=reason,
                                           maker=who, clock=clock).request_id

            try:
                request_id = await run_in_threadpool(store)
            except DianfeiError as exc:
                error = i18n.refusal(console.lang(request), exc)
            else:
                return RedirectResponse(f"/approvals/{request_id}?done=asked", status_code=303)
        return console.render(request, "approvals/new.html", status_code=422, kinds=kinds,
                              values=form, error=error,
                              title=translator(console.lang(request))("appr.new"))

    @app.get("/approvals/{request_id}", response_class=HTMLResponse, include_in_schema=False,
             **guard("approvals:read"))
    def request_page(request: Request, request_id: int) -> Response:
        return detail(request, request_id)

    @app.post("/approvals/{request_id}/approve", response_class=HTMLResponse,
              include_in_schema=False, **guard(*_DECIDE))
    async def approve(request: Request, request_id: int) -> Response:
        who = signed_in(request)
        await posted(request)
        try:
            await run_in_threadpool(service.housekeeping, db, clock)
            await run_in_threadpool(lambda: service.approve(db, request_id, checker=who,
                                                            clock=clock))
        except NotFoundError:
            raise
        except DianfeiError as exc:
            return detail(request, request_id, error=i18n.refusal(console.lang(request), exc),
                          status_code=exc.http_status)
        return RedirectResponse(f"/approvals/{request_id}?done=approved", status_code=303)

    @app.post("/approvals/{request_id}/reject", response_class=HTMLResponse,
              include_in_schema=False, **guard(*_DECIDE))
    async def reject(request: Request, request_id: int) -> Response:
        who = signed_in(request)
        form = await posted(request)
        reason = form.get("reason", "").strip()
        if not reason:
            return detail(request, request_id, status_code=422,
                          error="reason: say why the request is refused")

        def decide() -> None:
            service.housekeeping(db, clock)
            with db.session() as s:
                service.reject(s, request_id, checker=who, reason=reason, clock=clock)

        try:
            await run_in_threadpool(decide)
        except NotFoundError:
            raise
        except DianfeiError as exc:
            return detail(request, request_id, error=i18n.refusal(console.lang(request), exc),
                          status_code=exc.http_status)
        return RedirectResponse(f"/approvals/{request_id}?done=rejected", status_code=303)
