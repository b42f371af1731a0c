"""Letters as PDF (纸质通知书): A4 documents with Chinese text, for printing and posting.

Library: **fpdf2** (pure Python, LGPL). It embeds OpenType fonts through fontTools, including
CFF-outline fonts inside a TrueType Collection — exactly what Debian's ``fonts-noto-cjk``
ships (``NotoSansCJK-Regular.ttc``, face "Noto Sans CJK SC") — and subsets them, so a one-page
letter is about 10 kB. ReportLab takes TrueType outlines only (no CFF); WeasyPrint needs Pango
and friends from Debian. The only Debian package CI needs is ``fonts-noto-cjk`` (or configure
``[notify.letters] font`` to another CJK font).

A document is a list of blocks (:class:`Heading`, :class:`Paragraph`, :class:`Line`,
:class:`Table`, :class:`Spacer`); :func:`render_pdf` lays them out. :func:`parse_markup` turns the
small text markup the letter template writes into blocks:

    # Title                       a centred heading
    | label | value |             a table row (consecutive rows make one table)
    @right text / @to text        a right-aligned line / an address line
    @sign text / @small text      a right-aligned signature line / small print
    a blank line                  ends a paragraph

``render_pdf`` is meant to be reused (e.g. billing's ``bill show --format pdf``): build blocks
from the bill document and call it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dianfei.core.errors import ValidationError
from dianfei.notify.channels import Message, SendError, SendResult

#: where Debian's fonts-noto-cjk puts the CJK faces (CFF outlines in a collection)
DEFAULT_FONTS = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"),
)


@dataclass(frozen=True)
class Heading:
    text: str
    size: float = 18


@dataclass(frozen=True)
class Paragraph:
    text: str
    size: float = 11


@dataclass(frozen=True)
class Line:
    """One line, aligned left (L), right (R) or centred (C)."""

    text: str
    align: str = "L"
    size: float = 11


@dataclass(frozen=True)
class Table:
    """Rows of cells; the first column is taken as labels (drawn in grey)."""

    rows: tuple[tuple[str, ...], ...]
    size: float = 11
    widths: tuple[float, ...] | None = None
    header: bool = False


@dataclass(frozen=True)
class Spacer:
    height: float = 4


Block = Heading | Paragraph | Line | Table | Spacer


@dataclass(frozen=True)
class Font:
    """A font file and, for a collection (.ttc), the index of the face to use."""

    path: Path
    index: int = 0


@lru_cache(maxsize=4)
def _face_index(path: str, wanted: str) -> int:
    """The index of the face named ``wanted`` in a font collection (0 if not found)."""
    from fontTools.ttLib import TTCollection

    coll = TTCollection(path, lazy=True)
    try:
        for i, face in enumerate(coll.fonts):
            if face["name"].getDebugName(4) == wanted:
                return i
    finally:
        coll.close()
    return 0


def find_font(path: str | Path | None = None, index: int | None = None, *,
              used_for: str = "letters", setting: str = "[notify.letters] font") -> Font:
    """The CJK font PDFs embed: the configured one, else Noto Sans CJK SC from fonts-noto-cjk.
    ``used_for`` and ``setting`` name, in the error, what needed it and where to configure it
    (letters, bills, reports share this lookup)."""
    candidates = [Path(path)] if path else list(DEFAULT_FONTS)
    for p in candidates:
        if p.exists():
            if index is None:
                index = _face_index(str(p), "Noto Sans CJK SC") if p.suffix.lower() == ".ttc" else 0
            return Font(p, index)
    raise ValidationError(
        f"no CJK font for {used_for} at {', '.join(str(c) for c in candidates)}: install the "
        f"Debian package fonts-noto-cjk or set {setting}")


def parse_markup(text: str) -> list[Block]:
    """The letter template's markup → blocks (see the module docstring)."""
    blocks: list[Block] = []
    para: list[str] = []
    rows: list[tuple[str, ...]] = []

    def flush() -> None:
        if para:
            blocks.append(Paragraph(" ".join(para)))
            para.clear()
        if rows:
            blocks.append(Table(tuple(rows)))
            rows.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
            if blocks and not isinstance(blocks[-1], Spacer):
                blocks.append(Spacer(3))
            continue
        if line.startswith("|") and line.endswith("|") and len(line) > 1:
            if para:
                flush()
            rows.append(tuple(c.strip() for c in line[1:-1].split("|")))
            continue
        if rows:
            flush()
        if line.startswith("# "):
            flush()
            blocks.append(Heading(line[2:].strip()))
        elif line.startswith("@"):
            flush()
            tag, _, rest = line.partition(" ")
            if tag == "@right":
                blocks.append(Line(rest, "R"))
            elif tag == "@to":
                blocks.append(Line(rest, "L", 12))
            elif tag == "@sign":
                blocks.append(Line(rest, "R", 12))
            elif tag == "@small":
                blocks.append(Line(rest, "L", 8.5))
            else:
                raise ValidationError(f"letter markup: unknown tag {tag!r} in line {raw!r}")
        else:
            para.append(line)
    flush()
    while blocks and isinstance(blocks[-1], Spacer):
        blocks.pop()
    return blocks


def render_pdf(blocks: Sequence[Block], *, title: str = "", author: str = "",
               font: Font | None = None) -> bytes:
    """Lay blocks out on A4 pages (25 mm side margins) and return the PDF bytes."""
    from fpdf import FPDF
    from fpdf.enums import WrapMode

    font = font or find_font()
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(25, 22, 25)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_title(title)
    pdf.set_author(author)
    pdf.set_creator("dianfei")
    pdf.add_font("cjk", fname=str(font.path), collection_font_number=font.index)
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin
    for block in blocks:
        if isinstance(block, Heading):
            pdf.set_font("cjk", size=block.size)
            pdf.ln(2)
            pdf.multi_cell(width, block.size * 0.55, block.text, align="C",
                           new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        elif isinstance(block, Paragraph):
            pdf.set_font("cjk", size=block.size)
            # Chinese has no spaces between words: break anywhere, not only at spaces
            pdf.multi_cell(width, block.size * 0.62, block.text, align="L", new_x="LMARGIN",
                           new_y="NEXT", wrapmode=WrapMode.CHAR if _cjk(block.text) else WrapMode.WORD)
        elif isinstance(block, Line):
            pdf.set_font("cjk", size=block.size)
            pdf.multi_cell(width, block.size * 0.55, block.text, align=block.align,
                           new_x="LMARGIN", new_y="NEXT")
        elif isinstance(block, Table):
            pdf.set_font("cjk", size=block.size)
            ncols = max(len(r) for r in block.rows)
            widths = block.widths or ((width * 0.35,) + (width * 0.65 / max(ncols - 1, 1),) * (ncols - 1)
                                      if ncols > 1 else (width,))
            height = block.size * 0.7
            for r, row in enumerate(block.rows):
                for c in range(ncols):
                    cell = row[c] if c < len(row) else ""
                    grey = c == 0 or (block.header and r == 0)
                    pdf.set_text_color(90 if grey else 0)
                    pdf.cell(widths[c], height, cell, border="B", align="L" if c == 0 else "R")
                pdf.ln(height)
            pdf.set_text_color(0)
        elif isinstance(block, Spacer):
            pdf.ln(block.height)
    return bytes(pdf.output())


def _cjk(text: str) -> bool:
    return any("\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" for ch in text)


def letter_path(out_dir: Path, outbox_id: int, account_id: str) -> Path:
    """Where a letter waits for the print run: one file per outbox row."""
    safe = "".join(ch for ch in account_id if ch.isalnum() or ch in "-_") or "account"
    return out_dir / f"{outbox_id:010d}-{safe}.pdf"


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a print run never picks up half a PDF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pdf.part")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


class LetterSender:
    """Renders each letter to ``out_dir/<outbox id>-<account>.pdf`` for the print run (打印邮寄).

    Idempotent by construction: the file is named by the outbox row, and a row whose file exists
    is not rendered again — so a letter interrupted by a crash is safely retried and never
    printed twice. The print run lists what to print with
    ``dianfei notify outbox --channel letter --status sent --json`` (provider_ref = the path).
    """

    channel = "letter"
    idempotent = True

    def __init__(self, out_dir: Path, *, font_path: str | None = None, font_index: int | None = None) -> None:
        self.out_dir = out_dir
        self._font_path = font_path
        self._font_index = font_index

    def send(self, message: Message) -> SendResult:
        r = message.rendered
        if r.letter_markup is None:
            raise SendError("not_rendered", "the letter was not rendered", retryable=False)
        path = letter_path(self.out_dir, message.outbox_id, message.account_id)
        if path.exists():
            return SendResult(provider_ref=str(path))
        try:
            font = find_font(self._font_path, self._font_index)
        except ValidationError as exc:
            raise SendError("no_font", exc.message, retryable=False) from None
        data = render_pdf(parse_markup(r.letter_markup), title=r.title, author=message.key, font=font)
        try:
            write_atomically(path, data)
        except OSError as exc:
            raise SendError("write", f"{path}: {exc}", retryable=True) from None
        return SendResult(provider_ref=str(path))
