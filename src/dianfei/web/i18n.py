"""The console's and portal's words in zh-CN (first) and en.

Pages call ``t("key")``; a key without a translation shows the zh-CN text, and a key missing
from both shows the key itself (a visible gap, never an error). The language is the ``lang``
query parameter, else the ``dianfei_lang`` cookie, else zh-CN.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dianfei.core.errors import DianfeiError

LANGS = ("zh-CN", "en")
COOKIE = "dianfei_lang"

MESSAGES: dict[str, Mapping[str, str]] = {
    "app": {"zh-CN": "电费 dianfei", "en": "dianfei"},
    "console": {"zh-CN": "营销控制台", "en": "Console"},
    "portal": {"zh-CN": "客户服务", "en": "Customer service"},
    "sign_in": {"zh-CN": "登录", "en": "Sign in"},
    "sign_out": {"zh-CN": "退出", "en": "Sign out"},
    "search": {"zh-CN": "搜索户号、户名、表号", "en": "Search account, name, meter"},
    "go": {"zh-CN": "查询", "en": "Go"},
    "previous": {"zh-CN": "上一页", "en": "Previous"},
    "next": {"zh-CN": "下一页", "en": "Next"},
    "page_of": {"zh-CN": "第 {page} / {pages} 页，共 {total} 条",
                "en": "Page {page} of {pages}, {total} rows"},
    "export": {"zh-CN": "导出", "en": "Export"},
    "none": {"zh-CN": "无", "en": "None"},
    "nav.dashboard": {"zh-CN": "总览", "en": "Dashboard"},
    "nav.periods": {"zh-CN": "账期", "en": "Periods"},
    "nav.billing": {"zh-CN": "电费核算", "en": "Bill runs"},
    "nav.exceptions": {"zh-CN": "异常", "en": "Exceptions"},
    "nav.vee": {"zh-CN": "抄表校核", "en": "Meter data"},
    "nav.reconcile": {"zh-CN": "对账", "en": "Reconciliation"},
    "nav.worklist": {"zh-CN": "催费工单", "en": "Worklist"},
    "nav.plans": {"zh-CN": "分期协议", "en": "Payment plans"},
    "nav.tickets": {"zh-CN": "工单", "en": "Tickets"},
    "nav.approvals": {"zh-CN": "审批", "en": "Approvals"},
    "nav.experiments": {"zh-CN": "策略试验", "en": "Experiments"},
    "nav.settings": {"zh-CN": "配置", "en": "Settings"},
    "nav.customers": {"zh-CN": "客户", "en": "Customers"},
    "nav.jobs": {"zh-CN": "作业", "en": "Jobs"},
    "nav.audit": {"zh-CN": "审计", "en": "Audit"},
    "col.period": {"zh-CN": "账期", "en": "Period"},
    "col.bills": {"zh-CN": "账单", "en": "Bills"},
    "col.kwh": {"zh-CN": "电量 kWh", "en": "kWh"},
    "col.amount": {"zh-CN": "电费（元）", "en": "Amount (yuan)"},
    "col.estimated": {"zh-CN": "估抄", "en": "Estimated"},
    "col.exceptions": {"zh-CN": "异常", "en": "Exceptions"},
    "col.account": {"zh-CN": "户号", "en": "Account"},
    "col.reason": {"zh-CN": "原因", "en": "Reason"},
    "col.detail": {"zh-CN": "说明", "en": "Detail"},
    "col.run": {"zh-CN": "核算批次", "en": "Run"},
    "title.periods": {"zh-CN": "电费发行", "en": "Billed periods"},
    "title.exceptions": {"zh-CN": "未能出账", "en": "Not billed"},
    "no_bills_yet": {"zh-CN": "尚无账单：请运行 dianfei bill run --period YYYY-MM",
                     "en": "No bills yet — run dianfei bill run --period YYYY-MM"},
    "wrong_credentials": {"zh-CN": "用户名或密码错误", "en": "Wrong user name or password"},
    "too_many_attempts": {"zh-CN": "失败次数过多，请稍后再试",
                          "en": "Too many failed sign-ins; try again later"},
    "username": {"zh-CN": "用户名", "en": "User name"},
    "password": {"zh-CN": "密码", "en": "Password"},
    "language": {"zh-CN": "English", "en": "中文"},
    "refused": {"zh-CN": "操作未完成：{message}（错误代码 {code}）",
                "en": "Not done: {message} (error code {code})"},
}


def add(messages: Mapping[str, Mapping[str, str]]) -> None:
    """A page module's own words (keys prefixed by the module, e.g. ``"portal.bills"``); a key
    defined twice with different words is a mistake caught at start-up."""
    for key, entry in messages.items():
        if key in MESSAGES and dict(MESSAGES[key]) != dict(entry):
            raise ValueError(f"i18n key {key!r} defined twice with different words")
        MESSAGES[key] = entry


def normalise(lang: str | None) -> str:
    if lang and lang.lower().startswith("en"):
        return "en"
    return "zh-CN"


def translator(lang: str) -> Callable[..., str]:
    def t(key: str, **values: object) -> str:
        entry = MESSAGES.get(key)
        text = (entry.get(lang) or entry.get("zh-CN") or key) if entry else key
        return text.format(**values) if values else text

    return t


def refusal(lang: str, exc: DianfeiError) -> str:
    """A service's refusal shown on a page: a lead-in in the page's language, the service's own
    message and its stable code. The messages are the services' (English, naming the field and
    the value, the same text the API and the CLI give) and are not translated one by one; the
    lead-in says in Chinese that nothing was done, and the code is what a help desk or the API
    documentation (docs/api.md) can be searched for."""
    return translator(lang)("refused", message=str(exc), code=exc.code)


def other(lang: str) -> str:
    """The language the switch offers."""
    return "en" if lang == "zh-CN" else "zh-CN"
