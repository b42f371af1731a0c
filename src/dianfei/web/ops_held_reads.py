"""/vee/held: register reads held as implausible (a forged or broken reading that would move a
prepaid balance to a cut-off), and the person's decision on each — release (the meter did
register it) or reject — through ``metering.vee.service.review_held_read``, the same decision as
``dianfei vee review`` and ``POST /api/v1/vee/held-reads/review``: recorded once under the
signed-in user's name, with an audit record."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dianfei.core.clock import BUSINESS_TZ, Clock
from dianfei.core.errors import DianfeiError, ValidationError
from dianfei.db.engine import Database
from dianfei.metering.vee import service as vee
from dianfei.security.service import allows
from dianfei.web import i18n
from dianfei.web.auth import guard, signed_in
from dianfei.web.console import Console
from dianfei.web.ops_pages import form_of
from dianfei.web.tables import Column, Page, listing

WORDS: Mapping[str, Mapping[str, str]] = {
    "nav.held_reads": {"zh-CN": "存疑读数", "en": "Held reads"},
    "ops.held.title": {"zh-CN": "存疑读数（暂不计入预付费余额）",
                       "en": "Reads held as implausible (not used for prepaid balances)"},
    "ops.held.read_at": {"zh-CN": "抄读时间", "en": "Read at"},
    "ops.held.register": {"zh-CN": "示数类型", "en": "Register"},
    "ops.held.value": {"zh-CN": "示数 kWh", "en": "Reading (kWh)"},
    "ops.held.status": {"zh-CN": "处理结果", "en": "Decision"},
    "ops.held.awaiting": {"zh-CN": "待复核", "en": "awaiting a decision"},
    "ops.held.released": {"zh-CN": "已放行（{by}）", "en": "released by {by}"},
    "ops.held.rejected": {"zh-CN": "已驳回（{by}）", "en": "rejected by {by}"},
    "ops.held.review": {"zh-CN": "复核", "en": "Review"},
    "ops.held.decision": {"zh-CN": "处理", "en": "Decision"},
    "ops.held.release": {"zh-CN": "放行：电能表确实走了这些电量", "en": "Release: the meter did register it"},
    "ops.held.reject": {"zh-CN": "驳回：读数有误，不予采用", "en": "Reject: the reading is wrong"},
    "ops.held.reason": {"zh-CN": "依据（写入审计记录）", "en": "Reason (kept in the audit record)"},
    "ops.held.submit": {"zh-CN": "确认", "en": "Record the decision"},
    "ops.held.done.released": {"zh-CN": "表 {meter} 的读数已放行",
                               "en": "The read of meter {meter} was released"},
    "ops.held.done.rejected": {"zh-CN": "表 {meter} 的读数已驳回",
                               "en": "The read of meter {meter} was rejected"},
    "ops.held.only_awaiting": {"zh-CN": "只看待复核", "en": "Awaiting only"},
    "ops.held.all": {"zh-CN": "全部", "en": "All"},
}


def _local(at: datetime) -> str:
    return at.astimezone(BUSINESS_TZ).isoformat()


def _kwh(wh: int | None) -> str:
    if wh is None:
        return ""
    sign = "-" if wh < 0 else ""
    return f"{sign}{abs(wh) // 1000}.{abs(wh) % 1000 // 10:02d}"


def _decision(value: str | None) -> str | None:
    """The decision named in the address after a review (only the two known words)."""
    return value if value in ("released", "rejected") else None


def _field(exc: DianfeiError) -> str:
    """The form field a refusal is about (shown next to it)."""
    where = getattr(exc, "where", None)
    if where in ("read_at", "decision", "reason"):
        return str(where)
    return "reason" if "reason" in exc.message else "decision"


def _instant(text: str) -> datetime:
    """The read's instant as the page sent it (ISO 8601 with its offset)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"not an instant (ISO 8601 with offset): {text[:40]!r}",
                              where="read_at") from None
    if at.tzinfo is None:
        raise ValidationError("the instant needs its UTC offset", where="read_at")
    return at


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    console: Console = app.state.console
    i18n.add(WORDS)
    console.add_nav("nav.held_reads", "/vee/held", "vee:read", order=36)

    def status_text(t: Any, row: dict[str, Any]) -> str:
        if row["decision"] is None:
            return str(t("ops.held.awaiting"))
        return str(t(f"ops.held.{row['decision']}")).format(by=row["decided_by"])

    @app.get("/vee/held", response_class=HTMLResponse, include_in_schema=False,
             **guard("vee:read"))
    def held_page(request: Request) -> Response:
        who = signed_in(request)
        t = console.context(request)["t"]
        may_review = allows(who.role, "vee:review")
        awaiting_only = request.query_params.get("show") != "all"

        def fetch(offset: int, limit: int) -> Page:
            rows, total = vee.held_reads(db, offset, limit, awaiting_only=awaiting_only)
            return Page([{
                "meter_id": r["meter_id"], "read_at": _local(r["read_at"]),
                "register": r["register"] + (f" (+{r['registers'] - 1})"
                                             if r["registers"] > 1 else ""),
                "value": _kwh(r["value_wh"]), "detail": r["detail"],
                "status": status_text(t, r),
                "action": t("ops.held.review") if may_review and r["decision"] is None else "",
                "_at": r["read_at"].isoformat()} for r in rows], total)

        columns = [
            Column("meter_id", "ops.col.meter"), Column("read_at", "ops.held.read_at"),
            Column("register", "ops.held.register"), Column("value", "ops.held.value", num=True),
            Column("detail", "col.detail"), Column("status", "ops.held.status"),
            Column("action", "ops.col.action",
                   link=lambda r: (f"/vee/held/review?meter_id={r['meter_id']}"
                                   f"&read_at={r['_at'].replace('+', '%2B')}")
                   if r["action"] else None)]
        return listing(request, console, name="held-reads", title=t("ops.held.title"),
                       columns=columns, fetch=fetch, template="ops/held_reads.html",
                       awaiting_only=awaiting_only,
                       done=request.query_params.get("done"),
                       decision=_decision(request.query_params.get("decision")))

    def one(meter_id: str, read_at: datetime) -> dict[str, Any] | None:
        rows, _ = vee.held_reads(db, 0, 1, meter_id=meter_id, read_at=read_at)
        return rows[0] if rows else None

    def review_form(request: Request, meter_id: str, read_at_text: str, *,
                    errors: dict[str, str], reason: str = "", status: int = 200) -> Response:
        read_at = _instant(read_at_text)
        item = one(meter_id, read_at)
        if item is None:
            return console.render(request, "ops/held_read.html", status_code=404,
                                  title=meter_id, item=None, errors={
                                      "meter_id": f"no held read of meter {meter_id} at "
                                                  f"{_local(read_at)}"},
                                  reason=reason, read_at=read_at_text)
        t = console.context(request)["t"]
        return console.render(request, "ops/held_read.html", status_code=status,
                              title=meter_id, item={**item, "local": _local(item["read_at"]),
                                                    "value": _kwh(item["value_wh"]),
                                                    "status": status_text(t, item)},
                              errors=errors, reason=reason, read_at=item["read_at"].isoformat())

    @app.get("/vee/held/review", response_class=HTMLResponse, include_in_schema=False,
             **guard("vee:review"))
    def held_review_page(request: Request, meter_id: str = "", read_at: str = "") -> Response:
        try:
            return review_form(request, meter_id, read_at, errors={})
        except ValidationError as exc:
            return console.render(request, "ops/held_read.html", status_code=422, title=meter_id,
                                  item=None, errors={exc.where or "read_at": exc.message},
                                  reason="", read_at=read_at)

    @app.post("/vee/held/review", include_in_schema=False, **guard("vee:review"))
    async def held_review(request: Request) -> Response:
        who = signed_in(request)
        form = await form_of(request)
        meter_id, at_text = form.get("meter_id", ""), form.get("read_at", "")
        decision, reason = form.get("decision", ""), form.get("reason", "")

        def decide() -> dict[str, Any]:
            return vee.review_held_read(db, clock, meter_id=meter_id, read_at=_instant(at_text),
                                        decision=decision, by=who.username, reason=reason)

        try:
            out = await run_in_threadpool(decide)
        except DianfeiError as exc:
            errors = {_field(exc): exc.message}
            status = exc.http_status
            return await run_in_threadpool(
                lambda: review_form(request, meter_id, at_text, errors=errors, reason=reason,
                                    status=status))
        return RedirectResponse(f"/vee/held?done={out['meter_id']}&decision={out['decision']}",
                                status_code=303)
