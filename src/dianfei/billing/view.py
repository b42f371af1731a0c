"""The bill document in the customer's language, as sections both renderers lay out.

:func:`bill_view` turns a document (documents.py) and a language (zh-CN, en) into a list of
sections — pairs, tables, text, a bar chart, the ways to pay — with every word taken from
templates/bill_words.toml. The HTML template and the PDF renderer only draw these sections, so
the web page and the printed bill always say the same thing.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from dianfei.core.errors import ValidationError
from dianfei.core.rules import rule_cache

LANGS = ("zh-CN", "en")
WORDS_FILE = Path(__file__).with_name("templates") / "bill_words.toml"
#: "中文 English": the stored line descriptions carry both; split before the first Latin word
_SPLIT = re.compile(r"^(.*?[\u3000-\u9fff\uff00-\uffef）)])\s+([A-Za-z].*)$")


def normalise_lang(lang: str | None) -> str:
    """zh-CN (the default), zh, zh_CN → zh-CN; en, en-US → en; anything else is refused."""
    if lang is None or not lang.strip():
        return "zh-CN"
    low = lang.strip().lower().replace("_", "-")
    if low in ("zh", "zh-cn", "zh-hans"):
        return "zh-CN"
    if low == "en" or low.startswith("en-"):
        return "en"
    raise ValidationError(f"--lang must be zh-CN or en, got {lang!r}")


@rule_cache(maxsize=1)
def _words() -> dict[str, dict[str, str]]:
    with WORDS_FILE.open("rb") as fh:
        return dict(tomllib.load(fh))


def words(lang: str) -> dict[str, str]:
    return _words()[normalise_lang(lang)]


def localise(description: str, lang: str) -> str:
    """The language's half of a bilingual description ("电度电费 Energy" → "电度电费" / "Energy")."""
    m = _SPLIT.match(description)
    if not m:
        return description
    return m.group(1) if lang == "zh-CN" else m.group(2)


@dataclass
class Section:
    """One block of the bill. ``kind``: pairs (label/value rows), table (``columns`` and
    ``rows``; ``numeric`` marks right-aligned columns; ``row_kinds`` "line", "group", "total"),
    text (``paragraphs``), chart (``bars``), pay (``channels``)."""

    key: str
    title: str
    kind: str
    rows: list[list[str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    numeric: list[bool] = field(default_factory=list)
    row_kinds: list[str] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    bars: list[dict[str, Any]] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)
    #: cells to mark (row, column) — estimated reads
    marked: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class BillView:
    lang: str
    title: str
    subtitle: str
    notices: list[str]
    amount_due: str
    due_on: str
    as_of: str
    sections: list[Section]
    footer: list[str]
    #: amount_due, due_on, yuan: the words of the amount-due box
    labels: dict[str, str] = field(default_factory=dict)


def bill_view(doc: dict[str, Any], lang: str | None = None) -> BillView:
    lang = normalise_lang(lang)
    w = words(lang)
    pos = doc["account_position"]
    notices = []
    if doc["status"] == "cancelled":
        notices.append(w["cancelled"].format(reason=doc.get("cancel_reason") or ""))
    if doc["estimated"]:
        notices.append(w["estimated_notice"])
    for m in doc["meters"]:
        # estimated read / 估计读数: how it was derived, and the bill that trues it up
        notes = m.get("estimates") or {}
        if "read_to" in notes:
            notices.append(w["estimated_read"].format(meter=m["meter_id"], basis=notes["read_to"]))
        if "read_from" in notes:
            notices.append(w["trued_up"].format(meter=m["meter_id"], basis=notes["read_from"]))
    sections = [
        Section("customer", w["account"], "pairs", rows=[
            [w["account"], doc["account"]], [w["name"], doc.get("customer_name") or ""],
            [w["address"], doc.get("address") or ""], [w["bill_id"], doc["bill_id"]],
            [w["tariff"], f"{doc['tariff']} ({doc['tariff_version']})"],
            [w["issued_on"], doc["issued_on"]], [w["due_on"], doc["due_on"]]]),
        _reads(doc, w),
        _charges(doc, w, lang),
    ]
    for s in (_tiers(doc, w, lang), _tou(doc, w)):
        if s is not None:
            sections.append(s)
    sections.append(_funds(doc, w, lang))
    sections.append(_policies(doc, w))
    as_of = w["as_of"].format(as_of=pos["as_of"])
    position = f"{w['position']}（{as_of}）" if lang == "zh-CN" else f"{w['position']} ({as_of})"
    sections.append(Section("position", position, "pairs", rows=[
                                [w["this_bill"], pos["this_bill"]],
                                [w["paid_on_this_bill"], pos["paid_on_this_bill"]],
                                [w["previous_arrears"], pos["previous_arrears"]],
                                [w["late_fees"], pos["late_fees"]],
                                [w["credit"], pos["credit"]],
                                [w["amount_due"], pos["amount_due"]],
                                [w["due_on"], pos["due_on"]]]))
    if doc.get("plan_instalments"):
        # the payment plan's instalment that falls due with this bill (分期)
        texts = [w["plan_instalment_text"].format(**i) for i in doc["plan_instalments"]]
        texts.append(w["plan_with_this_bill"].format(amount=doc["with_this_bill"],
                                                     due_on=doc["due_on"]))
        sections.append(Section("plan", w["plan_instalment"], "text", paragraphs=texts))
    sections.append(_history(doc, w))
    sections.append(_peers(doc, w))
    if doc.get("forecast"):
        f = doc["forecast"]
        text = w["forecast_text"].format(period=f.get("period", ""), kwh=f.get("kwh", ""),
                                         amount=f.get("amount", ""))
        if f.get("low") and f.get("high"):
            text += w["forecast_range"].format(low=f["low"], high=f["high"])
        sections.append(Section("forecast", w["forecast"], "text", paragraphs=[text]))
    if doc.get("credit_rating"):
        sections.append(Section("credit_rating", w["credit_rating"], "text",
                                paragraphs=[w["credit_rating_text"].format(**doc["credit_rating"])]))
    sections.append(Section("pay", w["pay"], "pay", channels=[
        {"channel": p["channel"], "name": w[f"channel_{p['channel']}"],
         "how": w[f"channel_{p['channel']}_how"], "qr_payload": p["qr_payload"]}
        for p in doc["payment"]]))
    return BillView(
        lang=lang, title=w["title"], subtitle=w["period"].format(period=doc["period"]),
        notices=notices, amount_due=pos["amount_due"], due_on=doc["due_on"],
        as_of=w["as_of"].format(as_of=pos["as_of"]), sections=sections,
        footer=[w["formula_note"], w["online_bill"].format(link=doc["bill_link"]), w["hotline"]],
        labels={k: w[k] for k in ("amount_due", "due_on", "yuan")})


def _reads(doc: dict[str, Any], w: dict[str, str]) -> Section:
    s = Section("reads", w["reads"], "table",
                columns=[w["meter"], w["read_from"], w["read_to"], w["multiplier"], w["kwh"],
                         w["read_dates"]],
                numeric=[False, True, True, True, True, True])
    for i, m in enumerate(doc["meters"]):
        frm, to = m["read_from"] or "", m["read_to"] or ""
        notes = m.get("estimates") or {}
        if notes:
            # metering says which read it estimated (估计读数): mark that one, so a bill that
            # trues an estimate up does not call its actual read an estimate
            if "read_from" in notes:
                frm = f"{frm} ({w['estimated']})"
                s.marked.append((i, 1))
            if "read_to" in notes:
                to = f"{to} ({w['estimated']})"
                s.marked.append((i, 2))
        elif m["estimated"]:
            # the estimated read is marked where the customer reads it (估 / est.)
            to = f"{to} ({w['estimated']})"
            s.marked.append((i, 2))
        dates = f"{(m['read_from_at'] or '')[:10]} – {(m['read_to_at'] or '')[:10]}"
        s.rows.append([m["meter_id"] or "", frm, to, str(m["multiplier"]), m["kwh"], dates])
        s.row_kinds.append("line")
    if len(doc["meters"]) > 1:
        s.rows.append([w["total_kwh"], "", "", "", doc["kwh"], ""])
        s.row_kinds.append("total")
    return s


def _line_row(ln: dict[str, Any], lang: str) -> list[str]:
    desc = localise(ln["description"], lang)
    if ln.get("power_factor"):
        desc = f"{desc} (PF {ln['power_factor']}, {ln['percent']}%)"
    return [desc, f"{ln['quantity']} {ln['unit']}", ln["unit_price"], ln["amount"]]


def _charges(doc: dict[str, Any], w: dict[str, str], lang: str) -> Section:
    s = Section("charges", w["charges"], "table",
                columns=[w["item"], w["quantity"], w["unit_price"], w["amount"]],
                numeric=[False, True, True, True])
    several = len(doc["meters"]) > 1
    for m in doc["meters"]:
        if m["lines"] and several:
            s.rows.append([f"{w['meter']} {m['meter_id']}", "", "", ""])
            s.row_kinds.append("group")
        for ln in m["lines"]:
            s.rows.append(_line_row(ln, lang))
            s.row_kinds.append("line")
    if doc["account_lines"] and several:
        s.rows.append([w["account_lines"], "", "", ""])
        s.row_kinds.append("group")
    for ln in doc["account_lines"]:
        s.rows.append(_line_row(ln, lang))
        s.row_kinds.append("line")
    s.rows.append([w["total"], "", "", doc["total"]])
    s.row_kinds.append("total")
    return s


def _tiers(doc: dict[str, Any], w: dict[str, str], lang: str) -> Section | None:
    t = doc.get("tiers")
    if not t:
        return None
    rule = w["tiers_annual" if t["basis"] == "annual" else "tiers_monthly"]
    paras = [rule.format(t1=t["thresholds_kwh"][0], t2=t["thresholds_kwh"][1])]
    now = w["tier_now"].format(tier=t["current_tier"])
    left = (w["tier_left"].format(left=t["kwh_to_next_tier"]) if t["kwh_to_next_tier"] is not None
            else w["tier_top"])
    if t["basis"] == "annual":
        paras.append(w["tier_used"].format(year=t["year"], after=t["used_after_kwh"],
                                           before=t["used_before_kwh"]))
    paras.append(f"{now}，{left}" if lang == "zh-CN" else f"{now}; {left}")
    inc = w["tier_increment"] if t.get("increments") else ""
    s = Section("tiers", w["tiers"], "table", columns=["", w["kwh"], w["amount"]],
                numeric=[False, True, True], paragraphs=paras)
    for part in t["split"]:
        s.rows.append([w["tier_n"].format(n=part["tier"]) + (inc if part["tier"] > 1 else ""),
                       part["kwh"], part["amount"]])
        s.row_kinds.append("total" if part["tier"] == t["current_tier"] else "line")
    return s


def _tou(doc: dict[str, Any], w: dict[str, str]) -> Section | None:
    if not doc.get("time_of_use"):
        return None
    s = Section("tou", w["tou"], "table",
                columns=[w["tou_period"], w["kwh"], w["share"], w["unit_price"], w["amount"]],
                numeric=[False, True, True, True, True])
    for p in doc["time_of_use"]:
        s.rows.append([w[p["period"]], p["kwh"], f"{p['share_percent']}%", p["unit_price"],
                       p["amount"]])
        s.row_kinds.append("line")
    return s


def _funds(doc: dict[str, Any], w: dict[str, str], lang: str) -> Section:
    if not doc["funds"]:
        return Section("funds", w["funds"], "text", paragraphs=[w["funds_included"]])
    s = Section("funds", w["funds"], "table",
                columns=[w["item"], w["quantity"], w["unit_price"], w["amount"]],
                numeric=[False, True, True, True])
    for ln in doc["funds"]:
        s.rows.append(_line_row(ln, lang))
        s.row_kinds.append("line")
    return s


def _policies(doc: dict[str, Any], w: dict[str, str]) -> Section:
    s = Section("policies", w["policies"], "pairs")
    for ln in doc["allowances"]:
        s.rows.append([f"{w['applied']}: {w['policy_low_income_allowance']}",
                       f"{ln['quantity']} {ln['unit']} × {ln['unit_price']} = {ln['amount']}"])
    for p in doc["policies"]:
        if p["applied"]:
            continue
        s.rows.append([f"{w['may_apply']}: {w['policy_' + p['code']]}", w[f"policy_{p['code']}_how"]])
    if not s.rows:
        s.kind = "text"
        s.paragraphs = ["—"]
    return s


def _history(doc: dict[str, Any], w: dict[str, str]) -> Section:
    hist = list(reversed(doc["history"]))  # oldest first, left to right
    top = max((Decimal(h["kwh"]) for h in hist), default=Decimal(0))
    bars = [{"period": h["period"], "label": h["period"][2:].replace("-", "/"), "kwh": h["kwh"],
             "fraction": float(Decimal(h["kwh"]) / top) if top > 0 else 0.0,
             "estimated": h.get("estimated", False), "current": h["period"] == doc["period"]}
            for h in hist]
    return Section("history", w["history"], "chart", bars=bars)


def _peers(doc: dict[str, Any], w: dict[str, str]) -> Section:
    p = doc["peer_comparison"]
    if not p["accounts"]:
        return Section("peers", w["peers"], "text", paragraphs=[w["peer_none"]])
    size = w["size_unknown"] if p["size_band"] == "unknown" else p["size_band"]
    cls = w.get(f"class_{p['customer_class']}", p["customer_class"] or "")
    s = Section("peers", w["peers"], "pairs", paragraphs=[
        w["peer_group"].format(cls=cls, region=doc.get("region_name") or p["region"] or "",
                               size=size, n=p["accounts"])])
    s.rows = [[w["peer_you"], f"{p['your_kwh']} kWh"], [w["peer_avg"], f"{p['average_kwh']} kWh"],
              [w["peer_median"], f"{p['median_kwh']} kWh"],
              [w["peer_efficient"], f"{p['efficient_kwh']} kWh"]]
    if p["percent_using_less"] is not None:
        s.paragraphs.append(w["peer_rank"].format(pct=p["percent_using_less"]))
    return s
