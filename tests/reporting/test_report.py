"""The monthly collection report in its three formats, from a real database."""

from __future__ import annotations

import csv
import re
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest
from tests.reporting.conftest import JAN

from dianfei.core.clock import FixedClock
from dianfei.core.errors import ValidationError
from dianfei.db.engine import Database
from dianfei.payments.service import post_payments_frame
from dianfei.reporting.kpi import period_kpis
from dianfei.reporting.report import monthly, write

AS_OF = date(2026, 3, 1)


@pytest.fixture
def paid(billed: Database) -> Database:
    frame = pl.DataFrame({"channel": ["counter", "alipay", "wechatpay"],
                          "transaction_id": ["A", "B", "C"], "account_id": ["K1", "K2", "K3"],
                          "amount": [50_00, 999_99, 20_00],
                          "paid_at": [datetime(2026, 2, 5, 1, tzinfo=UTC),
                                      datetime(2026, 2, 6, 1, tzinfo=UTC),
                                      datetime(2026, 2, 20, 1, tzinfo=UTC)]})
    with billed.engine.begin() as conn:
        post_payments_frame(conn, frame, clock=FixedClock(datetime(2026, 2, 21, tzinfo=UTC)),
                            source="test")
    return billed


def FixedClockAt(at: datetime):  # type: ignore[no-untyped-def]
    from dianfei.core.clock import FixedClock

    return FixedClock(at)


def test_tables_agree_with_the_kpis(paid: Database) -> None:
    report = monthly(paid, JAN, AS_OF)
    kpis = period_kpis(paid, JAN, AS_OF)
    rows = dict((r[0], r[1]) for r in report.sheet("kpi").rows)
    assert rows["实收电费 collected (yuan)"] == kpis["collected"]
    assert rows["电费回收率 collection rate"] == kpis["collection_rate"]
    # the league table: one collector (K1 in the factories) with every bill
    (league,) = report.sheet("collectors").rows
    assert league[1] == "K1" and league[5] == kpis["billed"] and league[6] == kpis["collected"]
    # top arrears: the largest debt first, and nobody who owes nothing
    top = report.sheet("top_arrears").rows
    owed = [float(r[5]) for r in top]
    assert owed == sorted(owed, reverse=True) and all(o > 0 for o in owed)
    assert "K2" not in [r[0] for r in top]  # K2 paid more than its bill
    assert [r[0] for r in report.sheet("channels").rows] == ["alipay", "counter", "wechatpay"]


def test_pdf_xlsx_and_csv(paid: Database, tmp_path: Path) -> None:
    from pypdf import PdfReader

    report = monthly(paid, JAN, AS_OF)
    (pdf,) = write(report, "pdf", tmp_path / "r.pdf")
    # pypdf pads two-byte glyph codes with spaces or NULs (see tests/notify/test_letters.py)
    text = re.sub(r"[\s\x00]+", "", "".join(p.extract_text() for p in PdfReader(pdf).pages))
    assert "电费回收月报" in text and "催费员排名" in text and "对账情况" in text
    assert report.kpis["collected"] in text
    (xlsx,) = write(report, "xlsx", tmp_path / "r.xlsx")
    with zipfile.ZipFile(xlsx) as z:
        book = z.read("xl/workbook.xml").decode()
        charts = [n for n in z.namelist() if n.startswith("xl/charts/chart")]
    for name in ("kpi", "trend", "top_arrears", "collectors", "channels", "plans",
                 "reconciliation"):
        assert f'name="{name}"' in book
    assert len(charts) == 2
    files = write(report, "csv", tmp_path / "csv")
    assert len(files) == len(report.sheets)
    raw = (tmp_path / "csv" / "2026-01-channels.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel and WPS need
    with (tmp_path / "csv" / "2026-01-channels.csv").open(encoding="utf-8-sig") as fh:
        got = list(csv.DictReader(fh))
    assert [r["collected"] for r in got] == [c["collected"] for c in report.kpis["channels"]]
    with pytest.raises(ValidationError, match="--format must be one of"):
        write(report, "docx", tmp_path / "r.docx")
