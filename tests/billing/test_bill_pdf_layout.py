"""The bill's direct text drawing (billing/pdf.py ``_wrap``, ``_cell`` with justified spacing)
against fpdf2's own ``multi_cell``: the same lines, positions, word-spacing adjustments and
glyphs, and the same extracted text, for Chinese, English and mixed paragraphs at the widths
a bill uses."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from fpdf import FPDF
from fpdf.enums import WrapMode
from pypdf import PdfReader
from pypdf.generic import ContentStream

from dianfei.billing import pdf as billpdf

TEXTS = [
    "夜间用电多的家庭选择峰谷电价可能更省钱，可在网上国网App或营业厅申请。",
    "年度阶梯：第一档 ≤ 2760.00 kWh，第二档 ≤ 4800.00 kWh，以上为第三档。" * 3,
    "Bring your low-income (dibao/wubao) certificate to a service counter; the free kWh "
    "follow local policy.",
    "Households using more at night may pay less on the peak/valley tariff; apply in the app "
    "or at a counter.",
    "Similar households: residential, 城关镇, capacity not recorded (264 accounts)",
    "Two  spaces  between  words and a trailing space at the very end of a long line of text ",
    "word " * 60,
    "x" * 300,
    "户名：王𬱖，地址：上海市浦东新区世纪大道 100 号 2 栋 1203 室，" * 4,
    "A no-break\u00a0space goes to fpdf2's own line breaking, as does a line\nbreak in a long text.",
]
WIDTHS = [(99.0, 4.4, 8.5), (180.0, 4.2, 8.5), (180.0, 4.5, 9), (45.0, 3.5, 7)]


def _document(font: billpdf.BillFont) -> Any:
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(15, 14, 15)
    pdf.set_auto_page_break(auto=True, margin=14)
    font.attach(pdf)
    pdf.add_page()
    pdf.set_font("cjk", size=10)
    return pdf


def _operations(data: bytes) -> tuple[list[tuple[bytes, list[Any]]], str]:
    """The page operators with their text decoded through the ToUnicode map (fpdf2 writes
    literal strings, ``_cell`` hex strings: the same codes) and numbers rounded as written."""
    reader = PdfReader(io.BytesIO(data))
    font = next(iter(reader.pages[0]["/Resources"]["/Font"].values())).get_object()
    cmap = font["/ToUnicode"].get_object().get_data().decode("latin-1")
    chars = {int(code, 16): bytes.fromhex(uni).decode("utf-16-be")
             for code, uni in re.findall(r"<([0-9A-F]{4})> <([0-9A-F]+)>", cmap)}

    def decode(s: Any) -> str:
        raw = s.original_bytes if hasattr(s, "original_bytes") else bytes(s)
        return "".join(chars[int.from_bytes(raw[i:i + 2], "big")] for i in range(0, len(raw), 2))

    out: list[tuple[bytes, list[Any]]] = []
    for page in reader.pages:
        for operands, op in ContentStream(page.get_contents(), reader).operations:
            if op == b"Tj":
                operands = [decode(operands[0])]
            elif op == b"TJ":
                operands = [[round(float(x), 3) if isinstance(x, int | float) else decode(x)
                             for x in operands[0]]]
            else:
                operands = [round(float(x), 2) if isinstance(x, int | float) else x
                            for x in operands]
            out.append((op, operands))
    return out, "\n".join(p.extract_text() for p in reader.pages)


@pytest.mark.parametrize(("width", "height", "size"), WIDTHS)
def test_wrapped_text_is_drawn_as_fpdf2s_multi_cell_draws_it(width: float, height: float,
                                                             size: float) -> None:
    font = billpdf.BillFont(billpdf.find_font(), "".join(TEXTS))
    ours, theirs = _document(font), _document(font)
    for pdf in (ours, theirs):
        pdf.set_font_size(size)
        pdf.set_text_color(60)
    for text in TEXTS:
        billpdf._wrap(ours, width, height, text, new_x="LMARGIN")
        theirs.multi_cell(width, height, text, new_x="LMARGIN", new_y="NEXT",
                          wrapmode=WrapMode.CHAR)
        assert (ours.x, round(ours.y, 6), ours.page) == (theirs.x, round(theirs.y, 6),
                                                          theirs.page)
    ops, text = _operations(billpdf.output(ours))
    expected_ops, expected_text = _operations(billpdf.output(theirs))
    assert text == expected_text
    assert ops == expected_ops
    # the English paragraphs wrapped, and justified lines were written (TJ adjustments)
    assert any(op == b"TJ" for op, _ in ops)
    # every character of every paragraph is on the page, in order (line breaks aside)
    flat = "".join(text.split())
    assert flat == "".join("".join(t.split()) for t in TEXTS)
