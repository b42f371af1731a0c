"""The bill document (电费账单): what it shows, in zh-CN and en, as HTML and as an A4 PDF whose
text extracts; estimated reads marked; the tier position; the QR payloads of the online
channels decode to the payment link."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader
from tests.billing.bills_data import LAST, build

from dianfei.billing.documents import bill_document
from dianfei.billing.pdf import render_pdf
from dianfei.billing.qr import qr_matrix
from dianfei.billing.render import render_html
from dianfei.billing.view import bill_view
from dianfei.core.clock import Period
from dianfei.core.errors import NotFoundError
from dianfei.db.engine import Database


@pytest.fixture
def bills(db: Database) -> Database:
    build(db)
    return db


def pdf_text(data: bytes) -> str:
    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)


def test_pdf_is_a4_with_an_embedded_subset_font_and_chinese_text_that_extracts(
        bills: Database) -> None:
    doc = bill_document(bills.engine, "C1", LAST)
    data = render_pdf(bill_view(doc))
    reader = PdfReader(io.BytesIO(data))
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4 in points
    fonts = [f for page in reader.pages
             for f in page["/Resources"]["/Font"].values()]
    descendant = fonts[0].get_object()["/DescendantFonts"][0].get_object()
    embedded = descendant["/FontDescriptor"]["/FontFile2"].get_object()
    # a subset: the embedded font is a small part of the 20 MB collection
    assert len(embedded.get_data()) < 150_000
    text = pdf_text(data)
    for expected in ("电费账单", "户号", "C1", "用户C1", "应缴金额", "缴费截止日期", "2026-03-18",
                     "第一档电量", "300.00 kWh", "0.5380", "161.40", "本期电费合计",
                     "阶梯电量", "近13个月用电量", "同类用户用电对比", "缴费方式", "支付宝", "营业厅"):
        assert expected in text, expected
    # the amount due is this bill plus what is still owed on earlier ones
    assert doc["account_position"]["amount_due"] in text


def test_english_bill_has_the_same_figures(bills: Database) -> None:
    doc = bill_document(bills.engine, "C3", LAST)
    zh, en = pdf_text(render_pdf(bill_view(doc))), pdf_text(render_pdf(bill_view(doc, "en")))
    for expected in ("Electricity bill", "Amount due", "Peak energy", "Valley energy", "Time of use",
                     "Ways to pay", "Alipay"):
        assert expected in en, expected
    assert "电费账单" not in en and "高峰电量" in zh
    for figure in ("140.00", "60.00", "79.52", "17.28", "96.80", doc["account_position"]["amount_due"]):
        assert figure in zh and figure in en, figure
    # the time-of-use split: 140 peak + 60 valley kWh, 70 % and 30 %
    assert [(t["period"], t["kwh"], t["share_percent"]) for t in doc["time_of_use"]] == [
        ("peak", "140.00", 70), ("valley", "60.00", 30)]


def test_html_and_pdf_render_one_view(bills: Database) -> None:
    doc = bill_document(bills.engine, "C2", LAST)
    html = render_html(doc)
    text = pdf_text(render_pdf(bill_view(doc)))
    for section in bill_view(doc).sections:
        for row in section.rows:
            for cell in row:
                if cell and re.fullmatch(r"-?\d+\.\d\d", cell):
                    assert cell in html and cell in text, (section.key, cell)
    # the low-income allowance is applied and named, and the TOU option offered
    assert "低保/五保户免费电量" in text and "-5.38" in text and "已享受" in text
    assert "居民峰谷分时电价" in text and '<html lang="zh-CN">' in html
    assert '<html lang="en">' in render_html(doc, "en")


def test_estimated_read_is_marked(bills: Database) -> None:
    c1, c2 = bill_document(bills.engine, "C1", LAST), bill_document(bills.engine, "C2", LAST)
    assert c1["estimated"] and c1["meters"][0]["estimated"]
    assert not c2["estimated"] and not c2["meters"][0]["estimated"]
    text = pdf_text(render_pdf(bill_view(c1)))
    assert "5200.00 (估)" in text and "估算示数" in text
    assert "(估)" not in pdf_text(render_pdf(bill_view(c2)))
    en = pdf_text(render_pdf(bill_view(c1, "en")))
    assert "5200.00 (est.)" in en and "estimated meter read" in en
    assert "5200.00 (估)" in render_html(c1)
    # the 13-month history marks the estimated period too
    assert [h["estimated"] for h in c1["history"][:2]] == [True, False]


def test_tier_position_in_the_year(bills: Database) -> None:
    # C1 uses 300 kWh a month from January 2025: 2,700 kWh before October, 3,000 after —
    # past the 2,760 kWh of tier 1, so 60 kWh of October are tier 1 and 240 tier 2
    doc = bill_document(bills.engine, "C1", Period(2025, 10))
    t = doc["tiers"]
    assert (t["basis"], t["used_before_kwh"], t["used_after_kwh"], t["current_tier"],
            t["kwh_to_next_tier"]) == ("annual", "2700.00", "3000.00", 2, "1800.00")
    assert [(s["kwh"], s["amount"]) for s in t["split"]] == [
        ("60.00", "32.28"), ("240.00", "141.12"), ("0.00", "0.00")]
    lines = {ln["code"]: ln for ln in doc["lines"]}
    assert lines["energy_tier1"]["quantity"] == "60.00"
    assert lines["energy_tier2"]["amount"] == "141.12"  # 240 × 0.5880
    # a new year starts again in tier 1
    jan = bill_document(bills.engine, "C1", Period(2026, 1))["tiers"]
    assert (jan["used_before_kwh"], jan["current_tier"], jan["kwh_to_next_tier"]) == (
        "0.00", 1, "2460.00")


def test_history_covers_13_months_and_peers_compare_similar_households(bills: Database) -> None:
    doc = bill_document(bills.engine, "C1", LAST)
    assert [h["period"] for h in doc["history"]][::12] == ["2026-02", "2025-02"]
    assert len(doc["history"]) == 13
    p = doc["peer_comparison"]
    # C1 300, C2 100, C3 200 kWh: same class, region and (unrecorded) size
    assert (p["accounts"], p["average_kwh"], p["median_kwh"], p["efficient_kwh"],
            p["percent_using_less"]) == (3, "200.00", "200.00", "200.00", 67)
    assert doc["forecast"] is None  # no forecaster given: no made-up numbers


def test_forecast_hook_fills_the_forecast(bills: Database) -> None:
    calls = []

    def forecaster(engine, accounts, period):  # type: ignore[no-untyped-def]
        calls.append((list(accounts), str(period)))
        return {"C1": {"period": "2026-03", "kwh": "310.00", "amount": "166.78"}}

    doc = bill_document(bills.engine, "C1", LAST, forecast=forecaster)
    assert calls == [(["C1"], "2026-02")]
    text = pdf_text(render_pdf(bill_view(doc)))
    assert "下期电费预测" in text and "166.78" in text


def test_a_bill_whose_next_bill_is_out_asks_for_no_forecast(bills: Database) -> None:
    calls = []

    def forecaster(engine, accounts, period):  # type: ignore[no-untyped-def]
        calls.append(list(accounts))
        return {a: {"period": "x", "kwh": "1.00", "amount": "1.00"} for a in accounts}

    earlier = LAST.prev()  # C1's LAST bill is out: the forecast of it would be stale
    doc = bill_document(bills.engine, "C1", earlier, forecast=forecaster)
    assert doc["period"] == str(earlier) and doc["forecast"] is None
    assert calls == []


def test_qr_payload_decodes_to_the_payment_link(bills: Database) -> None:
    import numpy as np
    import zxingcpp

    doc = bill_document(bills.engine, "C2", LAST)
    online = [p for p in doc["payment"] if p["online"]]
    assert [p["channel"] for p in online] == ["alipay", "wechatpay"]
    for p in online:
        matrix = np.array(qr_matrix(p["qr_payload"]), dtype=np.uint8)
        image = np.kron(np.where(matrix == 1, 0, 255).astype(np.uint8), np.ones((6, 6), np.uint8))
        found = zxingcpp.read_barcodes(image)
        assert [f.text for f in found] == [p["qr_payload"]]
        q = parse_qs(urlparse(found[0].text).query)
        assert q == {"channel": [p["channel"]], "account": ["C2"], "bill": [doc["bill_id"]],
                     "amount": [doc["account_position"]["amount_due"]]}


def test_unknown_account_or_period_is_a_clear_error(bills: Database) -> None:
    with pytest.raises(NotFoundError, match="no bill for account C1 in 2030-01"):
        bill_document(bills.engine, "C1", Period(2030, 1))
    with pytest.raises(NotFoundError, match="no bill for account NOPE in 2026-02: the account"):
        bill_document(bills.engine, "NOPE", LAST)


def dianfei(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dianfei", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


def test_cli_shows_a_bill_as_pdf_html_and_json(bills: Database, db_env: dict[str, str],
                                               tmp_path: Path) -> None:
    out = tmp_path / "bill.pdf"
    ok = dianfei(db_env, "bill", "show", "C1", "--period", "2026-02", "--format", "pdf",
                 "--out", str(out), "--lang", "en")
    assert ok.returncode == 0, ok.stderr
    assert "Electricity bill" in pdf_text(out.read_bytes())
    doc = json.loads(dianfei(db_env, "bill", "show", "C1", "--period", "2026-02").stdout)
    assert doc["tiers"]["current_tier"] == 1 and doc["meters"][0]["estimated"] is True
    for args, message in ((("NOPE", "--period", "2026-02"), "no bill for account NOPE"),
                          (("C1", "--period", "2026-13"), "period month"),
                          (("C1", "--period", "2026-02", "--lang", "fr"), "--lang must be"),
                          (("C1", "--period", "2026-02", "--format", "doc"), "--format must be")):
        bad = dianfei(db_env, "bill", "show", *args)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr


@given(ytd=st.integers(0, 6000_00), kwh=st.integers(0, 3000_00),
       tariff=st.sampled_from(["cn-zj-residential", "cn-zj-residential-tou"]))
@settings(max_examples=60, deadline=None)
def test_tier_position_agrees_with_the_rater(ytd: int, kwh: int, tariff: str) -> None:
    """Whatever the year so far and the month's usage, the document's tier split is the rater's
    (its kWh add up to the bill's), and the position follows from the thresholds."""
    from decimal import Decimal

    import polars as pl

    from dianfei.billing.documents import Links, PeriodContext, tier_position
    from dianfei.tariffs.models import Usage
    from dianfei.tariffs.service import load_catalogue, rate

    period = Period(2026, 6)
    version = load_catalogue().version_for(tariff, period)
    peak = kwh * 7 // 10
    usage = Usage(kwh=Decimal(kwh) / 100, ytd_kwh=Decimal(ytd) / 100,
                  peak_kwh=Decimal(peak) / 100 if tariff.endswith("tou") else None,
                  valley_kwh=Decimal(kwh - peak) / 100 if tariff.endswith("tou") else None)
    lines = [{"code": ln.code, "quantity": ln.quantity, "amount": ln.amount}
             for ln in rate(version, period, usage)]
    ctx = PeriodContext(period, pl.DataFrame(), Links())
    t = tier_position({"tariff_id": tariff}, kwh, ytd, lines, period, ctx)
    assert t is not None
    split = [int(Decimal(s["kwh"]) * 100) for s in t["split"]]
    assert sum(split) == kwh and min(split) >= 0
    t1, t2 = (int(Decimal(x) * 100) for x in t["thresholds_kwh"])
    after = ytd + kwh
    assert t["used_after_kwh"] == f"{Decimal(after) / 100:.2f}"
    assert t["current_tier"] == (1 if after <= t1 else 2 if after <= t2 else 3)
    left = {1: t1 - after, 2: t2 - after, 3: None}[t["current_tier"]]
    assert t["kwh_to_next_tier"] == (None if left is None else f"{Decimal(left) / 100:.2f}")
    # the kWh of each tier are those the thresholds cut from [ytd, ytd + kwh]
    assert split == [max(0, min(after, t1) - min(ytd, t1)),
                     max(0, min(after, t2) - max(ytd, t1)) if after > t1 else 0,
                     max(0, after - max(ytd, t2))]


def test_similar_households_are_the_same_class_region_and_size(bills: Database) -> None:
    from sqlalchemy import text

    # C1's service point has a recorded 3 kVA capacity: its peers are other ≤4 kVA households
    with bills.engine.begin() as conn:
        conn.execute(text("UPDATE service_points SET capacity_kva = 300 WHERE account_id = 'C1'"))
    c1, c2 = bill_document(bills.engine, "C1", LAST), bill_document(bills.engine, "C2", LAST)
    assert (c1["peer_comparison"]["size_band"], c1["peer_comparison"]["accounts"]) == ("≤4kVA", 1)
    assert (c2["peer_comparison"]["size_band"], c2["peer_comparison"]["accounts"],
            c2["peer_comparison"]["average_kwh"]) == ("unknown", 2, "150.00")


def test_a_missing_bill_font_names_the_setting_to_fix(tmp_path: Path) -> None:
    """Bills share the CJK font lookup of letters and reports; the message still says where a
    bill's font is configured."""
    from dianfei.billing.pdf import find_font
    from dianfei.core.errors import ValidationError

    with pytest.raises(ValidationError, match=r"no CJK font for bill PDFs .*\[billing\] font"):
        find_font(tmp_path / "none.ttc")
