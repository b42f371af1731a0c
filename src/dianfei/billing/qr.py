"""QR codes for the online ways to pay (扫码缴费), made with segno (pure Python, no imaging).

The payload is the payment page link with the account, bill and amount (documents.Links): the
customer scans it with Alipay or WeChat and the page creates the channel's order then.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def qr_matrix(payload: str) -> tuple[tuple[bool, ...], ...]:
    """The modules of the payload's QR code (error correction M), dark = True, with the
    4-module quiet zone the standard asks for."""
    import segno

    code = segno.make_qr(payload, error="m")
    return tuple(tuple(bool(v) for v in row) for row in code.matrix_iter(scale=1, border=4))


def qr_svg(payload: str, scale: int = 3) -> str:
    """The QR code as inline SVG for the web bill (crisp at any zoom, no image file)."""
    import segno

    return str(segno.make_qr(payload, error="m").svg_inline(scale=scale, border=4))
