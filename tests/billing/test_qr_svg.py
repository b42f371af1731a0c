"""The web bill's QR code (billing/qr.py draws the SVG itself from segno's modules): the drawn
rectangles are exactly the code's dark modules, and the picture decodes to the payload."""

from __future__ import annotations

import re

import numpy as np
import pytest
import zxingcpp

from dianfei.billing.qr import qr_matrix, qr_svg

PAYLOADS = [
    "https://pay.example.cn/dianfei?channel=alipay&account=C00000001&bill=C00000001-202612-1"
    "&amount=123.45",
    "https://pay.example.cn/dianfei?channel=wechatpay&account=C2&bill=C2-202501-3&amount=0.01",
]


def _modules(svg: str) -> np.ndarray:
    size = int(re.search(r'viewBox="0 0 (\d+) \1"', svg).group(1))  # type: ignore[union-attr]
    grid = np.zeros((size, size), dtype=np.uint8)
    path = re.search(r'<path fill="#000" d="([^"]*)"', svg).group(1)  # type: ignore[union-attr]
    for x, y, w, back in re.findall(r"M(\d+) (\d+)h(\d+)v1h-(\d+)z", path):
        assert w == back
        grid[int(y), int(x):int(x) + int(w)] = 1
    return grid


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_svg_draws_the_codes_modules_and_decodes(payload: str) -> None:
    svg = qr_svg.__wrapped__(payload)  # not the cache: draw it here
    drawn = _modules(svg)
    assert (drawn == np.array(qr_matrix(payload), dtype=np.uint8)).all()
    image = np.kron(np.where(drawn == 1, 0, 255).astype(np.uint8), np.ones((6, 6), np.uint8))
    assert [f.text for f in zxingcpp.read_barcodes(image)] == [payload]
    assert 'width="' in svg and svg.startswith("<svg ") and svg.endswith("</svg>")
