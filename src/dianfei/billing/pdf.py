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
4. each document embeds only the glyphs it shows, assembled from the working font's glyph
   bytes (``_FontParts``: ~0.5 ms) instead of fpdf2's fontTools subset (~10 ms), with glyph
   number = character code (CIDToGIDMap /Identity); the PDF's ToUnicode map keeps every
   character extractable, those beyond the BMP (rare characters of names) included.

The page itself: ``_cell`` writes the text operators fpdf2's ``cell`` would, without its
per-cell fragment machinery, and ``_qr`` draws the payment codes as vector paths
(docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import copy
import hashlib
import io
import struct
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dianfei.billing.view import WORDS_FILE, BillView, Section
from dianfei.core.errors import ValidationError

#: characters every bill may print besides its words and customer text
_BASE = "".join(chr(c) for c in range(0x20, 0x7F)) + "×–—≤≥·%（），。：；、“”《》￥元—…"
_LOCK = threading.Lock()
#: characters a new working font keeps from the one it replaces, at most (FontCache.font_for)
_KEEP_MAX = 3000


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
        self._parts = _FontParts(self.data)
        self._units: dict[str, int] = {}

    def covers(self, chars: Iterable[str]) -> bool:
        return self.chars.issuperset(chars)

    def attach(self, pdf: Any) -> None:
        """Give ``pdf`` this font as family "cjk" without parsing it again. Write the document
        with :func:`output`, which embeds the glyphs it shows (``embed``)."""
        from fontTools.ttLib import TTFont
        from fpdf.fonts import SubsetMap

        font: Any = copy.copy(self._proto)
        # a fontTools object of its own (reading only the table directory: lazy), so fpdf2's
        # own subsetting would still be right for a document written without ``output``
        font.ttfont = TTFont(io.BytesIO(self.data), lazy=True, recalcTimestamp=False,
                             recalcBBoxes=False)
        # the descriptor becomes a PDF object of this document (fpdf2 gives it an id)
        font.desc = copy.copy(self._proto.desc)
        font.i = len(pdf.fonts) + 1
        font.subset = SubsetMap(font)
        font.missing_glyphs = []
        font.biggest_size_pt = 0
        pdf.fonts["cjk"] = font
        fonts = pdf.__dict__.setdefault("_dianfei_fonts", {})
        fonts[font.i] = self
        # this document's character codes as hex (``_codes``), and the working font's advance
        # widths of whole strings, shared by every document of this font (``_width``); kept on
        # the document, as fpdf2's font objects take no new attributes (slots)
        pdf.__dict__.setdefault("_dianfei_codes", {})[font.i] = {}
        pdf.__dict__.setdefault("_dianfei_units", {})[font.i] = self._units

    def embed(self, gids: list[int | None]) -> bytes:
        """A TrueType font whose glyph *i* is the working font's glyph ``gids[i]`` (None: an
        empty glyph), so that a PDF can map its character codes to glyphs one to one."""
        return self._parts.font(gids)


class _FontParts:
    """The working font cut into what a document's font is assembled from: the bytes of each
    glyph outline, each glyph's metrics and the tables every document's font shares.

    Why by hand and not with fontTools' subsetter: subsetting a parsed font costs ~10 ms a
    document (parse the cmap and glyph names, prune, compile every table), about the whole
    12 ms CPU budget of a bill. The working font has simple TrueType glyphs only (``_to_truetype``
    draws outlines, never components), so a subset is the chosen glyphs' bytes one after the
    other with a new index (``loca``) and metrics (``hmtx``): ~0.5 ms."""

    #: tables copied as they are (their maxima and bounding boxes are those of the working font,
    #: a superset of any document's glyphs: valid, only not the tightest values). No ``cmap``:
    #: the PDF maps its codes to glyphs itself (CIDToGIDMap) and to Unicode (ToUnicode).
    SHARED = ("OS/2", "name", "post", "cvt ", "fpgm", "prep", "gasp")

    def __init__(self, data: bytes) -> None:
        count = struct.unpack_from(">H", data, 4)[0]
        tables: dict[str, bytes] = {}
        for i in range(count):
            tag, _sum, offset, length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
            tables[tag.decode("latin-1")] = data[offset:offset + length]
        head, maxp, hhea = tables["head"], tables["maxp"], tables["hhea"]
        n = struct.unpack_from(">H", maxp, 4)[0]
        if struct.unpack_from(">h", head, 50)[0] == 1:
            offsets = list(struct.unpack_from(f">{n + 1}I", tables["loca"]))
        else:
            offsets = [2 * o for o in struct.unpack_from(f">{n + 1}H", tables["loca"])]
        glyf = tables["glyf"]
        self.glyphs = [glyf[offsets[i]:offsets[i + 1]] for i in range(n)]
        for g, outline in enumerate(self.glyphs):
            if len(outline) >= 2 and struct.unpack_from(">h", outline)[0] < 0:
                # a composite glyph refers to others by index: copying it as is would be wrong
                raise ValueError(f"bill font: glyph {g} is composite; the working font must "
                                 "have simple glyphs only (pdf._to_truetype)")
        hmtx, long_metrics = tables["hmtx"], struct.unpack_from(">H", hhea, 34)[0]
        metrics = [struct.unpack_from(">Hh", hmtx, 4 * i) for i in range(long_metrics)]
        last = metrics[-1][0]
        metrics += [(last, lsb) for lsb in
                    struct.unpack_from(f">{n - long_metrics}h", hmtx, 4 * long_metrics)]
        self.metrics = [struct.pack(">Hh", *m) for m in metrics]
        self.head = bytearray(head)
        struct.pack_into(">I", self.head, 8, 0)  # checkSumAdjustment: set per font
        struct.pack_into(">h", self.head, 50, 1)  # long (32-bit) loca offsets
        self.maxp, self.hhea = bytearray(maxp), bytearray(hhea)
        self.shared = {t: tables[t] for t in self.SHARED if t in tables}

    def font(self, gids: list[int | None]) -> bytes:
        n = len(gids)
        glyf = bytearray()
        loca = [0]
        hmtx = bytearray()
        for g in gids:
            if g is not None:
                glyf += self.glyphs[g]
                glyf += b"\0" * (-len(glyf) % 4)
                hmtx += self.metrics[g]
            else:
                hmtx += b"\0\0\0\0"
            loca.append(len(glyf))
        maxp, hhea = bytearray(self.maxp), bytearray(self.hhea)
        struct.pack_into(">H", maxp, 4, n)
        struct.pack_into(">H", hhea, 34, n)
        tables = {**self.shared, "head": bytes(self.head), "maxp": bytes(maxp),
                  "hhea": bytes(hhea), "hmtx": bytes(hmtx), "glyf": bytes(glyf),
                  "loca": struct.pack(f">{n + 1}I", *loca)}
        return _sfnt(tables)


def _checksum(data: bytes) -> int:
    """The OpenType checksum (the sum of big-endian 32-bit words, modulo 2³²), by numpy: a
    bill's font is ~50 kB, 0.3 ms a document as Python integers."""
    import numpy as np

    return int(np.frombuffer(data, ">u4").sum(dtype=np.uint64)) & 0xFFFFFFFF


def _sfnt(tables: dict[str, bytes]) -> bytes:
    """An OpenType (TrueType outlines) file of ``tables``, with its checksums."""
    tags = sorted(tables)
    n = len(tags)
    selector = n.bit_length() - 1
    search = 16 << selector
    out = bytearray(struct.pack(">IHHHH", 0x00010000, n, search, selector, n * 16 - search))
    offset = 12 + 16 * n
    body = bytearray()
    head_at = 0
    for tag in tags:
        data = tables[tag]
        padded = data + b"\0" * (-len(data) % 4)
        out += struct.pack(">4sIII", tag.encode("latin-1"), _checksum(padded), offset, len(data))
        if tag == "head":
            head_at = offset
        body += padded
        offset += len(padded)
    out += body
    struct.pack_into(">I", out, head_at + 8, (0xB1B0AFBA - _checksum(bytes(out))) & 0xFFFFFFFF)
    return bytes(out)


def _to_truetype(font: Any) -> None:
    """CFF outlines → TrueType (quadratic) outlines, in place, for a working font of a few
    hundred glyphs (~1 ms a glyph, once). Why: fpdf2 embeds a CID-keyed CFF font with its own
    CMap encoding, and text extractors (pypdf) then read "电 费 账 单" with a space between
    every character; a TrueType font is embedded Identity-H and extracts as "电费账单". Its
    per-document subset is cheaper too (no charstrings to interpret). The cmap is rebuilt as one
    (3, 1) table for the BMP, plus a (3, 10) table only when the text has characters beyond it
    (rare characters of names): the source's other cmap tables are left out."""
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
    if len(bmp.cmap) < len(cmap):
        # a name or an address with a character beyond the BMP (𠮷, 𬱖: rare characters of
        # given names are in CJK extensions B–G): a full (3, 10) table, or fpdf2 has no glyph
        # for it and leaves the character out of the bill
        full = CmapSubtable.newSubtable(12)
        full.platformID, full.platEncID, full.language = 3, 10, 0
        full.cmap = dict(cmap)
        table.tables.append(full)
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
                # the new font keeps the old one's characters: a bill run's names and
                # addresses share most of theirs, so after a few chunks it covers the next
                # ones too and is not cut again (~1 s a cut). Up to a bound: cutting costs
                # ~1 ms a glyph, too long for one web request beyond a few thousand.
                kept: frozenset[str] = frozenset()
                if self._font is not None and len(self._font.chars) <= _KEEP_MAX:
                    kept = self._font.chars
                self._font = BillFont(self.source, base_characters() | kept | chars)
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


def output(pdf: Any) -> bytes:
    """The document's bytes; its bill fonts embedded by :meth:`BillFont.embed` (see
    ``_FontParts``), every other font (none in a bill today) by fpdf2 itself."""
    return bytes(pdf.output(output_producer_class=_producer_class()))


_PRODUCER: list[type] = []


def _producer_class() -> type:
    """fpdf2's output producer with the bill font written as a CID-keyed TrueType font whose
    glyph numbers are the PDF's character codes (CIDToGIDMap /Identity): the same PDF objects
    fpdf2 writes for a TrueType font, built from ``BillFont.embed`` instead of fontTools'
    subsetter (fpdf2 2.8, ``OutputProducer._add_fonts``; the lock file pins the version)."""
    if _PRODUCER:
        return _PRODUCER[0]
    from fpdf.output import CIDSystemInfo, OutputProducer, PDFFont, PDFFontStream
    from fpdf.syntax import Name, PDFArray, PDFContentStream

    class _FontStream(PDFFontStream):
        # zlib level 1, not 6: a bill's font (~50 kB of glyph outlines) in 0.75 ms instead of
        # 1.4 ms — ~7 % of a bill's CPU for ~1.8 kB (4 %) more a file (docs/benchmarks.md)
        _COMPRESSION_LEVEL = 1

    class BillOutput(OutputProducer):
        def _add_fonts(self, *args: Any, **kwargs: Any) -> Any:
            ours: dict[int, BillFont] = getattr(self.fpdf, "_dianfei_fonts", {})
            if not ours or self.fpdf._compliance:  # PDF/A wants more (a CIDSet): fpdf2's way
                return super()._add_fonts(*args, **kwargs)
            registry = self.fpdf.fonts  # fpdf2's own dict: the others only, for a moment
            every = dict(registry)
            for key in [k for k, f in every.items() if f.i in ours]:
                del registry[key]
            try:
                objs = super()._add_fonts(*args, **kwargs)
            finally:
                registry.clear()
                registry.update(every)
            for font in sorted(every.values(), key=lambda f: f.i):
                if font.i in ours:
                    objs[font.i] = self._bill_font(font, ours[font.i])
            return objs

        def _bill_font(self, font: Any, source: BillFont) -> Any:
            if font.missing_glyphs:
                # fpdf2 leaves such a character out of the page: a bill must not lose a letter
                # of a name without saying so
                chars = ", ".join(f"{chr(c)!r} (U+{c:04X})" for c in font.missing_glyphs[:10])
                raise ValidationError(f"the bill font has no glyph for {chars}: configure "
                                      "a font that has them ([billing] font)")
            used = [(cid, g) for g, cid in font.subset.items() if g is not None]
            gids: list[int | None] = [None] * (max(cid for cid, _ in used) + 1)
            for cid, glyph in used:
                gids[cid] = 0 if glyph.glyph_name == ".notdef" else glyph.glyph_id
            gids[0] = 0 if gids[0] is None else gids[0]
            fontname = f"MPDFAA+{font.name}"
            composite = PDFFont(subtype="Type0", base_font=fontname, encoding="Identity-H")
            self._add_pdf_obj(composite, "fonts")
            widths = [font.desc.missing_width] * len(gids)
            for cid, glyph in used:
                widths[cid] = glyph.glyph_width
            # the codes are 0…n-1: one run of widths ("c [w0 w1 …]")
            cid_font = PDFFont(subtype="CIDFontType2", base_font=fontname,
                               d_w=font.desc.missing_width,
                               w=f"[0 [{' '.join(str(int(w)) for w in widths)}]]")
            self._add_pdf_obj(cid_font, "fonts")
            composite.descendant_fonts = PDFArray([cid_font])
            bf_char = [f"<{cid:04X}> <{_utf16(glyph.unicode)}>\n"
                       for glyph, cid in font.subset.items()
                       if glyph is not None and isinstance(glyph.unicode, tuple)
                       and glyph.unicode]
            to_unicode = PDFContentStream((
                "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
                "/CIDSystemInfo\n<</Registry (Adobe)\n/Ordering (UCS)\n/Supplement 0\n>> def\n"
                "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
                "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
                f"{_cmap_blocks(bf_char, 'bfchar')}"
                "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend"
            ).encode("latin-1"))
            self._add_pdf_obj(to_unicode, "fonts")
            composite.to_unicode = to_unicode
            system_info = CIDSystemInfo()
            self._add_pdf_obj(system_info, "fonts")
            cid_font.c_i_d_system_info = system_info
            descriptor = font.desc
            descriptor.font_name = Name(fontname)
            self._add_pdf_obj(descriptor, "fonts")
            cid_font.font_descriptor = descriptor
            # the embedded font's glyph i is the glyph of code i: no 128 kB map to write
            cid_font.c_i_d_to_g_i_d_map = Name("Identity")  # type: ignore[assignment]
            stream = _FontStream(contents=source.embed(gids))
            self._add_pdf_obj(stream, "fonts")
            descriptor.font_file2 = stream
            font.subset.pick.cache_clear()
            font.subset.get_glyph.cache_clear()
            return composite

    _PRODUCER.append(BillOutput)
    return BillOutput


def _cmap_blocks(entries: list[str], operator: str) -> str:
    """CMap mappings in blocks of at most 100 (Adobe Technical Note #5014)."""
    return "".join(f"{len(entries[i:i + 100])} begin{operator}\n{''.join(entries[i:i + 100])}"
                   f"end{operator}\n" for i in range(0, len(entries), 100))


def _utf16(codes: tuple[int, ...]) -> str:
    """A ToUnicode destination: UTF-16BE hex, a surrogate pair beyond the BMP. Kept per
    character: every bill maps the same few hundred."""
    return "".join(map(_utf16_of, codes))


@lru_cache(maxsize=65536)
def _utf16_of(code: int) -> str:
    return chr(code).encode("utf-16-be").hex().upper()


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
    return output(pdf)


def _width(pdf: Any, text: str) -> float:
    """fpdf2's ``get_string_width`` for the bill font (no markdown, spacing or stretching):
    the glyphs' advance widths at the current size, in mm. The sum of a string's widths (font
    units) is kept for the working font: a bill measures its ~150 strings twice or more
    (does it fit, then where does it go), and the labels are the same on every bill."""
    font = pdf.current_font
    known: dict[str, int] = pdf._dianfei_units[font.i]
    units = known.get(text)
    if units is None:
        cw = font.cw
        units = sum(cw[ord(c)] for c in text)
        if len(known) > 200_000:  # a long bill run's amounts and names: start again
            known.clear()
        known[text] = units
    return float(units * pdf.font_size_pt * 0.001 / pdf.k)


def _codes(pdf: Any, font: Any, text: str) -> str:
    """The document's character codes of ``text`` as hex: fpdf2's ``subset.pick`` gives each
    character its code on first use; each character's is then kept as hex for the document
    (a bill writes ~3,000 characters in ~250 distinct ones). A character without a glyph
    picks None: fpdf2 leaves it out, and ``output`` refuses the document
    (BillOutput._bill_font), as it does for fpdf2's own cells."""
    codes: dict[str, str] = pdf._dianfei_codes[font.i]
    try:
        return "".join([codes[c] for c in text])
    except KeyError:
        pick = font.subset.pick
        for c in text:
            if c not in codes:
                code = pick(ord(c))
                codes[c] = f"{code:04X}" if code else ""
        return "".join([codes[c] for c in text])


def _cell(pdf: Any, w: float, h: float, text: str, align: str = "L", fill: bool = False,
          new_x: str = "RIGHT", next_line: bool = False, spacing: float = 0.0) -> None:
    """fpdf2's ``cell`` for what a bill draws — one line of text in the current font, size and
    colour, aligned L, R or C, an optional background — writing the same PDF operators
    (fpdf2 2.8, ``_render_styled_text_line``) at a sixth of the cost: fpdf2 splits every
    cell's text into styled fragments and copies its graphics state for each; a bill has
    ~120 cells, and this was a third of its CPU (docs/benchmarks.md). ``new_x``: RIGHT (x
    after the cell), LMARGIN or LEFT (x unchanged); ``next_line``: y below the cell;
    ``spacing``: extra width of each space in mm (a justified line of ``_wrap``), written as
    fpdf2 writes it — a TJ adjustment before each space, as ``Tw`` does not apply to two-byte
    codes."""
    pdf._perform_page_break_if_need_be(h)
    k, x, y = pdf.k, pdf.x, pdf.y
    ops = []
    if fill:
        ops.append(f"{x * k:.2f} {(pdf.h - y) * k:.2f} {w * k:.2f} {-h * k:.2f} re f")
    wrap = False
    if text:
        font, size_pt = pdf.current_font, pdf.font_size_pt
        if size_pt > font.biggest_size_pt:
            font.biggest_size_pt = size_pt
        if not pdf.current_font_is_set_on_page:
            pdf._out(pdf._set_font_for_page(font, size_pt))
        width = _width(pdf, text)
        if align == "R":
            dx = w - pdf.c_margin - width
        elif align == "C":
            dx = (w - width) / 2
        else:
            dx = pdf.c_margin
        ops.append(f"BT {(x + dx) * k:.2f} "
                   f"{(pdf.h - y - 0.5 * h - 0.3 * size_pt / k) * k:.2f} Td")
        if pdf.text_color != pdf.fill_color:
            # text is painted with the fill colour: set it inside q … Q, as fpdf2 does
            ops.append(pdf.text_color.serialize().lower())
            wrap = True
        if spacing and " " in text:
            space = _codes(pdf, font, " ")
            adj = f"{-(spacing * k) * 1000 / size_pt:.3f}"
            words = [_codes(pdf, font, word) for word in text.split(" ")]
            ops.append(f"[<{words[0]}> "
                       + " ".join(f"{adj}<{space}{wd}>" for wd in words[1:]) + "] TJ ET")
        else:
            ops.append(f"<{_codes(pdf, font, text)}> Tj ET")
    if ops:
        body = " ".join(ops)
        pdf._out(f"q {body} Q" if wrap else body)
    pdf._lasth = h
    if new_x == "RIGHT":
        pdf.x = x + w
    elif new_x == "LMARGIN":
        pdf.x = pdf.l_margin
    if next_line:
        pdf.y = y + h


def _header(pdf: Any, view: BillView, width: float) -> None:
    pdf.set_font_size(18)
    pdf.set_text_color(*_GREEN)
    _cell(pdf, width * 0.55, 9, view.title)
    box_x, box_w = _MARGIN + width * 0.58, width * 0.42
    top = pdf.get_y()
    pdf.set_draw_color(*_GREEN)
    pdf.set_fill_color(238, 248, 241)
    pdf.rect(box_x, top, box_w, 20, style="DF")
    pdf.set_text_color(80)
    pdf.set_font_size(8)
    pdf.set_xy(box_x + 3, top + 1.5)
    _cell(pdf, box_w - 6, 4, f"{view.labels['amount_due']} · {view.as_of}")
    pdf.set_xy(box_x + 3, top + 6)
    pdf.set_text_color(0)
    pdf.set_font_size(16)
    _cell(pdf, box_w - 6, 7, f"{view.amount_due} {view.labels['yuan']}")
    pdf.set_font_size(8.5)
    pdf.set_xy(box_x + 3, top + 14)
    _cell(pdf, box_w - 6, 4.5, f"{view.labels['due_on']}: {view.due_on}")
    pdf.set_xy(_MARGIN, top + 10)
    pdf.set_font_size(10)
    pdf.set_text_color(60)
    _cell(pdf, width * 0.55, 6, view.subtitle)
    pdf.set_y(top + 22)
    pdf.set_text_color(170, 68, 0)
    for n in view.notices:
        pdf.set_font_size(9)
        _text(pdf, width, 4.5, n)
    pdf.set_text_color(0)


def _text(pdf: Any, width: float, height: float, text: str) -> None:
    """A line of text, wrapped only when it does not fit (fpdf2's line breaking is the
    costliest call of a bill; most lines fit). Chinese breaks between any two characters."""
    if _width(pdf, text) <= width - 0.5:
        _cell(pdf, width, height, text, new_x="LMARGIN", next_line=True)
        return
    _wrap(pdf, width, height, text, new_x="LMARGIN")


#: what makes fpdf2's line breaking more than "as many characters as fit" (fpdf2 2.8,
#: line_break.py): its other breaking spaces (tab, U+2000–U+200B, U+205F, U+3000), no-break
#: and soft hyphens, line and page breaks; such text is left to fpdf2 (``_wrap``)
_SPECIAL = frozenset("\t\n\r\f\u00a0\u00ad\u205f\u3000"
                     + "".join(map(chr, range(0x2000, 0x200C))))


def _wrap(pdf: Any, w: float, h: float, text: str, new_x: str) -> None:
    """fpdf2's ``multi_cell(w, h, text, new_x=new_x, new_y="NEXT", wrapmode=CHAR)`` — a
    line breaks before the first character that does not fit (a space there is dropped,
    spaces before it trimmed), every line but the last justified — written line by line by
    ``_cell``: fpdf2 turns the text into styled fragments and copies its graphics state for
    each, ~0.3 ms a paragraph and ~40 % of a bill in English, whose notes wrap
    (tests/billing/test_bill_pdf_batch.py compares the two). Text with other spaces, soft
    hyphens or line breaks goes to fpdf2 itself."""
    cw = pdf.current_font.cw
    scale = pdf.font_size_pt * 0.001
    k = pdf.k
    room = w - 2 * pdf.c_margin
    if not _SPECIAL.isdisjoint(text):
        from fpdf.enums import WrapMode

        pdf.multi_cell(w, h, text, new_x=new_x, new_y="NEXT", wrapmode=WrapMode.CHAR)
        return
    lines: list[tuple[str, int]] = []  # each line and its number of spaces (fpdf2 counts
    start, units, i, n = 0, 0, 0, len(text)  # the trimmed ones too: its justification does)
    while i < n:
        c = text[i]
        unit = cw[ord(c)]
        # the same floating-point expressions as fpdf2 (Fragment.get_width, FloatTolerance)
        if (units * scale / k + unit * scale / k) - room > 1e-9:
            if c == " ":
                lines.append((text[start:i], text.count(" ", start, i)))
                start = i = i + 1
            else:
                line = text[start:i].rstrip(" ")
                if not line:  # not one character fits: fpdf2's own answer (an error)
                    from fpdf.enums import WrapMode

                    pdf.multi_cell(w, h, text, new_x=new_x, new_y="NEXT",
                                   wrapmode=WrapMode.CHAR)
                    return
                lines.append((line, text.count(" ", start, i)))
                start = i
            units = 0
            continue
        units += unit
        i += 1
    if units:
        lines.append((text[start:], 0))
    x = pdf.x
    for j, (line, spaces) in enumerate(lines):
        last = j == len(lines) - 1
        spacing = 0.0
        if spaces and not last:
            spacing = (w - 2 * pdf.c_margin - _width(pdf, line)) / spaces
        _cell(pdf, w, h, line, new_x="LEFT", next_line=True, spacing=spacing)
        pdf.x = x
    if new_x == "LMARGIN":
        pdf.x = pdf.l_margin


def _room(pdf: Any, height: float) -> None:
    if pdf.get_y() + height > pdf.page_break_trigger:
        pdf.add_page()


def _title(pdf: Any, text: str, width: float) -> None:
    _room(pdf, 14)
    pdf.ln(1.5)
    pdf.set_font_size(10.5)
    pdf.set_text_color(*_GREEN)
    _cell(pdf, width, 6, text, new_x="LMARGIN", next_line=True)
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
            _cell(pdf, label_w, 4.4, _fit(pdf, label, label_w))
            pdf.set_text_color(0)
            if _width(pdf, value) <= col - label_w - 0.5:
                _cell(pdf, col - label_w, 4.4, value, new_x="LMARGIN", next_line=True)
            else:  # a long value (how to apply for a policy) wraps under itself
                _wrap(pdf, col - label_w, 4.4, value, new_x="LMARGIN")
            continue
        _cell(pdf, label_w, 4.8, label)
        pdf.set_text_color(0)
        _cell(pdf, col - label_w, 4.8, _fit(pdf, value, col - label_w))
        if i % 2 == 1 or i == len(rows) - 1:
            pdf.ln(4.8)


def _fit(pdf: Any, text: str, width: float) -> str:
    """Cut a cell's text to its width (an address longer than the column) with an ellipsis."""
    if _width(pdf, text) <= width - 1:
        return text
    while text and _width(pdf, text + "…") > width - 1:
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
        _cell(pdf, w, height, c, align="R" if s.numeric[ci] else "L")
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
            _cell(pdf, w, height, _fit(pdf, cell, w), align="R" if s.numeric[ci] else "L", fill=fill)
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
        _cell(pdf, slot, 3, b["kwh"].split(".")[0], align="C")
        pdf.set_xy(_MARGIN + i * slot, top + height + 0.5)
        _cell(pdf, slot, 3, b["label"], align="C")
    pdf.set_draw_color(120)
    pdf.line(_MARGIN, top + height, _MARGIN + width, top + height)
    pdf.set_xy(_MARGIN, top + height + 4)


def _qr(pdf: Any, payload: str, x: float, y: float, size: float) -> None:
    """The payload's QR code as one vector path, drawn in module units (a ``cm`` scales one
    module to its size, y downwards, as the rows go): a white square (the quiet zone
    included), then one rectangle per run of dark modules in a row, filled at once — the
    drawing of the web bill's SVG (qr.qr_svg). Integer coordinates: neighbouring rows meet
    exactly, and the path is short to write. The runs are found by numpy and written by one
    %-format (~0.05 ms a code; a 1-bit image cost ~4 ms: a PNG written, read back and
    re-encoded by fpdf2). As sharp as the printer can print."""
    import numpy as np

    from dianfei.billing.qr import BORDER, qr_modules

    rows_of_modules = qr_modules(payload)
    width = len(rows_of_modules)
    modules = np.frombuffer(b"".join(rows_of_modules), np.uint8)
    n = width + 2 * BORDER
    # a light module before and after each row: a run starts where a row steps up, ends
    # where it steps down (row-major, so the runs come row by row, left to right)
    padded = np.zeros((width, width + 2), np.int8)
    padded[:, 1:-1] = modules.reshape(width, width)
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)
    ends = np.nonzero(step == -1)[1]
    runs = np.empty((len(rows), 3), np.int64)
    runs[:, 0] = starts + BORDER
    runs[:, 1] = rows + BORDER
    runs[:, 2] = ends - starts
    scale = size / n * pdf.k
    pdf._out(f"q {scale:.4f} 0 0 {-scale:.4f} {x * pdf.k:.2f} {(pdf.h - y) * pdf.k:.2f} cm "
             f"1 g 0 0 {n} {n} re f 0 g "
             + ("%d %d %d 1 re " * len(runs)) % tuple(runs.ravel().tolist()) + "f Q")


def _pay(pdf: Any, s: Section, width: float) -> None:
    online = [c for c in s.channels if c["qr_payload"]]
    offline = [c for c in s.channels if not c["qr_payload"]]
    size = 24.0
    _room(pdf, size + 12)
    top = pdf.get_y() + 1
    col = width / 4
    for i, c in enumerate(online[:2]):
        x = _MARGIN + i * col
        _qr(pdf, c["qr_payload"], x, top, size)
        pdf.set_font_size(8.5)
        pdf.set_xy(x, top + size + 0.5)
        _cell(pdf, col, 4, c["name"])
        pdf.set_font_size(7)
        pdf.set_xy(x, top + size + 4.5)
        _cell(pdf, col, 3.5, c["how"])
    pdf.set_xy(_MARGIN + 2 * col, top)
    for c in offline:
        pdf.set_x(_MARGIN + 2 * col)
        pdf.set_font_size(8.5)
        _cell(pdf, 2 * col, 4.2, c["name"], new_x="LEFT", next_line=True)
        pdf.set_x(_MARGIN + 2 * col)
        pdf.set_font_size(7)
        pdf.set_text_color(90)
        if _width(pdf, c["how"]) <= 2 * col - 2 * pdf.c_margin:
            # one line (every channel's today): what multi_cell writes for it, 10× cheaper
            _cell(pdf, 2 * col, 3.5, c["how"], new_x="LEFT", next_line=True)
        else:  # breaks between words (English): fpdf2's word wrapping
            pdf.multi_cell(2 * col, 3.5, c["how"], new_x="LEFT", new_y="NEXT")
        pdf.set_text_color(0)
    pdf.set_xy(_MARGIN, max(pdf.get_y(), top + size + 9))
