"""The back office's operational pages: bill-run control with live progress (/billing), the
VEE worklist (/vee), the reconciliation worklist (/reconcile), and the cashier's counter
(/counter).

Every page calls the domain's services (jobs, billing, metering.vee, payments); money moves only
through the existing posting path (``payments.counter.take_payment``) and breaks are closed only
by ``reconcile_service.resolve``. Every table goes through :func:`web.tables.listing`.

A form that is wrong comes back with the field's message next to it (422) and nothing stored;
a request that contradicts stored state (a second bill run while one is queued) comes back
with the refusal in words (409).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request

from dianfei.core.clock import Clock
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.web import i18n

#: the largest form these pages accept (bytes)
MAX_FORM = 8192


async def form_of(request: Request) -> dict[str, str]:
    """The url-encoded form of a POST, one value per field (blank fields kept as "")."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise HTTPException(status_code=413, detail="form too large")
    return {k: v[0].strip() for k, v in parse_qs(body.decode("utf-8", "replace"),
                                                  keep_blank_values=True).items()}


def fen_of(text: str, field: str) -> int:
    """Yuan typed in a form (``123.45``) as fen; a wrong figure names the field."""
    from dianfei.core.money import parse_decimal, to_fen

    if not text:
        raise ValidationError("required", where=field)
    try:
        return to_fen(parse_decimal(text, field, places=2, allow_negative=False))
    except ValidationError as exc:
        raise ValidationError(exc.message.removeprefix(f"{field}: "), where=field) from None


def as_page(request: Request, path: str) -> Request:
    """A form's answer re-rendered as its page: the page's table pages and exports from the
    page's own address (``path``), not the form's."""
    if request.method == "GET":
        return request
    return Request({**request.scope, "method": "GET", "path": path,
                    "raw_path": path.encode(), "query_string": b""})


def field_error(exc: ValidationError, default: str) -> dict[str, str]:
    """``{field: message}`` of a validation error (the field it names, else ``default``)."""
    return {exc.where or default: exc.message}


WORDS: Mapping[str, Mapping[str, str]] = {
    # bill runs
    "ops.billing.title": {"zh-CN": "电费核算", "en": "Bill runs"},
    "ops.billing.start": {"zh-CN": "发起核算", "en": "Start a bill run"},
    "ops.billing.period": {"zh-CN": "账期（YYYY-MM）", "en": "Period (YYYY-MM)"},
    "ops.billing.submit": {"zh-CN": "开始核算", "en": "Start"},
    "ops.billing.future": {"zh-CN": "账期尚未开始，不能核算", "en": "the period has not started yet"},
    "ops.billing.progress": {"zh-CN": "核算进度", "en": "Progress"},
    "ops.billing.job": {"zh-CN": "作业", "en": "Job run"},
    "ops.billing.rated": {"zh-CN": "已处理 {done} / {total} 户", "en": "{done} of {total} accounts rated"},
    "ops.billing.waiting": {"zh-CN": "等待作业进程领取（dianfei worker，或 SQLite 上的 dianfei serve）",
                            "en": "Waiting for a worker (dianfei worker, or dianfei serve on SQLite)"},
    "ops.billing.retrying": {"zh-CN": "上次尝试失败，稍后自动重试：",
                             "en": "The last attempt failed and is retried later: "},
    "ops.billing.failed": {"zh-CN": "核算失败：", "en": "The bill run failed: "},
    "ops.billing.finished": {"zh-CN": "核算完成", "en": "The bill run finished"},
    "ops.status.queued": {"zh-CN": "排队中", "en": "queued"},
    "ops.status.running": {"zh-CN": "运行中", "en": "running"},
    "ops.status.done": {"zh-CN": "已完成", "en": "done"},
    "ops.status.failed": {"zh-CN": "失败", "en": "failed"},
    "ops.status.skipped": {"zh-CN": "已跳过", "en": "skipped"},
    "ops.status.completed": {"zh-CN": "已完成", "en": "completed"},
    "ops.status.open": {"zh-CN": "营业中", "en": "open"},
    "ops.status.closed": {"zh-CN": "已扎账", "en": "closed"},
    "ops.col.run_id": {"zh-CN": "核算批次", "en": "Run"},
    "ops.col.status": {"zh-CN": "状态", "en": "Status"},
    "ops.col.candidates": {"zh-CN": "应出账户数", "en": "Accounts"},
    "ops.col.done": {"zh-CN": "已处理", "en": "Rated"},
    "ops.col.billed": {"zh-CN": "已出账", "en": "Billed"},
    "ops.col.runs": {"zh-CN": "次数", "en": "Runs"},
    "ops.col.started": {"zh-CN": "开始", "en": "Started"},
    "ops.col.finished": {"zh-CN": "结束", "en": "Finished"},
    # VEE
    "ops.vee.title": {"zh-CN": "抄表数据待复核", "en": "Meter data to review"},
    "ops.vee.all": {"zh-CN": "全部", "en": "All"},
    "ops.vee.station": {"zh-CN": "供电所", "en": "Station"},
    "ops.vee.filter": {"zh-CN": "筛选", "en": "Filter"},
    "ops.col.meter": {"zh-CN": "表号", "en": "Meter"},
    "ops.col.slots": {"zh-CN": "时段数", "en": "Slots"},
    "ops.col.awaiting": {"zh-CN": "待复核", "en": "Awaiting review"},
    "ops.col.first": {"zh-CN": "最早", "en": "First"},
    "ops.col.last": {"zh-CN": "最晚", "en": "Last"},
    # reconciliation
    "ops.rec.title": {"zh-CN": "对账", "en": "Reconciliation"},
    "ops.rec.runs": {"zh-CN": "对账批次", "en": "Runs"},
    "ops.rec.breaks": {"zh-CN": "差错待澄清", "en": "Breaks to work"},
    "ops.rec.channel": {"zh-CN": "渠道", "en": "Channel"},
    "ops.rec.kind": {"zh-CN": "差错类型", "en": "Kind"},
    "ops.rec.resolve": {"zh-CN": "澄清", "en": "Resolve"},
    "ops.rec.note": {"zh-CN": "处理说明", "en": "How it was cleared"},
    "ops.rec.resolved": {"zh-CN": "已澄清差错 {id}", "en": "Break {id} resolved"},
    "ops.rec.kind.missing_in_ledger": {"zh-CN": "我方无记录（长款）", "en": "Missing on our side"},
    "ops.rec.kind.missing_in_statement": {"zh-CN": "渠道无记录（短款）",
                                          "en": "Missing on the channel's side"},
    "ops.rec.kind.amount_mismatch": {"zh-CN": "金额不符", "en": "Amount differs"},
    "ops.rec.kind.duplicate": {"zh-CN": "重复", "en": "Duplicate"},
    "ops.rec.kind.refund_not_in_ledger": {"zh-CN": "退款未入账", "en": "Refund not in ledger"},
    "ops.rec.kind.unposted": {"zh-CN": "未能入账", "en": "Not posted"},
    "ops.col.day": {"zh-CN": "日期", "en": "Day"},
    "ops.col.matched": {"zh-CN": "对平笔数", "en": "Matched"},
    "ops.col.matched_amount": {"zh-CN": "对平金额", "en": "Matched (yuan)"},
    "ops.col.unmatched": {"zh-CN": "差错笔数", "en": "Unmatched"},
    "ops.col.unmatched_amount": {"zh-CN": "差错金额", "en": "Unmatched (yuan)"},
    "ops.col.open": {"zh-CN": "未澄清", "en": "Open"},
    "ops.col.settlement": {"zh-CN": "汇总核对", "en": "Totals check"},
    "ops.col.txn": {"zh-CN": "交易号", "en": "Transaction"},
    "ops.col.statement_amount": {"zh-CN": "渠道金额", "en": "Channel amount"},
    "ops.col.ledger_amount": {"zh-CN": "我方金额", "en": "Our amount"},
    "ops.col.age": {"zh-CN": "天数", "en": "Age (days)"},
    "ops.col.action": {"zh-CN": "操作", "en": "Action"},
    "ops.col.owner": {"zh-CN": "处理人", "en": "Owner"},
    # the counter
    "ops.counter.title": {"zh-CN": "柜台收费", "en": "Counter"},
    "ops.counter.open": {"zh-CN": "开班", "en": "Open a shift"},
    "ops.counter.float": {"zh-CN": "备用金（元）", "en": "Opening float (yuan)"},
    "ops.counter.shift": {"zh-CN": "班次", "en": "Shift"},
    "ops.counter.take": {"zh-CN": "收费", "en": "Take a payment"},
    "ops.counter.account": {"zh-CN": "户号", "en": "Account"},
    "ops.counter.amount": {"zh-CN": "金额（元）", "en": "Amount (yuan)"},
    "ops.counter.method": {"zh-CN": "方式", "en": "Method"},
    "ops.counter.cash": {"zh-CN": "现金", "en": "Cash"},
    "ops.counter.card": {"zh-CN": "刷卡", "en": "Card"},
    "ops.counter.tendered": {"zh-CN": "实收现金（元，可空）", "en": "Cash handed over (yuan, optional)"},
    "ops.counter.submit": {"zh-CN": "确认收费", "en": "Post the payment"},
    "ops.counter.receipt": {"zh-CN": "收费凭证", "en": "Receipt"},
    "ops.counter.change": {"zh-CN": "找零", "en": "Change"},
    "ops.counter.balance": {"zh-CN": "缴费后欠费", "en": "Still owed"},
    "ops.counter.again": {"zh-CN": "该凭证已入账（重复提交未重复收费）",
                          "en": "This receipt was already posted (the repeat posted nothing)"},
    "ops.counter.close": {"zh-CN": "扎账", "en": "Close the till"},
    "ops.counter.counted": {"zh-CN": "清点现金（元）", "en": "Cash counted (yuan)"},
    "ops.counter.closed": {"zh-CN": "扎账完成", "en": "Till closed"},
    "ops.counter.receipts": {"zh-CN": "笔数", "en": "Receipts"},
    "ops.counter.list": {"zh-CN": "本班收费记录", "en": "This shift's receipts"},
    "ops.counter.cash_taken": {"zh-CN": "现金收入", "en": "Cash taken"},
    "ops.counter.card_taken": {"zh-CN": "刷卡收入", "en": "Card taken"},
    "ops.counter.expected": {"zh-CN": "应有现金", "en": "Cash expected"},
    "ops.counter.hand_over": {"zh-CN": "应交现金（不含备用金）",
                              "en": "Cash to hand over (without the float)"},
    "ops.counter.difference": {"zh-CN": "长短款", "en": "Over / short"},
    "ops.counter.print": {"zh-CN": "打印", "en": "Print"},
    "ops.counter.back": {"zh-CN": "返回柜台", "en": "Back to the counter"},
    "ops.col.receipt": {"zh-CN": "凭证号", "en": "Receipt"},
    "ops.col.method": {"zh-CN": "方式", "en": "Method"},
    "ops.col.paid_at": {"zh-CN": "时间", "en": "Time"},
    "ops.error.invalid": {"zh-CN": "输入有误", "en": "Please correct the form"},
    "nav.counter": {"zh-CN": "柜台收费", "en": "Counter"},
}


def register(app: FastAPI, db: Database, clock: Clock) -> None:
    from dianfei.web import ops_billing, ops_counter, ops_held_reads, ops_worklists

    i18n.add(WORDS)
    ops_billing.register(app, db, clock)
    ops_worklists.register(app, db, clock)
    ops_held_reads.register(app, db, clock)
    ops_counter.register(app, db, clock)


def status_word(t: Any, status: str) -> str:
    return str(t(f"ops.status.{status}"))
