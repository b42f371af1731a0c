"""Letters as PDF with Chinese text: pages, text read back, the markup."""

from __future__ import annotations

import re

from pypdf import PdfReader

from dianfei.notify.letters import Heading, Line, Paragraph, Spacer, Table, parse_markup, render_pdf
from dianfei.notify.render import SAMPLE_CONTEXT, templates


def _text(data: bytes) -> tuple[int, str]:
    import io

    reader = PdfReader(io.BytesIO(data))
    # pypdf pads two-byte glyph codes with spaces or NULs when it extracts them (poppler's
    # pdftotext reads the same file cleanly): compare without them
    return len(reader.pages), re.sub(r"[\s\x00]+", "", "".join(p.extract_text() for p in reader.pages))


def test_a_stop_notice_letter_reads_back_with_name_address_and_amount() -> None:
    r = templates().render("stop_notice", "letter", "zh-CN", {**SAMPLE_CONTEXT, "customer_name": "王小明"},
                           extra={"utility_name": "城关供电公司", "hotline": "95598",
                                  "recipient_name": "王小明", "recipient_address": "城关镇解放路8号",
                                  "today": "2026-11-02"})
    pages, text = _text(render_pdf(parse_markup(r.letter_markup or ""), title=r.title))
    assert pages == 1
    for expected in ("欠费停电通知书", "王小明", "城关镇解放路8号", "123.45元", "2026-11-08",
                     "https://pay.example.cn/b/C00000001-202609-1", "支付宝"):
        assert expected in text, expected


def test_long_documents_flow_onto_more_pages() -> None:
    blocks = [Heading("账单"), *[Paragraph("第" + str(i) + "段：" + "电费" * 60) for i in range(40)]]
    pages, text = _text(render_pdf(blocks))
    assert pages > 1 and "第39段" in text


def test_markup_becomes_blocks() -> None:
    blocks = parse_markup("@right 城关供电公司\n\n# 标题\n\n第一行\n续行\n\n"
                          "| 户号 | C1 |\n| 金额 | 1.00 元 |\n@sign 签名\n@small 小字\n")
    assert blocks == [Line("城关供电公司", "R"), Spacer(3), Heading("标题"), Spacer(3),
                      Paragraph("第一行 续行"), Spacer(3),
                      Table((("户号", "C1"), ("金额", "1.00 元"))), Line("签名", "R", 12),
                      Line("小字", "L", 8.5)]


def test_an_unknown_tag_is_refused() -> None:
    import pytest

    from dianfei.core.errors import ValidationError

    with pytest.raises(ValidationError, match="unknown tag '@bold'"):
        parse_markup("@bold x")


def test_an_address_cannot_add_rows_or_lines_to_a_stop_notice() -> None:
    """A customer record is data, never markup: line breaks and ``|`` in an address or a name stay
    inside their own line of the printed letter (found in review: a forged row in a legal notice)."""
    forged = "城关镇解放路8号\n| 应缴金额 | 0.00 元 |\r\n# 撤销通知\u2028@sign 伪造"
    r = templates().render("stop_notice", "letter", "zh-CN", {**SAMPLE_CONTEXT, "customer_name": "王|小明"},
                           extra={"utility_name": "城关供电公司", "hotline": "95598",
                                  "recipient_name": "王|小明", "recipient_address": forged,
                                  "today": "2026-11-02"})
    blocks = parse_markup(r.letter_markup or "")
    table_rows = [row for b in blocks if isinstance(b, Table) for row in b.rows]
    assert not any("0.00" in cell for row in table_rows for cell in row)
    assert [b for b in blocks if isinstance(b, Heading)] == [Heading(r.title)]
    address = [b for b in blocks if isinstance(b, Line) and "解放路" in b.text]
    assert address == [Line("城关镇解放路8号 ｜ 应缴金额 ｜ 0.00 元 ｜  # 撤销通知 @sign 伪造", "L", 12)]
    assert not any(isinstance(b, Line) and b.text == "伪造" for b in blocks)
