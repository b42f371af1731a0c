"""The batch-rendered PDF (``bill render``): what the fast paths of billing/pdf.py must keep —
every character of a name extractable, even beyond the BMP; a character no font has refused
rather than left out; the payment codes, drawn as vector paths, still scanning."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader
from pypdf.generic import ContentStream
from sqlalchemy import text
from tests.billing.bills_data import LAST, build

from dianfei.billing.documents import bill_document
from dianfei.billing.pdf import render_pdf
from dianfei.billing.rendering import render_period
from dianfei.billing.view import bill_view
from dianfei.db.engine import Database

DAY = LAST.end_date


@pytest.fixture
def bills(db: Database) -> Database:
    build(db)
    return db


def _text(path: Path) -> str:
    return "".join(p.extract_text() for p in PdfReader(path).pages)


def _rename(db: Database, customer: str, name: str) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE customers SET name = :n WHERE customer_id = :c"),
                     {"n": name, "c": customer})


def test_a_name_beyond_the_bmp_extracts_from_the_batch_rendered_pdf(bills: Database,
                                                                    tmp_path: Path) -> None:
    # 𬱖 (U+2CC56, CJK extension E) and 𠮷 (U+20BB7, extension B): characters of real given
    # names and family names, outside the Basic Multilingual Plane
    _rename(bills, "C1", "王𬱖")
    _rename(bills, "C2", "𠮷田䶮")
    res = render_period(bills, LAST, out_dir=tmp_path, as_of=DAY, chunk_size=2)
    assert (res.rendered, res.failed) == (3, [])
    one = _text(tmp_path / str(LAST) / "C1-202602-1.zh-CN.pdf")
    two = _text(tmp_path / str(LAST) / "C2-202602-1.zh-CN.pdf")
    assert "王𬱖" in one and "电费账单" in one
    assert "𠮷田䶮" in two
    # each file embeds its own glyphs only: C2's rare characters are not in C1's font
    reader = PdfReader(tmp_path / str(LAST) / "C1-202602-1.zh-CN.pdf")
    font = next(iter(reader.pages[0]["/Resources"]["/Font"].values())).get_object()
    to_unicode = font["/ToUnicode"].get_object().get_data()
    assert "𬱖".encode("utf-16-be").hex().upper().encode() in to_unicode
    assert "𠮷".encode("utf-16-be").hex().upper().encode() not in to_unicode


def test_a_character_no_font_has_fails_the_bill_and_says_which(bills: Database,
                                                               tmp_path: Path) -> None:
    # U+E000 (private use): in no CJK font; fpdf2 alone would print the name without it
    _rename(bills, "C1", "张\ue000")
    res = render_period(bills, LAST, out_dir=tmp_path, as_of=DAY)
    assert res.rendered == 2
    assert [b for b, _ in res.failed] == ["C1-202602-1"]
    assert "U+E000" in res.failed[0][1] and "[billing] font" in res.failed[0][1]
    assert not (tmp_path / str(LAST) / "C1-202602-1.zh-CN.pdf").exists()


def _vector_codes(data: bytes) -> list[np.ndarray]:
    """Every QR code drawn as `_qr` draws it (in module units: a white square, then black
    rectangles filled at once), rasterised at 8 pixels a module, black on white."""
    reader = PdfReader(io.BytesIO(data))
    images = []
    for page in reader.pages:
        ops = ContentStream(page.get_contents(), reader).operations
        for i, (_, op) in enumerate(ops):
            if not (op == b"cm" and ops[i + 1] == ([1], b"g") and ops[i + 2][1] == b"re"):
                continue
            n = int(ops[i + 2][0][2])
            scale = 8
            img = np.full((n * scale, n * scale), 255, np.uint8)
            j = i + 5  # after "re", "f" and "0 g"
            while ops[j][1] == b"re":
                col, row, w, h = (int(v) for v in ops[j][0])
                img[row * scale:(row + h) * scale, col * scale:(col + w) * scale] = 0
                j += 1
            assert ops[j][1] == b"f"
            images.append(img)
    return images


def test_payment_codes_drawn_as_paths_scan_to_their_payloads(bills: Database) -> None:
    import zxingcpp

    doc = bill_document(bills.engine, "C2", LAST)
    payloads = [p["qr_payload"] for p in doc["payment"] if p["online"]]
    images = _vector_codes(render_pdf(bill_view(doc)))
    assert len(images) == len(payloads) == 2
    assert [[f.text for f in zxingcpp.read_barcodes(img)] for img in images] == [
        [p] for p in payloads]


def test_the_fast_qr_matrix_is_segnos_module_for_module() -> None:
    """The printed codes (qr.qr_modules: segno's layout, its own byte-mode and Reed–Solomon
    codewords, numpy's placement) are the same code as segno's for payloads of every length a
    link may have (versions 3 to 16, version information from 7 on)."""
    import random

    import segno

    from dianfei.billing.qr import MASK, qr_modules

    rng = random.Random(11)
    versions = set()
    for n in [*range(5, 400, 9), 1, 2]:
        payload = "https://pay.example.cn/dianfei?" + "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyz0123456789=&.-_") for _ in range(n))
        if n % 3 == 0:
            payload += "用户"  # a byte-mode segment in UTF-8 too
        code = segno.make_qr(payload, error="m", mask=MASK)
        versions.add(code.version)
        assert [bytes(r) for r in qr_modules(payload)] == [bytes(r) for r in code.matrix]
    assert {3, 7, 16} <= versions


def _payloads_of_every_kind() -> list[str]:
    """Payloads segno encodes in each of its modes (byte as ISO 8859-1, Shift JIS and UTF-8;
    numeric; alphanumeric; Kanji), of lengths from empty to version 40, some short enough that
    segno raises the error level from M to Q or H in the same version."""
    import random

    rng = random.Random(5)
    out = ["", "7", "0" * 500, "HTTPS://PAY.EXAMPLE.CN/DIANFEI?A=1", "漢字", "ｱｲｳｴｵ", "用户",
           "https://pay.example.cn/缴费?户号=C1&金额=12.30", "€" * 40, "a" * 20, "a" * 2300, "9" * 5500]
    for n in range(1, 1300, 37):
        out.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789=&.-_电费€")
                           for _ in range(n)))
    return out


def test_the_fast_qr_matrix_is_segnos_in_every_mode_size_and_level() -> None:
    """qr_modules writes byte-mode payloads and the Reed–Solomon codewords itself (lookup
    tables, not segno's loops): still segno's code, module for module, whatever the mode,
    version (1 to 40) and boosted error level."""
    import segno

    from dianfei.billing.qr import MASK, qr_modules

    seen = set()
    for payload in _payloads_of_every_kind():
        code = segno.make_qr(payload, error="m", mask=MASK)
        seen.add((code.version, code.error, code.mode))
        assert [bytes(r) for r in qr_modules(payload)] == [bytes(r) for r in code.matrix], (
            payload[:40], code.version, code.error, code.mode)
    versions = {v for v, _, _ in seen}
    assert {1, 2, 7, 10, 27, 40} <= versions
    assert {"M", "Q", "H"} <= {e for _, e, _ in seen}
    assert {"byte", "numeric", "alphanumeric", "kanji"} <= {m for _, _, m in seen}


@pytest.mark.parametrize("payload", [
    "https://pay.example.cn/dianfei?channel=alipay&account=C00000001&bill=C00000001-202502-1"
    "&amount=282.80",
    "https://pay.example.cn/dianfei?channel=wechatpay&account=C2&bill=C2-202501-3&amount=0.01",
    "https://pay.example.cn/缴费?户号=C00000001&账单=C00000001-202502-1&金额=1,234.56",
    "电费账单：张三，上海市浦东新区世纪大道 100 号",
    "x" * 300,
    "A1",
])
def test_the_printed_modules_decode_to_the_payload_at_segnos_error_level(payload: str) -> None:
    """What the bill prints (qr_modules, quiet zone added) scans to exactly the payload, with
    the error correction level segno gives it (M, or higher when it fits the same size)."""
    import segno
    import zxingcpp

    from dianfei.billing.qr import BORDER, MASK, qr_modules

    modules = np.array([list(r) for r in qr_modules(payload)], np.uint8)
    modules = np.pad(modules, BORDER)
    image = np.kron(np.where(modules == 1, 0, 255).astype(np.uint8), np.ones((6, 6), np.uint8))
    found = zxingcpp.read_barcodes(image)
    assert [f.text for f in found] == [payload]
    assert found[0].ec_level == segno.make_qr(payload, error="m", mask=MASK).error
