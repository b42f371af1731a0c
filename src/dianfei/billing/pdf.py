"""The printed bill: A4 PDF with an embedded (subset) CJK font and extractable text, drawn from
the same :class:`view.BillView` as the web page (fpdf2).

Why the font handling is the way it is (measured, docs/benchmarks.md): fpdf2 parses the font
file given to ``add_font`` and, at output, subsets it with fontTools to the glyphs the document
uses. With Debian's Noto Sans CJK collection (20 MB, 65,000 glyphs) that is ~0.35 s a document:
parsing the cmap and metrics of every glyph, then subsetting the whole CFF table. A bill uses a
few hundred distinct characters, so:

1. a **working font** is cut once from the collection for a set of characters — the words of
   every bill (both languages), ASCII, and the names and addresses of the documents at hand (a
   batch passes all of its documents' text) — a few hundred glyphs;
2. fpdf2 parses that working font **once per process** (the prototype); each document gets a
   shallow copy with its own glyph map and a fresh fontTools object over the same bytes
   (``recalcBBoxes=False``: the boxes were computed when the working font was cut);
3. the working font's outlines are converted to TrueType once (see ``_to_truetype``: text
   extraction);
4. fpdf2 then subsets the working font per document as usual — the embedded font holds only the
   glyphs the bill shows, and the PDF's ToUnicode map keeps every character extractable.
"""

from __future__ import annotations

import copy
import hashlib
import io
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dianfei.billing.view import WORDS_FILE, BillView, Section

#: characters every bill may print besides its words and customer text
_BASE = "".join(chr(c) for c in range(0x20, 0x7F)) + "×–—≤≥·%（），。：；、“”《》￥元—…"
_LOCK = threading.Lock()


@dataclass(frozen=True)
class FontSource:
    """A font file and, for a collection (.ttc), the face to use."""

    path: Path
    index: int = 0


def find_font(path: str | Path | None = None, index: int | None = None) -> FontSource:
    """The configured CJK font (``[billing] font``), else Noto Sans CJK SC from fonts-noto-cjk:
    the one lookup letters and reports use too (``notify.service.cjk_font``)."""
    from dianfei.notify.service import cjk_font

    font = cjk_font(str(path) if path else None, index, used_for="bill PDFs",
                    setting="[billing] font")
    return FontSource(Path(font.path), int(font.index))


def base_characters() -> set[str]:
    """What every bill can print: ASCII, the punctuation and the words of both languages."""
    return set(_BASE) | set(WORDS_FILE.read_text("utf-8"))


def view_characters(view: BillView) -> set[str]:
    out: set[str] = set(view.title + view.subtitle + view.as_of + view.amount_due + view.due_on)
    for n in (*view.notices, *view.footer):
        out |= set(n)
    for s in view.sections:
        out |= set(s.title)
        for r in s.rows:
            for c in r:
                out |= set(c)
        for c in s.columns:
            out |= set(c)
        for p in s.paragraphs:
            out |= set(p)
        for ch in s.channels:
            out |= set(ch["name"]) | set(ch["how"])
        for b in s.bars:
            out |= set(b["label"]) | set(b["kwh"])
    return out


class BillFont:
    """A working font cut from the source for a character set, parsed once (module doc)."""

    def __init__(self, source: FontSource, chars: Iterable[str]) -> None:
        from fontTools import subset as ftsubset
        from fontTools.ttLib import TTFont
        from fpdf import FPDF

        self.chars = frozenset(chars) | frozenset(_BASE)
        font = TTFont(str(source.path), fontNumber=source.index, lazy=True)
        opts = ftsubset.Options()
        opts.name_IDs = ["*"]
        opts.notdef_outline = True
        opts.recommended_glyphs = True
        # layout tables: fpdf2 draws without shaping (Chinese needs none) and drops them anyway
        opts.layout_features = []
        opts.drop_tables += ["GSUB", "GPOS", "GDEF", "vhea", "vmtx", "VORG"]
        sub = ftsubset.Subsetter(opts)
        sub.populate(unicodes={ord(c) for c in self.chars})
        sub.subset(font)
        _to_truetype(font)
        buf = io.BytesIO()
        font.save(buf)
        font.close()
        self.data = buf.getvalue()
        # fpdf2 wants a file name: the working font lives in the temp directory, named by its bytes
        digest = hashlib.sha256(self.data).hexdigest()[:16]
        self.path = Path(tempfile.gettempdir()) / f"dianfei-billfont-{digest}.ttf"
        if not self.path.exists():
            tmp = self.path.with_suffix(f".{threading.get_ident()}.part")
            tmp.write_bytes(self.data)
            tmp.replace(self.path)
        proto = FPDF()
        proto.add_font("cjk", fname=str(self.path))
        self._proto: Any = proto.fonts["cjk"]

    def covers(self, chars: Iterable[str]) -> bool:
        return self.chars.issuperset(chars)

    def attach(self, pdf: Any) -> None:
        """Give ``pdf`` this font as family "cjk" without parsing it again."""
        from fontTools.ttLib import TTFont
        from fpdf.fonts import SubsetMap

        font: Any = copy.copy(self._proto)
        font.ttfont = TTFont(io.BytesIO(self.data), lazy=True, recalcTimestamp=False,
                             recalcBBoxes=False)
        font.i = len(pdf.fonts) + 1
        font.subset = SubsetMap(font)
        font.missing_glyphs = []
        font.biggest_size_pt = 0
        pdf.fonts["cjk"] = font


def _to_truetype(font: Any) -> None:
    """CFF outlines → TrueType (quadratic) outlines, in place, for a working font of a few
    hundred glyphs (~1 ms a glyph, once). Why: fpdf2 embeds a CID-keyed CFF font with its own
    CMap encoding, and text extractors (pypdf) then read "电 费 账 单" with a space between
    every character; a TrueType font is embedded Identity-H and extracts as "电费账单". Its
    per-document subset is cheaper too (no charstrings to interpret). Only the BMP cmap is kept:
    every character of a bill is in the BMP, and a smaller cmap is parsed faster per document."""
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import newTable
    from fontTools.ttLib.tables._c_m_a_p import CmapSubtable

    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        glyf[name] = pen.glyph()
    cmap = font.getBestCmap()
    font["loca"] = newTable("loca")
    font["glyf"] = glyf
    for table in ("CFF ", "VORG"):
        if table in font:
            del font[table]
    maxp = newTable("maxp")
    maxp.tableVersion = 0x00010000
    maxp.maxZones = 1
    for attr in ("maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs",
                 "maxStackElements", "maxSizeOfInstructions", "maxComponentElements"):
        setattr(maxp, attr, 0)
    font["maxp"] = maxp
    post = font["post"]
    post.formatType = 3.0  # no glyph names: nothing to parse per document
    font["head"].glyphDataFormat = 0
    font.sfntVersion = "\x00\x01\x00\x00"
    bmp = CmapSubtable.newSubtable(4)
    bmp.platformID, bmp.platEncID, bmp.language = 3, 1, 0
    bmp.cmap = {c: g for c, g in cmap.items() if c <= 0xFFFF}
    table = newTable("cmap")
    table.tableVersion = 0
    table.tables = [bmp]
    font["cmap"] = table


class FontCache:
    """The working fonts of one process: the last one is reused while it covers the text."""

    def __init__(self, source: FontSource | None = None) -> None:
        self._source = source
        self._font: BillFont | None = None

    @property
    def source(self) -> FontSource:
        if self._source is None:
            from dianfei.core.settings import load_settings

            cfg = load_settings().raw.get("billing", {}) or {}
            index = cfg.get("font_index")
            self._source = find_font(cfg.get("font"), int(index) if index is not None else None)
        return self._source

    def font_for(self, chars: set[str]) -> BillFont:
        with _LOCK:
            if self._font is None or not self._font.covers(chars):
                self._font = BillFont(self.source, base_characters() | chars)
            return self._font

    def prepare(self, views: Iterable[BillView]) -> BillFont:
        """One working font for a batch of documents (all their characters)."""
        chars: set[str] = set()
        for v in views:
            chars |= view_characters(v)
        return self.font_for(chars)


_DEFAULT_CACHE = FontCache()


def font_cache() -> FontCache:
    """The process's working fonts (shared by every bill drawn in it)."""
    return _DEFAULT_CACHE

# -- layout ----------------------------------------------------------------------------------------

_MARGIN = 15.0
_GREEN = (0, 136, 68)


def render_pdf(view: BillView, *, fonts: FontCache | None = None, author: str = "dianfei") -> bytes:
    """The A4 bill of ``view`` as PDF bytes."""
    from fpdf import FPDF

    cache = fonts or _DEFAULT_CACHE
    font = cache.font_for(view_characters(view))
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(_MARGIN, 14, _MARGIN)
    pdf.set_auto_page_break(auto=True, margin=14)
    pdf.set_title(f"{view.title} {view.subtitle}")
    pdf.set_author(author)
    pdf.set_creator("dianfei")
    pdf.set_lang(view.lang)
    font.attach(pdf)
    pdf.add_page()
    pdf.set_font("cjk", size=10)
    width = pdf.w - 2 * _MARGIN
    _header(pdf, view, width)
    for section in view.sections:
        _section(pdf, section, width)
    pdf.ln(2)
    pdf.set_font_size(7.5)
    pdf.set_text_color(100)
    for line in view.footer:
        _text(pdf, width, 3.8, line)
    pdf.set_text_color(0)
    return bytes(pdf.output())


def _header(pdf: Any, view: BillView, width: float) -> None:
    pdf.set_font_size(18)
    pdf.set_text_color(*_GREEN)
    pdf.cell(width * 0.55, 9, view.title)
    box_x, box_w = _MARGIN + width * 0.58, width * 0.42
    top = pdf.get_y()
    pdf.set_draw_color(*_GREEN)
    pdf.set_fill_color(238, 248, 241)
    pdf.rect(box_x, top, box_w, 20, style="DF")
    pdf.set_text_color(80)
    pdf.set_font_size(8)
    pdf.set_xy(box_x + 3, top + 1.5)
    pdf.cell(box_w - 6, 4, f"{view.labels['amount_due']} · {view.as_of}")
    pdf.set_xy(box_x + 3, top + 6)
    pdf.set_text_color(0)
    pdf.set_font_size(16)
    pdf.cell(box_w - 6, 7, f"{view.amount_due} {view.labels['yuan']}")
    pdf.set_font_size(8.5)
    pdf.set_xy(box_x + 3, top + 14)
    pdf.cell(box_w - 6, 4.5, f"{view.labels['due_on']}: {view.due_on}")
    pdf.set_xy(_MARGIN, top + 10)
    pdf.set_font_size(10)
    pdf.set_text_color(60)
    pdf.cell(width * 0.55, 6, view.subtitle)
    pdf.set_y(top + 22)
    pdf.set_text_color(170, 68, 0)
    for n in view.notices:
        pdf.set_font_size(9)
        _text(pdf, width, 4.5, n)
    pdf.set_text_color(0)


def _text(pdf: Any, width: float, height: float, text: str) -> None:
    """A line of text, wrapped only when it does not fit (fpdf2's line breaking is the
    costliest call of a bill; most lines fit). Chinese breaks between any two characters."""
    if pdf.get_string_width(text) <= width - 0.5:
        pdf.cell(width, height, text, new_x="LMARGIN", new_y="NEXT")
        return
    from fpdf.enums import WrapMode

    pdf.multi_cell(width, height, text, new_x="LMARGIN", new_y="NEXT", wrapmode=WrapMode.CHAR)


def _room(pdf: Any, height: float) -> None:
    if pdf.get_y() + height > pdf.page_break_trigger:
        pdf.add_page()


def _title(pdf: Any, text: str, width: float) -> None:
    _room(pdf, 14)
    pdf.ln(1.5)
    pdf.set_font_size(10.5)
    pdf.set_text_color(*_GREEN)
    pdf.cell(width, 6, text, new_x="LMARGIN", new_y="NEXT")
    pdf.set_draw_color(*_GREEN)
    pdf.line(_MARGIN, pdf.get_y(), _MARGIN + width, pdf.get_y())
    pdf.set_text_color(0)
    pdf.ln(0.8)


def _section(pdf: Any, s: Section, width: float) -> None:
    if s.key == "customer":
        _pairs(pdf, s.rows, width, columns=2)
        return
    _title(pdf, s.title, width)
    pdf.set_font_size(8.5)
    for p in s.paragraphs:
        _text(pdf, width, 4.2, p)
    if s.kind == "pairs":
        _pairs(pdf, s.rows, width, columns=1)
    elif s.kind == "table":
        _table(pdf, s, width)
    elif s.kind == "chart":
        _chart(pdf, s, width)
    elif s.kind == "pay":
        _pay(pdf, s, width)


def _pairs(pdf: Any, rows: list[list[str]], width: float, columns: int) -> None:
    pdf.set_font_size(8.5)
    col = width / columns
    label_w = col * (0.3 if columns == 2 else 0.45)
    for i, (label, value) in enumerate(rows):
        if columns == 2 and i % 2 == 1:
            pdf.set_x(_MARGIN + col)
        pdf.set_text_color(100)
        if columns == 1:
            # a label and its value side by side; a long value (how to apply) wraps
            _room(pdf, 9)
            pdf.cell(label_w, 4.4, _fit(pdf, label, label_w))
            pdf.set_text_color(0)
            if pdf.get_string_width(value) <= col - label_w - 0.5:
                pdf.cell(col - label_w, 4.4, value, new_x="LMARGIN", new_y="NEXT")
            else:  # a long value (how to apply for a policy) wraps under itself
                from fpdf.enums import WrapMode

                pdf.multi_cell(col - label_w, 4.4, value, new_x="LMARGIN", new_y="NEXT",
                               wrapmode=WrapMode.CHAR)
            continue
        pdf.cell(label_w, 4.8, label)
        pdf.set_text_color(0)
        pdf.cell(col - label_w, 4.8, _fit(pdf, value, col - label_w))
        if i % 2 == 1 or i == len(rows) - 1:
            pdf.ln(4.8)


def _fit(pdf: Any, text: str, width: float) -> str:
    """Cut a cell's text to its width (an address longer than the column) with an ellipsis."""
    if pdf.get_string_width(text) <= width - 1:
        return text
    while text and pdf.get_string_width(text + "…") > width - 1:
        text = text[:-1]
    return text + "…"


def _table(pdf: Any, s: Section, width: float) -> None:
    n = len(s.columns)
    first = width * (0.46 if n <= 4 else 0.28 if n == 5 else 0.16)
    rest = (width - first) / max(n - 1, 1)
    widths = [first] + [rest] * (n - 1)
    height = 4.6
    pdf.set_font_size(8)
    pdf.set_text_color(100)
    for ci, (c, w) in enumerate(zip(s.columns, widths, strict=True)):
        pdf.cell(w, height, c, align="R" if s.numeric[ci] else "L")
    pdf.ln(height)
    pdf.set_text_color(0)
    pdf.set_font_size(8.5)
    for ri, row in enumerate(s.rows):
        _room(pdf, height)
        kind = s.row_kinds[ri] if ri < len(s.row_kinds) else "line"
        if kind == "total":
            pdf.set_draw_color(120)
            pdf.line(_MARGIN, pdf.get_y(), _MARGIN + width, pdf.get_y())
        fill = kind == "group"
        if fill:
            pdf.set_fill_color(240)
        for ci, (cell, w) in enumerate(zip(row, widths, strict=True)):
            if (ri, ci) in s.marked:
                pdf.set_text_color(170, 68, 0)
            pdf.cell(w, height, _fit(pdf, cell, w), align="R" if s.numeric[ci] else "L", fill=fill)
            pdf.set_text_color(0)
        pdf.ln(height)


def _chart(pdf: Any, s: Section, width: float) -> None:
    """13 bars, the current period in full green, estimated periods hatched in orange."""
    height = 26.0
    _room(pdf, height + 10)
    top = pdf.get_y() + 4
    slot = width / 13
    bar_w = slot * 0.62
    pdf.set_font_size(6)
    for i, b in enumerate(s.bars):
        x = _MARGIN + i * slot + (slot - bar_w) / 2
        h = max(height * b["fraction"], 0.3)
        if b["estimated"]:
            pdf.set_fill_color(224, 176, 112)
        elif b["current"]:
            pdf.set_fill_color(*_GREEN)
        else:
            pdf.set_fill_color(140, 201, 168)
        pdf.rect(x, top + height - h, bar_w, h, style="F")
        pdf.set_xy(_MARGIN + i * slot, top + height - h - 3)
        pdf.cell(slot, 3, b["kwh"].split(".")[0], align="C")
        pdf.set_xy(_MARGIN + i * slot, top + height + 0.5)
        pdf.cell(slot, 3, b["label"], align="C")
    pdf.set_draw_color(120)
    pdf.line(_MARGIN, top + height, _MARGIN + width, top + height)
    pdf.set_xy(_MARGIN, top + height + 4)


def _pay(pdf: Any, s: Section, width: float) -> None:
    from dianfei.billing.qr import qr_png

    online = [c for c in s.channels if c["qr_payload"]]
    offline = [c for c in s.channels if not c["qr_payload"]]
    size = 24.0
    _room(pdf, size + 12)
    top = pdf.get_y() + 1
    col = width / 4
    for i, c in enumerate(online[:2]):
        x = _MARGIN + i * col
        # one 1-bit image per code (drawing ~400 rectangles cost more than the rest of the page)
        pdf.image(qr_png(c["qr_payload"]), x=x, y=top, w=size, h=size)
        pdf.set_font_size(8.5)
        pdf.set_xy(x, top + size + 0.5)
        pdf.cell(col, 4, c["name"])
        pdf.set_font_size(7)
        pdf.set_xy(x, top + size + 4.5)
        pdf.cell(col, 3.5, c["how"])
    pdf.set_xy(_MARGIN + 2 * col, top)
    for c in offline:
        pdf.set_x(_MARGIN + 2 * col)
        pdf.set_font_size(8.5)
        pdf.cell(2 * col, 4.2, c["name"], new_x="LEFT", new_y="NEXT")
        pdf.set_x(_MARGIN + 2 * col)
        pdf.set_font_size(7)
        pdf.set_text_color(90)
        pdf.multi_cell(2 * col, 3.5, c["how"], new_x="LEFT", new_y="NEXT")
        pdf.set_text_color(0)
    pdf.set_xy(_MARGIN, max(pdf.get_y(), top + size + 9))
