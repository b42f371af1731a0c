"""Reasons in words (风险原因): the features that pushed an account's score up the most, as a
collector or the customer can read them, zh-CN first and en second.

Only features can be reasons, and low-income or protected status is never a feature, so neither
can ever be given as a reason to escalate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from dianfei.risk.features import FEATURES

#: feature → (zh-CN, en, how to show the value: pct, n, days, yuan, ratio, kwh, text)
WORDS: dict[str, tuple[str, str, str]] = {
    "n_bills": ("账单数 {v}", "{v} bills so far", "n"),
    "n_due": ("已到期账单 {v} 张", "{v} bills past due date", "n"),
    "late_count": ("累计逾期 {v} 次", "late payments so far: {v}", "n"),
    "late_count_12": ("近12个月逾期 {v} 次", "late payments in 12 months: {v}", "n"),
    "late_share": ("逾期账单占比 {v}", "{v} of bills paid late", "pct"),
    "late_share_3": ("近3期逾期占比 {v}", "{v} of the last 3 bills paid late", "pct"),
    "late_share_6": ("近6期逾期占比 {v}", "{v} of the last 6 bills paid late", "pct"),
    "late_trend": ("逾期在增加（近3期比平均高 {v}）", "lateness rising ({v} above its average)", "pct"),
    "days_late_mean": ("平均逾期 {v}", "on average {v} late", "days"),
    "days_late_max": ("最长逾期 {v}", "once {v} late", "days"),
    "days_late_last": ("上期账单逾期 {v}", "last bill {v} late", "days"),
    "days_since_late": ("距上次逾期 {v}", "last late {v} ago", "days"),
    "late30_share": ("逾期超30天占比 {v}", "{v} of bills over 30 days late", "pct"),
    "partial_count": ("部分缴费 {v} 次", "bills paid in part: {v}", "n"),
    "partial_share": ("部分缴费占比 {v}", "{v} of bills paid in part", "pct"),
    "overdue_amount": ("当前欠费 {v}", "owes {v} overdue now", "yuan"),
    "overdue_count": ("欠费账单 {v} 张", "{v} bills overdue now", "n"),
    "overdue_ratio": ("欠费相当于 {v} 期账单", "overdue equals {v} bills", "ratio"),
    "unpaid_trend": ("到期未缴金额在增加（{v}）", "unpaid at due date growing ({v})", "yuan"),
    "amount_last": ("上期账单 {v}", "last bill {v}", "yuan"),
    "amount_mean": ("平均账单 {v}", "average bill {v}", "yuan"),
    "amount_ratio": ("上期账单是平均的 {v} 倍", "last bill {v} × the average", "ratio"),
    "kwh_mean": ("月均用电 {v}", "uses {v} a month", "kwh"),
    "kwh_last": ("上期用电 {v}", "used {v} last bill", "kwh"),
    "kwh_cv": ("用电波动大（变异系数 {v}）", "volatile consumption (CV {v})", "ratio"),
    "kwh_trend": ("近期用电是平均的 {v} 倍", "recent use {v} × the average", "ratio"),
    "kwh_drop": ("用电骤变（上期为前3期的 {v} 倍）", "sudden change in use ({v} × the 3 bills before)",
                 "ratio"),
    "tenure_days": ("开户 {v}", "customer for {v}", "days"),
    "days_since_payment": ("距上次缴费 {v}", "last paid {v} ago", "days"),
    "n_channels": ("使用 {v} 种缴费渠道", "pays through {v} channels", "n"),
    "notices_90": ("近90天收到催费通知 {v} 次", "notices in 90 days: {v}", "n"),
    "notices_total": ("累计催费通知 {v} 次", "notices so far: {v}", "n"),
    "notice_response": ("收到通知后7天内缴费的占比 {v}", "{v} of notices answered by a payment within 7 days",
                        "pct"),
    "broken_plans": ("违约分期协议 {v} 次", "payment plans broken: {v}", "n"),
    "channel": ("常用缴费渠道：{v}", "usually pays by {v}", "text"),
    "customer_class": ("用户类别：{v}", "customer class {v}", "text"),
    "region_id": ("所在区域：{v}", "region {v}", "text"),
    "station_id": ("所属供电所：{v}", "supply station {v}", "text"),
    "payment_mode": ("缴费方式：{v}", "payment mode {v}", "text"),
}
assert set(WORDS) == set(FEATURES)


def _show(value: Any, kind: str, zh: bool) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "未知" if zh else "unknown"
    if kind == "pct":
        return f"{float(value):.0%}"
    if kind == "n":
        return f"{round(float(value))}"
    if kind == "days":
        d = round(float(value))
        return f"{d}天" if zh else f"{d} days"
    if kind == "yuan":
        return f"{float(value):.2f}元" if zh else f"{float(value):.2f} yuan"
    if kind == "ratio":
        return f"{float(value):.2f}"
    if kind == "kwh":
        return f"{float(value):.0f}千瓦时" if zh else f"{float(value):.0f} kWh"
    return str(value)


def phrase(feature: str, value: Any) -> tuple[str, str]:
    zh, en, kind = WORDS[feature]
    return zh.format(v=_show(value, kind, True)), en.format(v=_show(value, kind, False))


def top_reasons(frame: pl.DataFrame, contributions: np.ndarray, k: int = 3,
                names: Sequence[str] = FEATURES) -> pl.DataFrame:
    """account_id, reasons_zh, reasons_en, reason_features: the ``k`` features with the largest
    positive contributions per row, joined with "；" / "; " (empty when nothing raised the
    score). ``names``: the features of the contributions' columns (the model's own list: a model
    trained before a feature was added knows the features it was trained with)."""
    n = frame.height
    if n == 0:
        return pl.DataFrame(schema={"account_id": pl.String, "reasons_zh": pl.String,
                                    "reasons_en": pl.String, "reason_features": pl.String})
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
    values = {c: frame[c].to_list() for c in names}
    zh_out, en_out, feats_out = [], [], []
    for i in range(n):
        zh, en, used = [], [], []
        for j in order[i]:
            if contributions[i, j] <= 0:
                break
            name = names[j]
            a, b = phrase(name, values[name][i])
            zh.append(a)
            en.append(b)
            used.append(name)
        zh_out.append("；".join(zh))
        en_out.append("; ".join(en))
        feats_out.append(",".join(used))
    return frame.select("account_id").with_columns(
        pl.Series("reasons_zh", zh_out, dtype=pl.String), pl.Series("reasons_en", en_out, dtype=pl.String),
        pl.Series("reason_features", feats_out, dtype=pl.String))
